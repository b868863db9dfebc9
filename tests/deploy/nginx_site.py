"""deploy/nginx.conf made runnable here: the certificates, include files and log folder of
a test, and optionally its own ports, upstream and media folder, so a test can check the
shipped site rather than a copy of it."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.fakes.certs import CertFiles, make_certificates
from tests.ports import free_port

ROOT = Path(__file__).resolve().parents[2]


def site_config(
    directory: Path,
    *,
    https_port: int | None = None,
    http_port: int | None = None,
    upstream_port: int | None = None,
    media_root: Path | None = None,
) -> tuple[Path, CertFiles]:
    """nginx.conf (main context) in `directory` that includes deploy/nginx.conf with this
    test's paths; with ports given, listening on 127.0.0.1 only and proxying to
    127.0.0.1:`upstream_port`; with `media_root`, that folder behind /protected-media/."""
    certs = make_certificates(directory / "certs")
    site = (ROOT / "deploy/nginx.conf").read_text()
    site = site.replace("/etc/letsencrypt/live/stefna.example.com/fullchain.pem", str(certs.cert_path))
    site = site.replace("/etc/letsencrypt/live/stefna.example.com/privkey.pem", str(certs.key_path))
    site = site.replace("/etc/nginx/stefna_proxy_params", str(ROOT / "deploy/stefna_proxy_params"))
    site = site.replace("/var/log/nginx/", f"{directory}/")
    if https_port is not None:
        site = site.replace("    listen [::]:443 ssl http2;\n", "").replace("    listen [::]:80;\n", "")
        site = site.replace("listen 443 ssl http2;", f"listen 127.0.0.1:{https_port} ssl http2;")
        site = site.replace("listen 80;", f"listen 127.0.0.1:{http_port or free_port()};")
    if upstream_port is not None:
        site = site.replace("server 127.0.0.1:8000 ", f"server 127.0.0.1:{upstream_port} ")
    if media_root is not None:
        site = site.replace("alias /var/lib/stefna/media/;", f"alias {media_root}/;")
    (directory / "stefna.conf").write_text(site)
    # As root, nginx's workers would run as nobody, who cannot enter a test's folder.
    user = "user root;\n" if os.geteuid() == 0 else ""
    (directory / "nginx.conf").write_text(
        f"{user}pid {directory}/nginx.pid;\nerror_log {directory}/error.log;\nevents {{}}\n"
        f"http {{\n access_log off;\n client_body_temp_path {directory};\n proxy_temp_path {directory};\n"
        f" include {directory}/stefna.conf;\n}}\n"
    )
    return directory / "nginx.conf", certs


@dataclass(frozen=True)
class Nginx:
    base: str  # https, as localhost (the name the certificate holds)
    certs: CertFiles  # the CA to trust
    pid: int  # the master (its workers are its children)
    plain: str  # the plain-http server (ACME challenges, redirects, /healthz)


@contextlib.contextmanager
def running_nginx(directory: Path, *, upstream_port: int, media_root: Path) -> Iterator[Nginx]:
    """nginx with deploy/nginx.conf in front of 127.0.0.1:`upstream_port`, serving
    `media_root` behind /protected-media/, until the block ends."""
    https_port, http_port = free_port(), free_port()
    config, certs = site_config(
        directory, https_port=https_port, http_port=http_port, upstream_port=upstream_port, media_root=media_root
    )
    server = subprocess.Popen(
        ["nginx", "-p", str(directory), "-c", str(config), "-g", "daemon off;"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 10
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", https_port), timeout=0.2):
                break
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"nginx did not start: {server.stderr.read().decode() if server.stderr else ''}")
            time.sleep(0.05)
        yield Nginx(f"https://localhost:{https_port}", certs, server.pid, f"http://localhost:{http_port}")
    finally:
        server.terminate()
        server.wait(timeout=10)
