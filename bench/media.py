#!/usr/bin/env python
"""What sending a photo costs the web, behind nginx, with and without MEDIA_ACCEL_REDIRECT.

Every photo and result on local disk is owner-only, so every request for one goes through
Stefna's check (stefna/media.py). Then either Stefna sends the bytes (read whole on a
request thread, written by the event loop) or, with MEDIA_ACCEL_REDIRECT, it answers an
empty X-Accel-Redirect and nginx sends the file. Both runs here are the production
topology of docs/deploy.md on one machine: nginx with deploy/nginx.conf (TLS, HTTP/1.1
keep-alive to the client) in front of the production ASGI command (`gunicorn -c
gunicorn.conf.py`, WEB_CONCURRENCY=2) on PostgreSQL; only the variable differs.

The owner asks for their own source photo (a phone-sized file, --megabytes of
incompressible bytes named .jpg), --concurrency clients back to back for --seconds.
Prints, per mode: requests a second, latency p50/p95, CPU per request of the web
processes, nginx, PostgreSQL and this client (TLS and 4 MB reads in Python: on two cores
it is what limits requests a second), and the web processes' peak resident memory.

    .venv/bin/python bench/media.py [--megabytes 4] [--concurrency 8] [--seconds 10]

Needs nginx (`apt-get install nginx-light`, as .ci/run does).
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx

from bench import support

DB_NAME = "stefna_bench_media"
ACCEL = "/protected-media/"


def make_owner_and_photo(media_root: Path, megabytes: float) -> tuple[str, str]:
    """A user with one generation whose source photo is `megabytes` of noise; returns the
    photo's address and the owner's Cookie header."""
    from django.conf import settings
    from django.test import Client

    from generation.models import Generation
    from stefna.accounts.models import User

    user = User.objects.create_user(email="owner@bench.example", display_name="Owner")
    name = "sources/" + os.urandom(20).hex() + ".jpg"
    (media_root / "sources").mkdir(parents=True, exist_ok=True)
    (media_root / name).write_bytes(os.urandom(int(megabytes * 1024 * 1024)))
    Generation.objects.create(user=user, preset_slug="bench", kind="preset", cost=2, source_image=name)
    client = Client()
    client.force_login(user)
    cookie = settings.SESSION_COOKIE_NAME
    return f"/media/{name}", f"{cookie}={client.cookies[cookie].value}"


def measure(
    mode: str, *, env: dict[str, str], work: Path, path: str, cookie: str, args: argparse.Namespace
) -> list[object]:
    from tests.deploy.nginx_site import running_nginx

    web_port = support.free_port()
    web_env = {**env, "GUNICORN_BIND": f"127.0.0.1:{web_port}", "WEB_CONCURRENCY": "2"}
    if mode == "nginx sends":
        web_env["MEDIA_ACCEL_REDIRECT"] = ACCEL
    log = (work / f"web-{mode.replace(' ', '-')}.log").open("wb")
    web = subprocess.Popen(  # noqa: S603 - our own command
        [support.PYTHON, "-m", "gunicorn", "-c", "gunicorn.conf.py"],
        cwd=support.ROOT, env=web_env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    nginx_dir = work / f"nginx-{mode.replace(' ', '-')}"
    nginx_dir.mkdir()
    try:
        with running_nginx(nginx_dir, upstream_port=web_port, media_root=Path(env["MEDIA_ROOT"])) as nginx:
            os.environ["SSL_CERT_FILE"] = str(nginx.certs.ca_path)  # httpx reads it as each client is made
            url = nginx.base + path
            support.wait_for_port(web_port, timeout=30)
            deadline = time.monotonic() + 30
            while True:  # the app answers through nginx (gunicorn binds before it serves)
                try:
                    if httpx.get(url, headers={"Cookie": cookie}, timeout=5).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise SystemExit(f"{mode}: no 200 through nginx within 30 s; see {log.name}")
                time.sleep(0.2)

            web_pids = {web.pid, *support.child_pids(web.pid)}
            nginx_pids = {nginx.pid, *support.child_pids(nginx.pid)}
            size = (Path(env["MEDIA_ROOT"]) / path.removeprefix("/media/")).stat().st_size
            before_nginx = {pid: support.process_cpu_seconds(pid) for pid in nginx_pids}

            def fetch(client: httpx.Client, _: int) -> httpx.Response:
                answer = client.get(url, headers={"Cookie": cookie})
                if answer.status_code == 200 and len(answer.content) != size:
                    raise httpx.DecodingError(f"{len(answer.content)} bytes, not {size}")
                return answer

            result = support.run_load(
                mode, fetch, concurrency=args.concurrency, seconds=args.seconds,
                probe=support.cpu_probe(web.pid, DB_NAME), app_pids=lambda: web_pids,
            )  # fmt: skip
            after_nginx = {pid: support.process_cpu_seconds(pid) for pid in nginx_pids}
            nginx_cpu = support.cpu_spent(before_nginx, after_nginx, nginx_pids)
            web_peak_mb = sum(support.peak_rss_mb(pid) for pid in web_pids)  # before they stop
    finally:
        os.killpg(web.pid, signal.SIGTERM)
        try:
            web.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(web.pid, signal.SIGKILL)
        log.close()
    errors = ", ".join(f"{key} × {value}" for key, value in result.errors.items()) or "none"
    return [
        mode,
        f"{result.rps:.1f}",
        f"{result.p(0.50):.1f} / {result.p(0.95):.1f} ms",
        f"{result.per_request_ms(result.app_cpu_seconds):.2f} ms",
        f"{result.per_request_ms(nginx_cpu):.2f} ms",
        f"{result.per_request_ms(result.db_cpu_seconds):.2f} ms",
        f"{result.per_request_ms(result.client_cpu_seconds):.2f} ms",
        f"{web_peak_mb:.0f} MB",
        errors,
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--megabytes", type=float, default=4.0, help="size of the photo")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--keep-db", action="store_true")
    args = parser.parse_args()
    if not shutil.which("nginx"):
        print("bench/media.py needs nginx: apt-get install -y nginx-light", file=sys.stderr)
        return 1
    support.raise_priority()
    work = Path(tempfile.mkdtemp(prefix="stefna-bench-media-"))
    media_root = work / "media"
    env = support.bench_env(
        DATABASE_URL=support.create_database(DB_NAME), MEDIA_ROOT=str(media_root), MEDIA_ROOT_SHARED="1",
        DJANGO_SETTINGS_MODULE="stefna.settings", ALLOWED_HOSTS="localhost,testserver",
    )  # fmt: skip
    try:
        subprocess.run([support.PYTHON, "manage.py", "migrate", "-v0"], cwd=support.ROOT, env=env, check=True)
        os.environ.update(env)
        import django

        django.setup()
        path, cookie = make_owner_and_photo(media_root, args.megabytes)
        from django.db import connections

        connections.close_all()
        print(
            f"bench/media.py: the owner's {args.megabytes:g} MB photo, {args.concurrency} clients, "
            f"{args.seconds:g} s a mode, through nginx (TLS) to 2 web processes; load average {os.getloadavg()[0]:.1f}"
        )
        rows = [
            measure(mode, env=env, work=work, path=path, cookie=cookie, args=args)
            for mode in ("Stefna sends", "nginx sends")
        ]
        support.print_table(
            rows,
            ["mode", "requests/s", "p50 / p95", "web CPU/request", "nginx CPU/request", "PostgreSQL CPU/request",
             "client CPU/request", "web peak RSS", "errors"],
        )  # fmt: skip
        return 0 if all(row[-1] == "none" for row in rows) else 1
    finally:
        from django.db import connections

        connections.close_all()
        if not args.keep_db:
            support.drop_database(DB_NAME)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
