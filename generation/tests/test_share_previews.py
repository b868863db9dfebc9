"""Share previews: a public image's share page unfurls with a JPEG small enough for
WhatsApp (~300 KB), whose og:image:width/height are the size actually sent; reachable by
an anonymous crawler while the image is public, and by no one once it is private or gone.

Cloudinary: a signed delivery transformation, fetched from the fake Cloudinary over HTTP.
Default storage: a derived copy under previews/, made on first fetch.
"""

from __future__ import annotations

import io
import random
from urllib.parse import urlsplit

import cloudinary.uploader
import pytest
import requests
from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.test import Client
from PIL import Image

from generation import previews, services, storage
from generation.models import Media, StoredRemoval
from generation.tests.factories import GenerationFactory, MediaFactory
from generation.tests.test_share_pages import meta_of
from stefna.accounts.deletion import account_delete

pytestmark = pytest.mark.django_db

WHATSAPP_LIMIT = 300_000


def busy_png(width: int, height: int) -> bytes:
    """A picture with detail everywhere, as results have: its PNG is megabytes, and a
    JPEG of it at the usual quality is over WhatsApp's limit."""
    rng = random.Random(7)
    small = (max(1, width // 8), max(1, height // 8))
    image = Image.frombytes("RGB", small, rng.randbytes(small[0] * small[1] * 3))
    buffer = io.BytesIO()
    image.resize((width, height), Image.Resampling.BICUBIC).save(buffer, "PNG", compress_level=1)
    return buffer.getvalue()


def body(response) -> bytes:
    return b"".join(response.streaming_content) if response.streaming else response.content


@pytest.fixture
def local_public(user):
    data = busy_png(2000, 1500)
    assert len(data) > WHATSAPP_LIMIT
    key = default_storage.save(f"generated/{storage.random_name()}.png", ContentFile(data))
    generation = GenerationFactory(user=user, preset_slug="oil_painting", preset_name="Oil painting", prompt="")
    media = MediaFactory(
        generation=generation,
        storage_key=key,
        url=default_storage.url(key),
        width=2000,
        height=1500,
        content_type="image/png",
        is_public=True,
    )
    assert isinstance(media, Media)
    return media


def crawl(path: str):
    """A crawler: no cookies, no session."""
    return Client().get(path)


# --- Default storage (local files) ------------------------------------------------------


def test_the_share_page_unfurls_with_a_small_jpeg_of_the_size_it_says(local_public):
    page = crawl(f"/i/{local_public.share_id}")
    assert page.status_code == 200
    tags = meta_of(page.content.decode())
    preview_path = f"/media/previews/{local_public.storage_key}.jpg"
    assert tags["og:image"] == tags["twitter:image"] == f"http://testserver{preview_path}"
    assert (tags["og:image:width"], tags["og:image:height"], tags["og:image:type"]) == ("1200", "900", "image/jpeg")

    image = crawl(preview_path)
    assert image.status_code == 200
    assert image["Content-Type"] == "image/jpeg"
    assert image["Cache-Control"] == f"public, max-age={storage.PUBLIC_CACHE_SECONDS}"
    data = body(image)
    assert len(data) < WHATSAPP_LIMIT
    with Image.open(io.BytesIO(data)) as preview:
        assert preview.format == "JPEG" and preview.size == (1200, 900)


def test_a_small_image_is_not_enlarged_and_its_preview_is_made_once(local_public):
    Media.objects.filter(pk=local_public.pk).update(width=None, height=None)
    with default_storage.open(local_public.storage_key, "wb") as file:
        Image.new("RGBA", (500, 300), (90, 60, 200, 128)).save(file, "PNG")
    tags = meta_of(crawl(f"/i/{local_public.share_id}").content.decode())
    assert "og:image:width" not in tags  # the size is not known: nothing is claimed
    path = urlsplit(tags["og:image"]).path
    with Image.open(io.BytesIO(body(crawl(path)))) as preview:
        assert preview.size == (500, 300)
    name = storage.preview_key(local_public.storage_key)
    made = default_storage.get_modified_time(name)
    assert crawl(path).status_code == 200
    assert default_storage.get_modified_time(name) == made


def test_made_private_the_preview_is_gone_and_its_address_answers_404(
    local_public, user, django_capture_on_commit_callbacks
):
    path = urlsplit(meta_of(crawl(f"/i/{local_public.share_id}").content.decode())["og:image"]).path
    assert crawl(path).status_code == 200
    name = storage.preview_key(local_public.storage_key)
    assert default_storage.exists(name)

    with django_capture_on_commit_callbacks(execute=True):
        services.media_set_public(user=user, media_id=local_public.pk, is_public=False)

    assert not default_storage.exists(name)
    assert not StoredRemoval.objects.exists()  # removed, nothing left owed
    assert crawl(path).status_code == 404
    assert crawl(f"/i/{local_public.share_id}").status_code == 404
    # Its owner's own view of the page names no preview, only the owner-only address.
    owner = Client()
    owner.force_login(user)
    tags = meta_of(owner.get(f"/i/{local_public.share_id}").content.decode())
    assert "/previews/" not in tags["og:image"] and tags["robots"] == "noindex"
    assert crawl(urlsplit(tags["og:image"]).path).status_code == 404
    # Asking for a preview of the private image under its new name makes nothing.
    local_public.refresh_from_db()
    assert crawl(f"/media/{storage.preview_key(local_public.storage_key)}").status_code == 404
    assert not default_storage.exists(storage.preview_key(local_public.storage_key))


def test_a_private_image_gets_no_preview_even_for_its_owner(local_public, user):
    Media.objects.filter(pk=local_public.pk).update(is_public=False)
    owner = Client()
    owner.force_login(user)
    path = f"/media/{storage.preview_key(local_public.storage_key)}"
    assert owner.get(path).status_code == 404
    assert not default_storage.exists(storage.preview_key(local_public.storage_key))


def test_deleting_the_image_or_the_account_removes_its_preview(local_public, user, django_capture_on_commit_callbacks):
    other = MediaFactory(
        generation=GenerationFactory(user=user),
        storage_key=default_storage.save(f"generated/{storage.random_name()}.png", ContentFile(busy_png(40, 30))),
        width=40,
        height=30,
        is_public=True,
    )
    for media in (local_public, other):
        assert crawl(f"/media/{storage.preview_key(media.storage_key)}").status_code == 200
    first, second = (storage.preview_key(media.storage_key) for media in (local_public, other))

    with django_capture_on_commit_callbacks(execute=True):
        services.media_delete(user=user, media_id=local_public.pk)
    assert not default_storage.exists(first)
    assert crawl(f"/media/{first}").status_code == 404

    with django_capture_on_commit_callbacks(execute=True):
        account_delete(user=user, confirm=user.email)
    assert not default_storage.exists(second)
    assert not StoredRemoval.objects.exists()


def test_a_preview_made_while_the_image_went_private_is_removed(local_public, django_capture_on_commit_callbacks):
    """The crawler's request read the image public; the owner made it private before the
    preview was written. The preview must not stay behind."""
    stale = Media.objects.select_related("generation").get(pk=local_public.pk)
    Media.objects.filter(pk=local_public.pk).update(is_public=False)

    with django_capture_on_commit_callbacks(execute=True):
        assert services.media_preview_ready(media=stale) is False
    assert not default_storage.exists(storage.preview_key(local_public.storage_key))


def test_head_and_get_of_the_pages_need_no_cookies_and_leak_nothing(local_public, user, other_user):
    private = MediaFactory(generation=GenerationFactory(user=user), is_public=False, storage_key="generated/p.png")
    for path in ("/", "/feed/", f"/i/{local_public.share_id}"):
        client = Client()
        got, head = client.get(path), client.head(path)
        assert got.status_code == head.status_code == 200, path
        assert head.content == b""
        # A crawler needs no cookie and gets no session (a CSRF token for the forms is all).
        assert set(got.cookies) <= {settings.CSRF_COOKIE_NAME}, path
        page = got.content.decode()
        assert user.email not in page and other_user.email not in page
        assert private.share_id not in page and str(private.pk) not in page and "generated/p.png" not in page


# --- Cloudinary ---------------------------------------------------------------------


@pytest.fixture
def cloudinary_public(user, fake_cloudinary):
    """A large public result stored at the fake Cloudinary (through the SDK, over HTTP)."""
    storage.configure_cloudinary()
    answer = cloudinary.uploader.upload(
        io.BytesIO(busy_png(1600, 1200)),
        public_id=storage.random_name(),
        folder="stefna/generated",
        type=storage.CLOUDINARY_TYPE,
    )
    generation = GenerationFactory(user=user, preset_slug="oil_painting", preset_name="Oil painting", prompt="")
    media = MediaFactory(
        generation=generation,
        storage_key=answer["public_id"],
        url=storage.cloudinary_address(answer["public_id"]),
        width=answer["width"],
        height=answer["height"],
        content_type="image/png",
        is_public=True,
    )
    return media


def fetch_from_fake(fake_cloudinary, url: str) -> requests.Response:
    """GET a res.cloudinary.com delivery URL from the fake (same path, its address)."""
    parts = urlsplit(url)
    assert parts.scheme == "https" and parts.netloc == "res.cloudinary.com"
    return requests.get(fake_cloudinary.url + parts.path, timeout=10)


def test_on_cloudinary_og_image_is_a_signed_transformation_of_the_size_it_says(cloudinary_public, fake_cloudinary):
    tags = meta_of(crawl(f"/i/{cloudinary_public.share_id}").content.decode())
    url = tags["og:image"]
    assert url.startswith(f"https://res.cloudinary.com/{fake_cloudinary.cloud_name}/image/authenticated/s--")
    assert "/c_scale,h_900,w_1200/q_auto:eco/" in url and url.endswith(".jpg")
    assert (tags["og:image:width"], tags["og:image:height"]) == ("1200", "900")
    assert tags["twitter:image"] == url

    answer = fetch_from_fake(fake_cloudinary, url)
    assert answer.status_code == 200 and answer.headers["Content-Type"] == "image/jpeg"
    with Image.open(io.BytesIO(answer.content)) as preview:
        assert preview.size == (1200, 900)
    # A tampered transformation is refused: the signature covers it.
    assert fetch_from_fake(fake_cloudinary, url.replace("w_1200", "w_1600")).status_code == 404
    assert not storage.is_cloudinary_key(storage.preview_key(cloudinary_public.storage_key) or "x")


def test_on_cloudinary_made_private_or_deleted_the_preview_answers_404(
    cloudinary_public, fake_cloudinary, user, django_capture_on_commit_callbacks
):
    url = meta_of(crawl(f"/i/{cloudinary_public.share_id}").content.decode())["og:image"]
    assert fetch_from_fake(fake_cloudinary, url).status_code == 200

    services.media_set_public(user=user, media_id=cloudinary_public.pk, is_public=False)
    assert fetch_from_fake(fake_cloudinary, url).status_code == 404  # renamed: the old URL is dead
    owner = Client()
    owner.force_login(user)
    tags = meta_of(owner.get(f"/i/{cloudinary_public.share_id}").content.decode())
    assert "res.cloudinary.com" not in tags["og:image"]  # no never-expiring URL of a private image

    services.media_set_public(user=user, media_id=cloudinary_public.pk, is_public=True)
    again = meta_of(crawl(f"/i/{cloudinary_public.share_id}").content.decode())["og:image"]
    assert again != url and fetch_from_fake(fake_cloudinary, again).status_code == 200
    with django_capture_on_commit_callbacks(execute=True):
        services.media_delete(user=user, media_id=cloudinary_public.pk)
    assert fetch_from_fake(fake_cloudinary, again).status_code == 404


def test_preview_sizes_fit_within_the_bound_and_never_grow():
    assert previews.preview_size(2000, 1500) == (1200, 900)
    assert previews.preview_size(768, 1344) == (686, 1200)
    assert previews.preview_size(1024, 1024) == (1024, 1024)
    assert previews.preview_size(None, 1024) is None
