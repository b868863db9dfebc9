"""Photos and results behind the real nginx with deploy/nginx.conf and MEDIA_ACCEL_REDIRECT:
Stefna decides who may see a file, nginx sends it (with ranges and conditional GETs), and
the headers the browser gets are Stefna's policy, whichever of the two sent them."""

from __future__ import annotations

import re
import shutil
import ssl
from urllib.parse import urlsplit

import httpx
import pytest
from django.conf import settings as django_settings
from django.test import Client

from generation.models import Generation
from generation.tests.pipeline_helpers import run_worker, start_generation
from presets.tests.factories import PresetFactory
from tests.deploy.nginx_site import running_nginx

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(not shutil.which("nginx"), reason="nginx is not installed (.ci/run installs it)"),
]


def _session_of(user) -> dict[str, str]:
    """The Cookie header of a browser signed in as `user`."""
    client = Client()
    client.force_login(user)
    name = django_settings.SESSION_COOKIE_NAME
    return {"Cookie": f"{name}={client.cookies[name].value}"}


def test_nginx_sends_what_stefna_allows_and_nothing_else(live_server, settings, tmp_path, user, other_user, fake_fal):
    settings.MEDIA_ACCEL_REDIRECT = "/protected-media/"
    generation = start_generation(user, PresetFactory(kind="neo_glitch"))
    run_worker(generation)
    assert generation.status == Generation.Status.SUCCEEDED
    result, photo = generation.media.get().storage_key, generation.source_image.name

    folder = tmp_path / "nginx"
    folder.mkdir()
    with running_nginx(folder, upstream_port=urlsplit(live_server.url).port, media_root=settings.MEDIA_ROOT) as nginx:
        trust = ssl.create_default_context(cafile=str(nginx.certs.ca_path))
        with httpx.Client(base_url=nginx.base, verify=trust, timeout=10) as web:
            owner = _session_of(user)
            for name, content_type in ((result, "image/png"), (photo, "image/jpeg")):
                stored = (settings.MEDIA_ROOT / name).read_bytes()
                answer = web.get(f"/media/{name}", headers=owner)
                assert answer.status_code == 200
                assert answer.content == stored, "the file itself, sent by nginx"
                assert answer.headers["content-type"] == content_type
                assert answer.headers.get_list("cache-control") == ["private, no-store"]
                assert answer.headers["x-content-type-options"] == "nosniff"
                assert answer.headers["vary"] == "Cookie, Authorization"
                assert re.fullmatch(r"[0-9a-f]{32}", answer.headers["x-request-id"])
                assert "x-accel-redirect" not in answer.headers, "the internal address never reaches the browser"

                part = web.get(f"/media/{name}", headers={**owner, "Range": "bytes=0-99"})
                assert part.status_code == 206 and part.content == stored[:100]
                again = web.get(f"/media/{name}", headers={**owner, "If-None-Match": answer.headers["etag"]})
                assert again.status_code == 304

                for stranger in ({}, _session_of(other_user)):
                    refused = web.get(f"/media/{name}", headers=stranger)
                    assert refused.status_code == 404 and refused.content != stored

            # The internal location answers only Stefna's redirect, never a browser.
            assert web.get(f"/protected-media/{result}", headers=owner).status_code == 404

            # Made public: anyone gets it, cacheable for an hour, still through Stefna's check.
            owner_client = Client()
            owner_client.force_login(user)
            made = owner_client.post(f"/i/{generation.media.get().pk}/visibility/", {"is_public": "1"})
            assert made.status_code == 302, made
            public = generation.media.get().storage_key
            answer = web.get(f"/media/{public}")
            assert answer.status_code == 200 and answer.content == (settings.MEDIA_ROOT / public).read_bytes()
            assert answer.headers.get_list("cache-control") == ["public, max-age=3600"]


def test_nginx_sends_a_public_images_share_preview_until_it_is_made_private(
    live_server, settings, tmp_path, user, fake_fal
):
    """The share page's og:image behind nginx: Stefna makes the preview and says yes, nginx
    sends it; made private, the preview is removed and its address is a 404."""
    from generation import storage
    from generation.tests.test_share_pages import meta_of

    settings.MEDIA_ACCEL_REDIRECT = "/protected-media/"
    generation = start_generation(user, PresetFactory(kind="neo_glitch"))
    run_worker(generation)
    media = generation.media.get()
    owner = Client()
    owner.force_login(user)
    assert owner.post(f"/i/{media.pk}/visibility/", {"is_public": "1"}).status_code == 302

    folder = tmp_path / "nginx"
    folder.mkdir()
    with running_nginx(folder, upstream_port=urlsplit(live_server.url).port, media_root=settings.MEDIA_ROOT) as nginx:
        trust = ssl.create_default_context(cafile=str(nginx.certs.ca_path))
        with httpx.Client(base_url=nginx.base, verify=trust, timeout=10) as web:
            page = web.get(f"/i/{media.share_id}")
            assert page.status_code == 200
            preview = urlsplit(meta_of(page.text)["og:image"]).path
            assert preview == f"/media/{storage.preview_key(media.storage_key)}"
            answer = web.get(preview)
            assert answer.status_code == 200 and answer.headers["content-type"] == "image/jpeg"
            assert answer.content == (settings.MEDIA_ROOT / preview.removeprefix("/media/")).read_bytes()
            assert answer.headers.get_list("cache-control") == ["public, max-age=3600"]
            assert web.get(f"/protected-media/{preview.removeprefix('/media/')}").status_code == 404

            assert owner.post(f"/i/{media.pk}/visibility/", {"is_public": "0"}).status_code == 302
            assert web.get(preview).status_code == 404
            assert not (settings.MEDIA_ROOT / preview.removeprefix("/media/")).exists()
