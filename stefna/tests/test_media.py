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
