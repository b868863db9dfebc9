"""Private by default on S3-compatible storage, at the HTTP level against a fake bucket
(tests/fakes/s3.py, which checks presigned signatures and expiry as S3 does).

Every object is stored private and no page or answer carries a bucket address: the
ownership-checking view (`/media/<name>`) redirects whoever may see a file to a
presigned URL. A private file's URL lives minutes; a public image keeps its stable
address (ours), and made private again its object moves to a fresh key, so every URL
signed for the old one is dead."""

from __future__ import annotations

import json
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from django.test import Client

from generation import storage
from generation.models import Generation, Media
from generation.services import source_image_url
from generation.tests.pipeline_helpers import run_worker, start_generation
from presets.tests.factories import PresetFactory
from stefna.accounts.services import api_token_create

pytestmark = pytest.mark.django_db


@pytest.fixture
def finished(user, fake_fal, fake_s3):
    """One of the user's generations, finished, its photo and result in the bucket."""
    generation = start_generation(user, PresetFactory(kind="neo_glitch"))
    run_worker(generation)
    assert generation.status == Generation.Status.SUCCEEDED
    return generation, generation.media.get()


def _signed_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def _presigned(response) -> tuple[str, dict[str, list[str]]]:
    assert response.status_code == 302, response.status_code
    location = response["Location"]
    return location, parse_qs(urlsplit(location).query)


def test_photos_and_results_are_private_objects_never_addressed_at_the_bucket(finished, fake_s3):
    generation, media = finished
    source = generation.source_image.name
    assert set(fake_s3.objects) == {source, media.storage_key}
    assert all(stored.acl == "private" for stored in fake_s3.objects.values())
    # No ACL is sent at all: buckets with ACLs disabled (AWS's default) refuse any other
    # than bucket-owner-full-control, and without one an object is private to its owner.
    assert all(stored.acl_header is None for stored in fake_s3.objects.values())
    assert media.url == f"/media/{media.storage_key}" and generation.source_image.url == f"/media/{source}"
    for key in (source, media.storage_key):
        assert httpx.get(f"{fake_s3.url}/{fake_s3.bucket}/{key}").status_code == 403, "the bucket itself is closed"


def test_the_owner_is_redirected_to_a_presigned_url_that_expires_within_minutes(finished, user, staff, fake_s3):
    generation, media = finished
    _, token = api_token_create(user=user, name="api")
    for client in (_signed_in(user), _signed_in(staff), Client(HTTP_AUTHORIZATION=f"Bearer {token}")):
        for key in (media.storage_key, generation.source_image.name):
            response = client.get(f"/media/{key}")
            location, query = _presigned(response)
            assert location.startswith(f"{fake_s3.url}/{fake_s3.bucket}/{key}?")
            assert query["X-Amz-Signature"] and query["X-Amz-Algorithm"] == ["AWS4-HMAC-SHA256"]
            assert int(query["X-Amz-Expires"][0]) == storage.PRIVATE_URL_SECONDS <= 300
            assert response["Cache-Control"] == "private, no-store"
            fetched = httpx.get(location)
            assert fetched.status_code == 200
            assert fetched.content == fake_s3.objects[key].body and fetched.content[:2] in (b"\x89P", b"\xff\xd8")
    # The fake really checks signatures: a URL for another key with this signature is refused.
    location, _ = _presigned(_signed_in(user).get(f"/media/{media.storage_key}"))
    forged = location.replace(media.storage_key, generation.source_image.name)
    assert httpx.get(forged).status_code == 403


def test_another_user_gets_404_by_every_url_form(finished, other_user):
    generation, media = finished
    result, source = f"/media/{media.storage_key}", f"/media/{generation.source_image.name}"
    urls = [result, result + "?download=1", result.replace("/media/", "/media//"), f"/images/{media.storage_key}"]
    urls += [source, source + "?x=1", f"/i/{media.pk}/"]
    for client in (Client(), _signed_in(other_user)):
        for url in urls:
            assert client.get(url).status_code == 404, url


def test_a_public_image_keeps_a_stable_address_and_made_private_leaves_public_delivery(
    finished, user, other_user, fake_s3
):
    generation, media = finished
    owner = _signed_in(user)
    assert owner.post(f"/i/{media.pk}/visibility/", {"is_public": "1"}).status_code in (200, 302)
    media.refresh_from_db()
    public_key, public_url = media.storage_key, media.url
    assert public_url == f"/media/{public_key}"
    assert fake_s3.objects[public_key].acl == "private", "no object ACL: the bucket stays closed"

    first = Client().get(public_url)
    leaked, query = _presigned(first)
    assert first["Cache-Control"] == f"public, max-age={storage.PUBLIC_CACHE_SECONDS}"
    # The signed URL outlives a cached redirect, so a cache never hands out a dead one.
    assert int(query["X-Amz-Expires"][0]) > storage.PUBLIC_CACHE_SECONDS
    assert httpx.get(leaked).status_code == 200
    assert Client().get(public_url)["Location"].startswith(f"{fake_s3.url}/{fake_s3.bucket}/{public_key}?")
    assert Media.objects.get(pk=media.pk).url == public_url, "the address pages show is stable"

    _, token = api_token_create(user=user, name="api")
    answer = Client(HTTP_AUTHORIZATION=f"Bearer {token}").patch(
        f"/api/media/{media.pk}", data=json.dumps({"is_public": False}), content_type="application/json"
    )
    assert answer.status_code == 200
    media.refresh_from_db()
    assert media.storage_key != public_key and storage.is_unguessable(media.storage_key)
    assert public_key not in fake_s3.objects and media.storage_key in fake_s3.objects
    assert httpx.get(leaked).status_code == 404, "a URL signed while it was public is dead"
    for client in (Client(), _signed_in(other_user), owner):
        assert client.get(public_url).status_code == 404
    for client in (Client(), _signed_in(other_user)):
        assert client.get(media.url).status_code == 404
    location, _ = _presigned(owner.get(media.url))
    assert httpx.get(location).status_code == 200


def test_fal_gets_a_presigned_url_of_the_photo_for_one_attempt(finished, settings, fake_s3):
    generation, _ = finished
    settings.STORAGE_PUBLIC_URLS = True
    url = source_image_url(generation)
    query = parse_qs(urlsplit(url).query)
    assert url.startswith(f"{fake_s3.url}/{fake_s3.bucket}/{generation.source_image.name}?")
    assert int(query["X-Amz-Expires"][0]) == settings.FAL_ATTEMPT_TIMEOUT_SECONDS + 60
    assert httpx.get(url).content == fake_s3.objects[generation.source_image.name].body


def test_deleting_the_account_removes_its_objects_from_the_bucket(
    user, other_user, fake_fal, fake_s3, django_capture_on_commit_callbacks
):
    preset = PresetFactory(kind="neo_glitch")
    mine = [start_generation(user, preset) for _ in range(2)]
    theirs = start_generation(other_user, preset)
    for generation in [*mine, theirs]:
        run_worker(generation)
    my_keys = {g.source_image.name for g in mine} | set(
        Media.objects.filter(user=user).values_list("storage_key", flat=True)
    )
    their_keys = set(fake_s3.objects) - my_keys
    assert len(my_keys) == 4 and my_keys <= set(fake_s3.objects) and len(their_keys) == 2

    _, token = api_token_create(user=user, name="api")
    with django_capture_on_commit_callbacks(execute=True):  # objects go once the deletion is committed
        answer = Client(HTTP_AUTHORIZATION=f"Bearer {token}").delete(
            "/api/me", data=json.dumps({"confirm": user.email}), content_type="application/json"
        )
    assert answer.status_code == 204
    assert set(fake_s3.objects) == their_keys, "none of the user's objects remain; everyone else's do"


def test_a_share_preview_is_a_private_object_served_only_while_the_image_is_public(
    finished, user, fake_s3, django_capture_on_commit_callbacks
):
    """The share page's og:image in a bucket: a derived JPEG under previews/, reached
    through our checking address like every object, and gone once the image is private."""
    from generation import services
    from generation.tests.test_share_pages import meta_of

    _, media = finished
    services.media_set_public(user=user, media_id=media.pk, is_public=True)
    og_image = meta_of(Client().get(f"/i/{media.share_id}").content.decode())["og:image"]
    preview = storage.preview_key(media.storage_key)
    assert og_image == f"http://testserver/media/{preview}"

    location, _ = _presigned(Client().get(urlsplit(og_image).path))
    assert location.startswith(f"{fake_s3.url}/{fake_s3.bucket}/{preview}?")
    fetched = httpx.get(location)
    assert fetched.status_code == 200 and fetched.content[:2] == b"\xff\xd8"  # a JPEG
    assert fake_s3.objects[preview].acl == "private"

    with django_capture_on_commit_callbacks(execute=True):
        services.media_set_public(user=user, media_id=media.pk, is_public=False)
    assert preview not in fake_s3.objects
    assert Client().get(urlsplit(og_image).path).status_code == 404
    assert httpx.get(location).status_code != 200
