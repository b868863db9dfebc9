"""Private by default: unguessable names, and private results and every source photo
reachable only by their owner and staff, by every address; public images stay
cacheable; making one private again takes it out of public delivery."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time

import httpx
import pytest
from django.core.management import call_command
from django.db import connection, transaction
from django.test import Client
from django.test.utils import CaptureQueriesContext

from generation import storage
from generation.models import Generation, Media, StoredRemoval
from generation.services import media_set_public
from generation.tests.pipeline_helpers import run_worker, start_generation
from presets.tests.factories import PresetFactory
from stefna.accounts.services import api_token_create
from tests.databases import connections_waiting_for_locks, thread_recording

HEX40 = re.compile(r"[0-9a-f]{40}")
pytestmark = pytest.mark.django_db


@pytest.fixture
def finished(user, fake_fal):
    """One of the user's generations, finished, its result stored locally (private)."""
    generation = start_generation(user, PresetFactory(kind="neo_glitch"))
    run_worker(generation)
    assert generation.status == Generation.Status.SUCCEEDED
    return generation, generation.media.get()


def _client(user=None, *, staff=False) -> Client:
    client = Client()
    if user is not None:
        client.force_login(user)
    return client


def _media_urls(media: Media, generation: Generation) -> list[str]:
    """Every way the result and the photo can be asked for."""
    result = f"/media/{media.storage_key}"
    source = f"/media/{generation.source_image.name}"
    return [
        result,
        result + "?download=1",
        result.replace("/media/", "/media//"),
        f"/images/{media.storage_key}",
        source,
        source + "?x=1",
        f"/i/{media.pk}/",  # the share page
    ]


def test_every_stored_name_has_at_least_128_random_bits_and_no_ids(finished, user):
    generation, media = finished
    source = generation.source_image.name
    assert re.fullmatch(r"sources/[0-9a-f]{40}\.jpg", source), source
    assert re.fullmatch(r"generated/[0-9a-f]{40}\.png", media.storage_key), media.storage_key
    for name in (source, media.storage_key, media.url):
        assert str(generation.pk) not in name and str(user.pk) not in name and generation.kind not in name
    assert len({storage.random_name() for _ in range(100)}) == 100


def test_another_user_and_strangers_get_404_from_every_address(finished, other_user):
    generation, media = finished
    for client in (_client(), _client(other_user)):
        for url in _media_urls(media, generation):
            response = client.get(url)
            assert response.status_code == 404, (url, response.status_code)


def test_the_owner_and_staff_see_the_private_result_and_photo_uncached(finished, user, staff):
    generation, media = finished
    _, token = api_token_create(user=user, name="api")
    for client in (_client(user), _client(staff), Client(HTTP_AUTHORIZATION=f"Bearer {token}")):
        for url in (f"/media/{media.storage_key}", f"/media/{generation.source_image.name}"):
            response = client.get(url)
            assert response.status_code == 200, url
            assert response["Cache-Control"] == "private, no-store"
            assert b"".join(response.streaming_content)[:4] in (b"\x89PNG", b"\xff\xd8\xff\xe0", b"\xff\xd8\xff\xe1")


def test_a_public_image_is_served_to_anyone_cacheably_and_made_private_again_is_gone(finished, user, other_user):
    generation, media = finished
    owner = _client(user)
    assert owner.post(f"/i/{media.pk}/visibility/", {"is_public": "1"}).status_code in (200, 302)
    public_url = f"/media/{media.storage_key}"
    response = _client().get(public_url)
    assert response.status_code == 200
    assert response["Cache-Control"] == f"public, max-age={storage.PUBLIC_CACHE_SECONDS}"
    assert "immutable" not in response["Cache-Control"]

    _, token = api_token_create(user=user, name="api")
    answer = Client(HTTP_AUTHORIZATION=f"Bearer {token}").patch(
        f"/api/media/{media.pk}", data=json.dumps({"is_public": False}), content_type="application/json"
    )
    assert answer.status_code == 200

    media.refresh_from_db()
    assert media.storage_key != public_url.removeprefix("/media/"), "moved to a fresh name"
    assert HEX40.search(media.storage_key)
    for client in (_client(), _client(other_user), owner):
        assert client.get(public_url).status_code == 404, "the address that was public is dead for everyone"
    for client in (_client(), _client(other_user)):
        for url in _media_urls(media, generation):
            assert client.get(url).status_code == 404, url
    assert owner.get(media.url).status_code == 200


def test_nothing_else_under_media_root_is_served(finished, settings):
    (settings.MEDIA_ROOT / "healthz").mkdir(parents=True, exist_ok=True)
    (settings.MEDIA_ROOT / "healthz" / "probe.txt").write_text("ok")
    assert _client().get("/media/healthz/probe.txt").status_code == 404
    assert _client().get("/media/offline/").status_code == 404


@pytest.fixture
def cloudinary_result(user, fake_fal, fake_cloudinary):
    generation = start_generation(user, PresetFactory(kind="neo_glitch"))
    run_worker(generation)
    return generation, generation.media.get()


def test_cloudinary_results_are_uploaded_private_and_owners_get_a_short_lived_download(
    cloudinary_result, fake_cloudinary, user, other_user
):
    generation, media = cloudinary_result
    [upload] = fake_cloudinary.uploads
    assert upload["type"] == "authenticated"
    assert HEX40.fullmatch(upload["public_id"])
    assert media.url == f"/images/{media.storage_key}"
    assert fake_cloudinary.assets[media.storage_key]["type"] == "authenticated"
    assert not fake_cloudinary.delivered(
        fake_cloudinary.assets[media.storage_key]["secure_url"].replace("authenticated", "upload")
    )

    for client in (_client(), _client(other_user)):
        assert client.get(media.url).status_code == 404
    response = _client(user).get(media.url)
    assert response.status_code == 302
    assert response["Cache-Control"] == "private, no-store"
    download = response["Location"]
    assert download.startswith(fake_cloudinary.url + "/v1_1/") and "expires_at=" in download
    fetched = httpx.get(download)
    assert fetched.status_code == 200 and fetched.content[:4] == b"\x89PNG"
    forged = re.sub(r"public_id=[^&]+", f"public_id={media.storage_key.replace('generated', 'other')}", download)
    assert httpx.get(forged).status_code == 401


def test_a_public_cloudinary_image_has_a_stable_signed_url_that_dies_when_made_private(
    cloudinary_result, fake_cloudinary, user
):
    generation, media = cloudinary_result
    owner = _client(user)
    owner.post(f"/i/{media.pk}/visibility/", {"is_public": "1"})
    first = _client().get(media.url)
    second = _client().get(media.url)
    assert first.status_code == 302 and first["Location"] == second["Location"], "stable"
    # Anyone signed in gets it as a stranger would: no session, user or language read.
    with CaptureQueriesContext(connection) as queries:
        assert owner.get(media.url)["Location"] == first["Location"]
    assert len(queries) == 1, [query["sql"] for query in queries]
    assert first["Cache-Control"].startswith("public")
    public_address = first["Location"]
    assert fake_cloudinary.delivered(public_address)

    owner.post(f"/i/{media.pk}/visibility/", {})  # private again
    media.refresh_from_db()
    [rename] = fake_cloudinary.renames
    assert rename["invalidate"] in ("1", "true") and rename["to_type"] == "authenticated"
    assert not fake_cloudinary.delivered(public_address), "the leaked public address is dead"
    assert _client().get(media.url).status_code == 404
    assert _client().get(f"/images/{rename['from_public_id']}").status_code == 404
    assert owner.get(media.url).status_code == 302


def test_the_rename_command_moves_guessable_names_and_is_idempotent(
    user, fake_fal, fake_cloudinary, settings, django_capture_on_commit_callbacks
):
    from django.core.files.base import ContentFile
    from django.core.files.storage import default_storage

    from generation.tests.factories import GenerationFactory, MediaFactory

    old_photo = default_storage.save(f"IMAGES_UPLOAD/{user.pk}/neo_glitch/photo.jpg", ContentFile(b"\xff\xd8\xffphoto"))
    generation = GenerationFactory(user=user, source_image=old_photo)
    old_result = default_storage.save(f"generated/neo_glitch_{generation.pk}_0.png", ContentFile(b"\x89PNGresult"))
    local = MediaFactory(generation=generation, user=user, index=0, persisted=True, storage_key=old_result,
                         url=default_storage.url(old_result))  # fmt: skip
    # A Cloudinary asset uploaded the old way: public `upload` type, guessable id.
    legacy_id = f"stefna/generated/neo_glitch_{generation.pk}_1"
    fake_cloudinary.assets[legacy_id] = {"public_id": legacy_id, "type": "upload", "secure_url": "x", "url": "x"}
    fake_cloudinary.asset_bytes[legacy_id] = b"\x89PNG"
    remote = MediaFactory(generation=generation, user=user, index=1, persisted=True, storage_key=legacy_id)

    with django_capture_on_commit_callbacks(execute=True):  # the command runs in no transaction
        call_command("rename_stored_media")

    generation.refresh_from_db(), local.refresh_from_db(), remote.refresh_from_db()
    assert storage.is_unguessable(generation.source_image.name) and not default_storage.exists(old_photo)
    assert storage.is_unguessable(local.storage_key) and not default_storage.exists(old_result)
    assert default_storage.open(local.storage_key).read() == b"\x89PNGresult"
    assert local.url == default_storage.url(local.storage_key)
    assert storage.is_unguessable(remote.storage_key) and remote.url == f"/images/{remote.storage_key}"
    assert legacy_id not in fake_cloudinary.assets
    assert fake_cloudinary.assets[remote.storage_key]["type"] == "authenticated"
    names = (generation.source_image.name, local.storage_key, remote.storage_key)

    call_command("rename_stored_media")  # again: nothing moves

    generation.refresh_from_db(), local.refresh_from_db(), remote.refresh_from_db()
    assert (generation.source_image.name, local.storage_key, remote.storage_key) == names
    assert len(fake_cloudinary.renames) == 1
    assert not StoredRemoval.objects.exists()  # every old name removed, nothing left owed


@pytest.mark.parametrize("where", ["storage", "cloudinary"])
def test_a_rename_whose_image_was_deleted_meanwhile_leaves_no_copy(
    user, fake_fal, fake_cloudinary, settings, django_capture_on_commit_callbacks, where
):
    from django.core.files.base import ContentFile
    from django.core.files.storage import default_storage

    from generation.services import revoke
    from generation.tests.factories import GenerationFactory, MediaFactory

    generation = GenerationFactory(user=user)
    if where == "storage":
        old = default_storage.save(f"generated/neo_glitch_{generation.pk}_0.png", ContentFile(b"\x89PNGresult"))
    else:
        old = f"stefna/generated/neo_glitch_{generation.pk}_0"
        fake_cloudinary.assets[old] = {"public_id": old, "type": "upload", "secure_url": "x", "url": "x"}
        fake_cloudinary.asset_bytes[old] = b"\x89PNG"
    media = MediaFactory(generation=generation, user=user, index=0, persisted=True, storage_key=old)
    read_by_the_command = Media.objects.get(pk=media.pk)
    Media.objects.filter(pk=media.pk).delete()  # its owner deleted it after the command read it

    with django_capture_on_commit_callbacks(execute=True):
        assert revoke.legacy_media_rename(media=read_by_the_command) is False

    assert not StoredRemoval.objects.exists()  # the fresh copy was owed, and removed at once
    if where == "storage":
        assert default_storage.listdir("generated")[1] == []
    else:
        assert fake_cloudinary.assets == {}


def test_a_photo_renamed_while_its_generation_was_deleted_leaves_no_copy(user, django_capture_on_commit_callbacks):
    from django.core.files.base import ContentFile
    from django.core.files.storage import default_storage

    from generation.services import revoke
    from generation.tests.factories import GenerationFactory

    old = default_storage.save(f"IMAGES_UPLOAD/{user.pk}/neo_glitch/photo.jpg", ContentFile(b"\xff\xd8\xffphoto"))
    generation = GenerationFactory(user=user, source_image=old)
    read_by_the_command = Generation.objects.get(pk=generation.pk)
    Generation.objects.filter(pk=generation.pk).delete()  # its account was deleted meanwhile

    with django_capture_on_commit_callbacks(execute=True):
        assert revoke.legacy_source_rename(generation=read_by_the_command) is False

    assert default_storage.listdir("sources")[1] == []  # the fresh copy is gone
    assert not StoredRemoval.objects.exists()


def test_a_public_image_of_a_generation_removed_from_history_leaves_public_delivery(finished, user):
    generation, media = finished
    owner = _client(user)
    owner.post(f"/i/{media.pk}/visibility/", {"is_public": "1"})
    public_url = f"/media/{media.storage_key}"
    assert _client().get(public_url).status_code == 200

    owner.post(f"/g/{generation.pk}/delete/")

    media.refresh_from_db()
    assert not media.is_public and media.storage_key not in public_url
    assert _client().get(public_url).status_code == 404
    assert _client().get(f"/media/{media.storage_key}").status_code == 404


def test_an_image_of_a_generation_removed_from_history_cannot_be_made_public_again(finished, user, api_token):
    """Its share page once showed it (and its prompt) to anyone while its file answered 404."""
    generation, media = finished
    owner = _client(user)
    owner.post(f"/g/{generation.pk}/delete/")

    answer = _client().patch(
        f"/api/media/{media.pk}",
        data=json.dumps({"is_public": True}),
        content_type="application/json",
        headers={"Authorization": f"Bearer {api_token}"},
    )
    owner.post(f"/i/{media.pk}/visibility/", {"is_public": "1"})

    assert answer.status_code == 404 and answer.json()["code"] == "not_found"
    media.refresh_from_db()
    assert not media.is_public
    Media.objects.filter(pk=media.pk).update(is_public=True)  # even were it marked public
    for share_page in (f"/i/{media.share_id}", f"/i/{media.pk}/"):
        assert _client().get(share_page).status_code == 404
        assert owner.get(share_page).status_code == 404


def test_behind_nginx_the_check_is_ours_and_the_bytes_are_nginx_s(finished, user, other_user, settings):
    """MEDIA_ACCEL_REDIRECT: the same answers as above, but every yes is an empty answer
    naming the file for nginx's internal location (tests/deploy/test_nginx_media.py runs
    it through the real nginx with deploy/nginx.conf)."""
    settings.MEDIA_ACCEL_REDIRECT = "/protected-media/"
    generation, media = finished
    owner = _client(user)
    for name, content_type in ((media.storage_key, "image/png"), (generation.source_image.name, "image/jpeg")):
        response = owner.get(f"/media/{name}")
        assert response.status_code == 200
        assert response["X-Accel-Redirect"] == f"/protected-media/{name}"
        assert response.content == b"", "nginx sends the bytes"
        assert response["Content-Type"] == content_type
        assert response["Cache-Control"] == "private, no-store"
    for client in (_client(), _client(other_user)):
        for url in _media_urls(media, generation):
            response = client.get(url)
            assert response.status_code == 404 and not response.has_header("X-Accel-Redirect"), url

    owner.post(f"/i/{media.pk}/visibility/", {"is_public": "1"})
    response = _client().get(f"/media/{media.storage_key}")
    assert response["X-Accel-Redirect"] == f"/protected-media/{media.storage_key}"
    assert response["Cache-Control"] == f"public, max-age={storage.PUBLIC_CACHE_SECONDS}"

    # A file gone from disk is our 404, as without nginx, not a redirect to nothing.
    (settings.MEDIA_ROOT / generation.source_image.name).unlink()
    response = owner.get(f"/media/{generation.source_image.name}")
    assert response.status_code == 404 and not response.has_header("X-Accel-Redirect")


def test_a_media_accel_redirect_that_is_not_a_path_is_refused_at_start():
    for value, ok in (("/protected-media/", True), ("protected-media/", False), ("/protected-media", False)):
        result = subprocess.run(
            [sys.executable, "-c", "import django; django.setup()"],
            env={**os.environ, "MEDIA_ACCEL_REDIRECT": value, "DJANGO_SETTINGS_MODULE": "stefna.settings"},
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert (result.returncode == 0) is ok, (value, result.stderr[-500:])
        if not ok:
            assert "MEDIA_ACCEL_REDIRECT must be a path that starts and ends with /" in result.stderr


def test_visibility_changes_are_rate_limited_per_account_but_not_for_staff(finished, user, api_token, settings):
    """Making an image private moves its file at storage; unbounded toggling would spend
    everyone's storage calls. Asking for the state it is in already costs nothing."""
    from generation import services

    settings.RATE_LIMIT_VISIBILITY_CHANGES = (3, 60)
    _generation, media = finished
    api = Client(headers={"Authorization": f"Bearer {api_token}"})

    def patch(is_public: bool):
        return api.patch(
            f"/api/media/{media.pk}", data=json.dumps({"is_public": is_public}), content_type="application/json"
        )

    assert [patch(value).status_code for value in (True, False, True)] == [200, 200, 200]
    assert patch(True).status_code == 200  # already public: not a change
    refused = patch(False)
    assert refused.status_code == 429 and refused.json()["code"] == "rate_limited"
    assert refused["Retry-After"]
    media.refresh_from_db()
    assert media.is_public  # refused, nothing changed

    owner = _client(user)
    page = owner.post(f"/i/{media.pk}/visibility/", {}, headers={"HX-Request": "true"})
    assert (page.status_code, page["HX-Refresh"]) == (204, "true")
    assert "Too many requests" in owner.get(f"/i/{media.share_id}").content.decode()  # the reloaded page says why
    media.refresh_from_db()
    assert media.is_public

    services.media_set_public(user=user, media_id=media.pk, is_public=False, limited=False)  # staff's bulk action
    media.refresh_from_db()
    assert not media.is_public


@pytest.mark.parametrize("hiding", ["make_private", "remove_generation"])
@pytest.mark.postgres_only
@pytest.mark.django_db(transaction=True)
def test_hiding_an_image_that_read_it_before_it_went_public_still_kills_its_public_address(
    cloudinary_result, fake_cloudinary, user, hiding
):
    """The owner makes a private image public and at once hides it again: makes it
    private (two tabs, a double click), or removes its generation from history. The
    hiding request read the image while it was still private and wrote after "public"
    committed, so it saw no change from public and owed no move: the signed delivery
    address handed out while it was public (the feed, a share page, a CDN's cached
    redirect) kept serving the now private image for good."""
    if connection.vendor != "postgresql":
        pytest.skip(
            "PostgreSQL only: SQLite runs one writing transaction at a time (BEGIN IMMEDIATE), "
            "so the second request never reads the image before the first commits"
        )
    generation, media = cloudinary_result
    owner = _client(user)
    address = f"/i/{media.pk}/visibility/" if hiding == "make_private" else f"/g/{generation.pk}/delete/"
    answers: list[object] = []

    hiding_it = thread_recording(lambda: owner.post(address, {}).status_code, answers)
    with transaction.atomic():
        # "Public", done but not committed: the image's row is locked until the commit.
        media_set_public(user=user, media_id=media.pk, is_public=True)
        public = _client().get(media.url)  # this connection sees it public: the feed's address
        assert public.status_code == 302 and public["Cache-Control"].startswith("public")
        public_address = public["Location"]
        hiding_it.start()
        deadline = time.monotonic() + 10
        while connections_waiting_for_locks() < 1:
            assert time.monotonic() < deadline, "hiding it never waited for the image's row"
            time.sleep(0.02)
    hiding_it.join(20)

    assert answers == [302]
    media.refresh_from_db()
    assert not media.is_public
    assert not fake_cloudinary.delivered(public_address), "the address handed out while public is dead"
    assert _client().get(media.url).status_code == 404
