"""The operators' routes behind the real nginx with deploy/nginx.conf.

/metrics: Stefna asks for METRICS_TOKEN or a staff session, and nginx also keeps the route
from addresses outside its allow-list (this machine and private networks by default), so
a leaked token is not enough from the internet. Prometheus's scrape (deploy/prometheus.yml)
from an allowed address works. /healthz: a load balancer's probe over plain HTTP."""

from __future__ import annotations

import shutil
import ssl
from urllib.parse import urlsplit

import httpx
import pytest

from tests.deploy.nginx_site import running_nginx

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(not shutil.which("nginx"), reason="nginx is not installed (.ci/run installs it)"),
]

TOKEN = "metrics-test-token"  # noqa: S105


def test_nginx_passes_the_scrape_from_an_allowed_address_only(live_server, settings, tmp_path):
    settings.METRICS_TOKEN = TOKEN
    folder = tmp_path / "nginx"
    folder.mkdir()
    with running_nginx(folder, upstream_port=urlsplit(live_server.url).port, media_root=tmp_path) as nginx:
        trust = ssl.create_default_context(cafile=str(nginx.certs.ca_path))

        def client(source: str) -> httpx.Client:
            transport = httpx.HTTPTransport(local_address=source, verify=trust)
            return httpx.Client(base_url=nginx.base, transport=transport, timeout=10)

        scrape = {"Authorization": f"Bearer {TOKEN}"}
        with client("127.0.0.1") as prometheus:
            answer = prometheus.get("/metrics", headers=scrape)
            assert answer.status_code == 200
            assert "stefna_generation_queue_depth" in answer.text
            # Allowed through nginx, Stefna still wants the token, and its refusals pass.
            assert prometheus.get("/metrics").status_code == 401
            wrong = prometheus.get("/metrics", headers={"Authorization": "Bearer not-the-token"})
            assert wrong.status_code == 403 and "token" in wrong.json()["message"]

        # 127.0.0.2 is this machine too, but not on the allow-list: it stands for any
        # address outside it. Refused by nginx, in Stefna's error shape, token or not.
        with client("127.0.0.2") as outsider:
            for headers in (scrape, {}):
                refused = outsider.get("/metrics", headers=headers)
                assert refused.status_code == 403
                assert refused.headers["content-type"] == "application/json"
                assert refused.json()["code"] == "forbidden"
                assert "stefna_" not in refused.text
            indonesian = outsider.get("/metrics", headers={"Accept-Language": "id-ID,id;q=0.9,en;q=0.5"})
            assert indonesian.status_code == 403 and indonesian.json()["message"] != refused.json()["message"]
            # The rest of the site is for everyone.
            assert outsider.get("/healthz").status_code == 200


def test_a_load_balancer_may_probe_healthz_over_plain_http(live_server, settings, tmp_path):
    """docs/operations.md: /healthz is exempt from SECURE_SSL_REDIRECT so a load balancer
    may probe it over plain HTTP; nginx's port 80 answered it with a 301 to https, which
    probes count as down. Everything else there still moves to https."""
    settings.SECURE_SSL_REDIRECT = True
    folder = tmp_path / "nginx"
    folder.mkdir()
    with (
        running_nginx(folder, upstream_port=urlsplit(live_server.url).port, media_root=tmp_path) as nginx,
        httpx.Client(base_url=nginx.plain, timeout=10) as probe,
    ):
        answer = probe.get("/healthz")
        assert answer.status_code == 200 and answer.json()["checks"]["database"] == "up"
        assert probe.get("/healthz?deep=1").status_code == 200
        moved = probe.get("/api/presets")
        assert moved.status_code == 301 and moved.headers["location"].startswith("https://")
        assert probe.get("/metrics").status_code == 301
