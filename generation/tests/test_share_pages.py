"""Share pages at /i/<share id>: the picture large, the preset, "Make your own", and the
tags that make a link unfurl with the picture; 404 for private, hidden or unknown ids."""

from __future__ import annotations

import io
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urlparse

import pytest
import requests
from PIL import Image

from generation.models import Media, new_share_id
from generation.tests.factories import GenerationFactory, MediaFactory

pytestmark = pytest.mark.django_db


class MetaTags(HTMLParser):
    """What an unfurler reads: <meta property|name=… content=…> and <link rel=canonical>."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: dict[str, str] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag == "meta" and values.get("content") is not None:
            key = values.get("property") or values.get("name")
            if key:
                self.tags.setdefault(key, values["content"] or "")
        if tag == "link" and values.get("rel") == "canonical":
            self.tags["canonical"] = values.get("href") or ""


def meta_of(html: str) -> dict[str, str]:
    parser = MetaTags()
    parser.feed(html)
    return parser.tags


def public_media(user, **extra) -> Media:
    generation = GenerationFactory(user=user, preset_slug="oil_painting", preset_name="Oil painting", prompt="")
    media = MediaFactory(generation=generation, is_public=True, **extra)
    assert isinstance(media, Media)
    return media


def test_share_ids_are_128_random_bits_and_not_the_api_id(user):
    media = public_media(user)
    assert len(media.share_id) == 22  # 16 bytes, base64url without padding
    assert media.share_id != str(media.pk)
    assert len({new_share_id() for _ in range(2000)}) == 2000


def test_the_page_shows_the_picture_the_preset_and_make_your_own(client, user):
    media = public_media(user)
    response = client.get(f"/i/{media.share_id}")
    assert response.status_code == 200
    page = response.content.decode()
    assert f'src="{media.url}"' in page
    assert 'data-testid="share-preset">Oil painting<' in page
    assert 'href="/accounts/sign-in/?next=%2F%3Fpreset%3Doil_painting"' in page  # visitors sign in first
    assert 'data-share-url="http://testserver/i/' in page
    assert "/static/js/share.js" in page and "<script>" not in page  # no inline script (CSP)


def test_make_your_own_goes_straight_to_the_studio_when_signed_in(client, user, other_user):
    media = public_media(user)
    client.force_login(other_user)
    page = client.get(f"/i/{media.share_id}").content.decode()
    assert 'href="/?preset=oil_painting" data-testid="make-your-own"' in page


def test_open_graph_and_twitter_tags_unfurl_with_the_picture(client, user):
    media = public_media(user, url="https://res.cloudinary.com/demo/image/upload/stefna/generated/a.jpg")
    tags = meta_of(client.get(f"/i/{media.share_id}").content.decode())
    assert tags["og:image"] == media.url
    assert tags["twitter:image"] == media.url
    assert tags["twitter:card"] == "summary_large_image"
    assert tags["og:title"] == tags["twitter:title"] == "Oil painting by Ada"
    assert tags["og:description"]
    assert tags["og:url"] == tags["canonical"] == f"http://testserver/i/{media.share_id}"
    assert tags["og:image:width"] == "1024"
    assert tags["og:locale"] == "en_US"
    assert "robots" not in tags


def test_the_page_speaks_the_visitors_language(client, user):
    media = public_media(user)
    page = client.get(f"/i/{media.share_id}", HTTP_ACCEPT_LANGUAGE="id-ID,id;q=0.9,en;q=0.5").content.decode()
    tags = meta_of(page)
    assert tags["og:locale"] == "id_ID"
    assert tags["og:title"] == "Lukisan cat minyak oleh Ada"
    assert "Buat versimu" in page


@pytest.mark.parametrize("case", ["private", "hidden", "unknown", "garbage", "deleted"])
def test_private_hidden_or_missing_images_are_404(client, user, other_user, case):
    media = public_media(user)
    share_id = media.share_id
    if case == "private":
        Media.objects.filter(pk=media.pk).update(is_public=False)
    elif case == "hidden":
        Media.objects.filter(pk=media.pk).update(hidden=True)
    elif case == "unknown":
        share_id = new_share_id()
    elif case == "garbage":
        share_id = "not-a-share-id"
    elif case == "deleted":
        media.delete()
    client.force_login(other_user)
    response = client.get(f"/i/{share_id}")
    assert response.status_code == 404
    assert "We couldn't find that page" in response.content.decode()


def test_the_404_page_is_in_the_visitors_language(client, user):
    media = public_media(user)
    Media.objects.filter(pk=media.pk).update(is_public=False)
    response = client.get(f"/i/{media.share_id}", HTTP_ACCEPT_LANGUAGE="id")
    assert response.status_code == 404
    page = response.content.decode()
    assert 'lang="id"' in page
    assert "We couldn't find that page" not in page


def test_the_owner_previews_a_private_image_marked_noindex(client, user):
    media = public_media(user)
    Media.objects.filter(pk=media.pk).update(is_public=False)
    client.force_login(user)
    page = client.get(f"/i/{media.share_id}").content.decode()
    assert "Only you can see this page" in page
    assert meta_of(page)["robots"] == "noindex"
    assert "data-share-url" not in page  # nothing to share yet


def test_old_share_addresses_redirect_to_the_share_id(client, user):
    media = public_media(user)
    response = client.get(f"/i/{media.pk}/")
    assert response.status_code == 301
    assert response["Location"] == f"/i/{media.share_id}"
    Media.objects.filter(pk=media.pk).update(is_public=False)
    assert client.get(f"/i/{media.pk}/").status_code == 404


@pytest.mark.django_db(transaction=True)
def test_an_unfurler_reads_og_image_and_fetches_it(live_server, settings, user):
    """What a chat app does with a pasted link: fetch the page, read og:image, fetch that."""
    (settings.MEDIA_ROOT / "generated").mkdir(parents=True)
    buffer = io.BytesIO()
    Image.new("RGB", (640, 480), (200, 120, 40)).save(buffer, "PNG")
    (settings.MEDIA_ROOT / "generated" / "result.png").write_bytes(buffer.getvalue())
    media = public_media(
        user, url="/media/generated/result.png", storage_key="generated/result.png", width=640, height=480
    )

    page = requests.get(f"{live_server.url}/i/{media.share_id}", timeout=10, headers={"User-Agent": "Slackbot 1.0"})
    assert page.status_code == 200
    image_url = meta_of(page.text)["og:image"]
    assert urlparse(image_url).scheme == "http" and urlparse(image_url).netloc == urlparse(live_server.url).netloc
    image = requests.get(image_url, timeout=10)
    assert image.status_code == 200
    # The share preview (generation/previews.py): a JPEG, here at the image's own size.
    assert image.headers["Content-Type"] == "image/jpeg"
    assert Image.open(io.BytesIO(image.content)).size == (640, 480)


@pytest.mark.parametrize("page", ["share", "old share address", "feed"])
def test_head_is_answered_like_get_for_link_checkers_and_unfurlers(client, user, page):
    """Some unfurlers and every link checker ask HEAD first; a 405 reads as a dead link."""
    media = public_media(user)
    path = {"share": f"/i/{media.share_id}", "old share address": f"/i/{media.pk}/", "feed": "/feed/"}[page]
    got, head = client.get(path), client.head(path)
    assert head.status_code == got.status_code and got.status_code in (200, 301)
    assert head["Content-Type"] == got["Content-Type"]
    assert head.content == b""


def test_head_of_a_private_image_is_404_not_405(client, user):
    media = public_media(user)
    Media.objects.filter(pk=media.pk).update(is_public=False)
    assert client.head(f"/i/{media.share_id}").status_code == 404


def test_download_saves_a_file_named_for_the_style_not_the_storage_hash(client, user):
    media = public_media(user, url="/media/generated/9f2c1e0b7a6d5c4b3a29180f7e6d5c4b3a291807.png")
    page = client.get(f"/i/{media.share_id}").content.decode()
    assert f'href="{media.url}" download="stefna-oil-painting-{media.share_id[:6]}.png"' in page
    indonesian = client.get(f"/i/{media.share_id}", HTTP_ACCEPT_LANGUAGE="id").content.decode()
    assert f'download="stefna-lukisan-cat-minyak-{media.share_id[:6]}.png"' in indonesian


@pytest.mark.parametrize(("path", "canonical"), [("/?preset=oil_painting", "/"), ("/feed/", "/feed/")])
def test_the_home_page_and_the_feed_unfurl_with_the_sites_picture(client, path, canonical):
    from django.contrib.staticfiles import finders

    english = meta_of(client.get(path).content.decode())
    assert english["og:url"] == english["canonical"] == f"http://testserver{canonical}"
    assert english["og:type"] == "website" and english["og:site_name"] == "Stefna"
    assert english["og:image"] == english["twitter:image"]
    assert english["og:image"].startswith("http://testserver/static/img/social-preview")
    assert (english["og:image:width"], english["og:image:height"]) == ("1200", "630")
    assert english["twitter:card"] == "summary_large_image"
    assert english["og:locale"] == "en_US" and english["og:locale:alternate"] == "id_ID"
    assert english["og:title"] and english["og:description"] and english["og:image:alt"]

    indonesian = meta_of(client.get(path, HTTP_ACCEPT_LANGUAGE="id").content.decode())
    assert indonesian["og:locale"] == "id_ID" and indonesian["og:locale:alternate"] == "en_US"
    assert indonesian["og:description"] != english["og:description"]
    assert indonesian["og:title"] != english["og:title"]

    found = finders.find("img/social-preview.png")
    with Image.open(found) as picture:
        assert picture.size == (1200, 630)
    assert Path(found).stat().st_size < 300_000


def test_a_later_feed_page_is_not_listed_and_names_the_feed_as_its_address(client):
    tags = meta_of(client.get("/feed/?cursor=abc").content.decode())
    assert tags["robots"] == "noindex, follow"
    assert tags["og:url"] == "http://testserver/feed/" and "canonical" not in tags
