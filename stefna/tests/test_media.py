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
