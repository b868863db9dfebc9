"""The Host behind the real nginx with deploy/nginx.conf, on a port other than 443.

nginx sent `$host`, which drops the port: every absolute URL Stefna built (share links,
Stripe's return addresses, the API's image URLs) lost it, and Django's CSRF check refused
the site's own forms, whose Origin keeps it. It now sends the client's Host as it came
(`$stefna_host`), still checked by Stefna against ALLOWED_HOSTS; a request with no Host
gets the server_name, never an empty one. These tests run nginx on a free port, never 443.
"""

from __future__ import annotations

import json
import re
import shutil
import socket
import ssl
import subprocess
from urllib.parse import urlsplit

import httpx
import pytest

from presets.tests.factories import PresetFactory
from tests.deploy.nginx_site import Nginx, running_nginx

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(not shutil.which("nginx"), reason="nginx is not installed (.ci/run installs it)"),
]


@pytest.fixture
def nginx(live_server, settings, tmp_path):
    """deploy/nginx.conf in front of Stefna, configured as docs/deploy.md says."""
    settings.TRUSTED_PROXY_COUNT = 1
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    settings.ALLOWED_HOSTS = ["localhost", "stefna.example.com"]
    settings.CSRF_TRUSTED_ORIGINS = []  # the site's own origin needs none
    PresetFactory(slug="oil")
    folder = tmp_path / "nginx"
    folder.mkdir()
    with running_nginx(folder, upstream_port=urlsplit(live_server.url).port, media_root=tmp_path) as site:
        yield site


def client(nginx: Nginx) -> httpx.Client:
    trust = ssl.create_default_context(cafile=str(nginx.certs.ca_path))
    return httpx.Client(base_url=nginx.base, verify=trust, timeout=10)


def thumbnail_url(answer_text: str) -> str:
    [preset] = [preset for preset in json.loads(answer_text) if preset["slug"] == "oil"]
    return preset["thumbnail_url"]


def test_absolute_urls_keep_the_port_the_browser_used(nginx):
    with client(nginx) as browser:
        answer = browser.get("/api/presets")
    assert answer.status_code == 200
    assert thumbnail_url(answer.text).startswith(f"{nginx.base}/static/")  # https://localhost:<port>/


@pytest.mark.skipif(not shutil.which("curl"), reason="curl is not installed")
def test_over_http2_too(nginx):
    """HTTP/2 has no Host header but an :authority, which nginx gives as $http_host."""
    answer = subprocess.run(
        ["curl", "--silent", "--http2", "--cacert", str(nginx.certs.ca_path), "--write-out", "\n%{http_version}",
         f"{nginx.base}/api/presets"],
        capture_output=True, text=True, timeout=20, check=True,
    )  # fmt: skip
    body, version = answer.stdout.rsplit("\n", 1)
    assert version == "2"
    assert thumbnail_url(body).startswith(f"{nginx.base}/static/")


def test_the_sites_own_forms_pass_the_csrf_check(nginx):
    """The browser's Origin is https://localhost:<port>; Django compares it with the Host."""
    with client(nginx) as browser:
        page = browser.get("/accounts/sign-in/")
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text)
        assert page.status_code == 200 and token
        answer = browser.post(
            "/accounts/sign-in/",
            data={"csrfmiddlewaretoken": token.group(1), "email": "nobody@example.com", "password": "wrong"},
            headers={"Origin": nginx.base, "Referer": f"{nginx.base}/accounts/sign-in/"},
        )
    assert answer.status_code != 403, answer.text[:500]


def raw_https(nginx: Nginx, request: bytes) -> bytes:
    """`request` as it is, over TLS to nginx (no client library adds a Host)."""
    port = urlsplit(nginx.base).port
    trust = ssl.create_default_context(cafile=str(nginx.certs.ca_path))
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as plain,
        trust.wrap_socket(plain, server_hostname="localhost") as tls,
    ):
        tls.sendall(request)
        answer = b""
        while chunk := tls.recv(65536):
            answer += chunk
    return answer


def test_a_request_without_a_host_gets_the_server_name_not_an_empty_one(nginx, live_server):
    answer = raw_https(nginx, b"GET /api/presets HTTP/1.0\r\n\r\n")
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    assert thumbnail_url(body.decode()).startswith("https://stefna.example.com/static/")


def test_a_host_the_site_does_not_serve_is_still_refused(nginx):
    """nginx passes any well-formed Host to its only https server, as it did with $host."""
    with client(nginx) as browser:
        port = urlsplit(nginx.base).port
        answer = browser.get("/api/presets", headers={"Host": f"evil.example:{port}"})
    assert answer.status_code == 400  # DisallowedHost: no URL is ever built from it
