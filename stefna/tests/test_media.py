import pytest


@pytest.mark.django_db
def test_media_is_served_from_the_current_media_root(client, settings, tmp_path, user):
    from generation.tests.factories import GenerationFactory

    settings.MEDIA_ROOT = tmp_path
    (tmp_path / "sources").mkdir()
    (tmp_path / "sources" / "photo.txt").write_text("hello")
    GenerationFactory(user=user, source_image="sources/photo.txt")
    client.force_login(user)

    response = client.get("/media/sources/photo.txt")

    assert response.status_code == 200
    assert b"".join(response.streaming_content) == b"hello"
    assert response["Cache-Control"] == "private, no-store"


@pytest.mark.django_db
def test_media_cannot_escape_the_media_root(client, settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"
    (tmp_path / "media").mkdir()
    (tmp_path / "secret.txt").write_text("no")

    for url in ("/media/../secret.txt", "/media/%2e%2e/secret.txt"):
        response = client.get(url)
        assert response.status_code in (400, 404)
        assert b"no" != getattr(response, "content", b"")


@pytest.mark.django_db
def test_serving_a_result_leaves_its_generations_prompts_logs_and_payload_unread(client, settings, tmp_path, user):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from generation import storage
    from generation.tests.factories import GenerationFactory, MediaFactory

    settings.MEDIA_ROOT = tmp_path
    name = f"{storage.RESULTS_FOLDER}/result.png"
    (tmp_path / storage.RESULTS_FOLDER).mkdir()
    (tmp_path / name).write_bytes(b"png")
    generation = GenerationFactory(user=user, logs=[{"message": "x" * 500}], prompt_sent="a long prompt")
    MediaFactory(generation=generation, user=user, storage_key=name, url=f"/media/{name}", is_public=False)
    client.force_login(user)

    with CaptureQueriesContext(connection) as queries:
        response = client.get(f"/media/{name}")

    assert response.status_code == 200 and b"".join(response.streaming_content) == b"png"
    [lookup] = [query["sql"] for query in queries if "generation_media" in query["sql"]]
    for column in ("logs", "request_payload", "prompt_sent", "model_chain", "parameters"):
        assert f'"{column}"' not in lookup, column
    # Someone else still gets nothing: the guard reads what it needs.
    client.logout()
    assert client.get(f"/media/{name}").status_code == 404


@pytest.mark.django_db
def test_a_public_result_is_served_without_reading_the_session_or_the_user(client, settings, tmp_path, user):
    """A feed page shows twenty images: each is one lookup, whoever asks. A private one
    still reads who is asking, and still reaches only its owner."""
    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from generation import storage
    from generation.tests.factories import GenerationFactory, MediaFactory

    settings.MEDIA_ROOT = tmp_path
    (tmp_path / storage.RESULTS_FOLDER).mkdir()
    public, private = (f"{storage.RESULTS_FOLDER}/{name}.png" for name in ("public", "private"))
    for name in (public, private):
        (tmp_path / name).write_bytes(b"png")
    generation = GenerationFactory(user=user)
    MediaFactory(generation=generation, user=user, storage_key=public, url=f"/media/{public}", is_public=True, index=0)
    MediaFactory(generation=generation, user=user, storage_key=private, url=f"/media/{private}", index=1)
    client.force_login(user)
    user_table = get_user_model()._meta.db_table

    with CaptureQueriesContext(connection) as queries:
        response = client.get(f"/media/{public}")

    assert response.status_code == 200 and b"".join(response.streaming_content) == b"png"
    assert response["Cache-Control"].startswith("public")
    assert len(queries) == 1, [query["sql"] for query in queries]
    assert "generation_media" in queries[0]["sql"]

    with CaptureQueriesContext(connection) as queries:
        response = client.get(f"/media/{private}")

    assert response.status_code == 200 and response["Cache-Control"] == "private, no-store"
    tables = " ".join(query["sql"] for query in queries)
    assert "django_session" in tables and user_table in tables

    other = get_user_model().objects.create_user(email="other@example.com")
    client.force_login(other)
    assert client.get(f"/media/{private}").status_code == 404
    assert client.get(f"/media/{public}").status_code == 200
    client.logout()
    assert client.get(f"/media/{private}").status_code == 404


def test_offline_provider_state_sits_beside_shared_media_and_is_never_served(client, db, settings, tmp_path):
    # With MEDIA_ROOT_SHARED (every process sees that folder) the offline provider keeps
    # its job files there: systemd gives each process a private /tmp.
    import os
    import subprocess
    import sys
    from pathlib import Path

    env = {
        **os.environ,
        "DEBUG": "1",
        "MEDIA_ROOT": str(tmp_path),
        "MEDIA_ROOT_SHARED": "1",
        "OFFLINE_PROVIDER_DIR": "",
    }
    show = "from django.conf import settings; print(settings.OFFLINE_PROVIDER_DIR)"
    result = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", show],
        cwd=Path(__file__).resolve().parents[2], env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == str(tmp_path / ".offline-provider")

    settings.MEDIA_ROOT = tmp_path
    state = tmp_path / ".offline-provider" / "local-0123.json"
    state.parent.mkdir()
    state.write_text('{"status": "IN_QUEUE"}')
    assert client.get("/media/.offline-provider/local-0123.json").status_code == 404


@pytest.mark.django_db
def test_an_uploaded_preset_thumbnail_is_served_to_anyone(client, settings, tmp_path):
    """GET /api/presets' `thumbnail_url` (CONTRACT) must open: an uploaded thumbnail was a 404,
    since /media/ served only photos and results. Other files in its folder stay unserved."""
    from django.core.files.base import ContentFile

    from presets.tests.factories import PresetFactory

    settings.MEDIA_ROOT = tmp_path
    preset = PresetFactory()
    preset.thumbnail.save("look.png", ContentFile(b"\x89PNG thumbnail"))
    (tmp_path / "presets" / "stray.png").write_bytes(b"not a preset's")

    url = next(item["thumbnail_url"] for item in client.get("/api/presets").json() if item["slug"] == preset.slug)
    response = client.get(url)

    assert url == f"http://testserver/media/{preset.thumbnail.name}"
    assert response.status_code == 200
    assert b"".join(response.streaming_content) == b"\x89PNG thumbnail"
    assert response["Cache-Control"].startswith("public")
    assert client.get("/media/presets/stray.png").status_code == 404
