#!/usr/bin/env python
"""`make smoke`: Stefna in its production topology, end to end, stopped the way
supervisors stop it.

- DEBUG=0, PostgreSQL from DATABASE_URL and Redis from REDIS_URL (both scratch: the
  database is dropped and made again, so its name must contain "smoke"; the Redis
  database is flushed, so it must not be number 0);
- the release step (`migrate`, `collectstatic`, `check`), then gunicorn with
  gunicorn.conf.py and 2 ASGI worker processes on one port, and 2 `manage.py db_worker`
  processes (the Procfile's web and worker lines);
- fakes of fal (HTTPS, a throwaway CA through SSL_CERT_FILE) and Cloudinary at the wire,
  in this process;
- signs a user in with an emailed code, runs generations through the JSON API (session
  and token, `/api/generate-image` included) until both workers have worked on them,
  checks results, static files, /healthz, X-Request-ID, JSON logs and /metrics;
- SIGTERMs every process with generations in flight: each exits 0 and nothing is half
  done (no claim held, no submission half made, ledger clean); a fresh worker then
  finishes what was handed back.

It stops by itself: every wait is bounded and the whole run has SMOKE_TIMEOUT seconds
(default 300); whatever it started is killed on the way out.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/stefna_smoke REDIS_URL=redis://127.0.0.1:6379/15 \
        .venv/bin/python tests/smoke/run.py
"""

from __future__ import annotations

import base64
import functools
import json
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402

PYTHON = sys.executable
WORKERS = 2
WEB_PROCESSES = 2
LEASE_SECONDS = 120  # long, so a claim still held after the stop is unmistakable


class SmokeFailure(AssertionError):
    pass


def check(condition: object, message: str) -> None:
    if not condition:
        raise SmokeFailure(message)


def step(message: str) -> None:
    print(f"smoke: {message}", flush=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(condition: Callable[[], Any], *, timeout: float, what: str, interval: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = condition()
        except (httpx.HTTPError, OSError) as exc:
            last = exc
        if last and not isinstance(last, Exception):
            return last
        time.sleep(interval)
    raise SmokeFailure(f"timed out after {timeout:.0f} s waiting for {what} (last: {last!r})")


# --- Scratch services ----------------------------------------------------------------------


def scratch_database(url: str) -> None:
    import psycopg

    parts = urlsplit(url)
    name = parts.path.lstrip("/")
    check(parts.scheme.startswith("postgres"), f"make smoke needs PostgreSQL in DATABASE_URL, not {parts.scheme}")
    check("smoke" in name, f"DATABASE_URL's database ({name!r}) is dropped and made again: its name must say smoke")
    admin = parts._replace(path="/postgres").geturl()
    with psycopg.connect(admin, autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        connection.execute(f'CREATE DATABASE "{name}"')


def scratch_redis(url: str) -> None:
    import redis

    check(urlsplit(url).path.strip("/") not in {"", "0"}, "REDIS_URL must name a scratch database number (not 0)")
    client = redis.Redis.from_url(url, socket_timeout=5)
    client.ping()
    client.flushdb()


# --- Processes -----------------------------------------------------------------------------


def _parent_pid(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[1])  # the field after the state, past the "(name)"


class Process:
    def __init__(self, name: str, command: list[str], env: dict[str, str], log_dir: Path) -> None:
        self.name = name
        self.log = log_dir / f"{name}.log"
        self.popen = subprocess.Popen(  # noqa: S603
            command,
            cwd=ROOT,
            env=env,
            stdout=self.log.open("ab"),
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own group: the clean-up kill reaches its children
        )

    def output(self, tail: int = 4000) -> str:
        return self.log.read_text(errors="replace")[-tail:]

    def json_lines(self) -> list[dict[str, Any]]:
        lines = []
        for line in self.log.read_text(errors="replace").splitlines():
            if line.startswith("{"):
                try:
                    lines.append(json.loads(line))
                except json.JSONDecodeError:
                    pass
        return lines

    def alive(self) -> bool:
        return self.popen.poll() is None

    def terminate(self) -> None:
        if self.alive():
            self.popen.send_signal(signal.SIGTERM)

    def wait(self, timeout: float) -> int:
        try:
            return self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            raise SmokeFailure(f"{self.name} did not exit within {timeout:.0f} s of SIGTERM:\n{self.output()}") from exc

    def kill(self) -> None:
        if self.alive():
            try:
                os.killpg(self.popen.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.popen.wait(10)


def run_command(env: dict[str, str], *args: str, timeout: float = 180) -> str:
    result = subprocess.run(  # noqa: S603
        [PYTHON, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
    )
    check(result.returncode == 0, f"manage.py {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return result.stdout


# --- The run -------------------------------------------------------------------------------


def tiny_jpeg() -> str:
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (160, 120), (200, 120, 60)).save(buffer, "JPEG")
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode()


def sign_in(client: httpx.Client, web: Process, email: str) -> None:
    page = client.get("/accounts/sign-in/")
    check(page.status_code == 200, f"sign-in page answered {page.status_code}")
    csrf = client.cookies["csrftoken"]
    sent = client.post("/accounts/sign-in/", data={"email": email, "csrfmiddlewaretoken": csrf})
    check(sent.status_code == 302, f"asking for a code answered {sent.status_code}: {sent.text[:300]}")
    # The console mailer prints the email on the web process's output. Only the email's own
    # line: a looser pattern once took the digits of a log line's request id for the code.
    code = wait_for(
        lambda: (re.findall(r"Your sign-in code is (\d{6})\b", web.output(20000)) or [None])[-1],
        timeout=10,
        what="the sign-in email",
    )
    entered = client.post("/accounts/code/", data={"code": code, "csrfmiddlewaretoken": client.cookies["csrftoken"]})
    check(entered.status_code == 302, f"entering the code answered {entered.status_code}: {entered.text[:300]}")
    me = client.get("/api/quota", headers={"Accept": "application/json"})
    check(me.status_code == 200, f"the session is not signed in ({me.status_code})")


def pick_preset(client: httpx.Client) -> dict[str, Any]:
    presets = client.get("/api/presets").json()
    items = presets if isinstance(presets, list) else presets.get("items", [])
    check(items, "no presets are seeded")
    return next((p for p in items if p["kind"] != "image_to_image"), items[0])


def generations_by_worker(workers: list[Process]) -> dict[str, int]:
    """How many pipeline steps each worker logged (submissions accepted, jobs finished)."""
    counts = {}
    for worker in workers:
        counts[worker.name] = sum(
            1
            for line in worker.json_lines()
            if line.get("logger", "").startswith("generation")
            and ("accepted it as" in line.get("message", "") or "succeeded with" in line.get("message", ""))
        )
    return counts


def main() -> int:  # noqa: C901 - one scenario, read top to bottom
    database_url = os.environ.get("DATABASE_URL", "")
    redis_url = os.environ.get("REDIS_URL", "")
    check(database_url and redis_url, "make smoke needs DATABASE_URL (PostgreSQL) and REDIS_URL in the environment")
    budget = int(os.environ.get("SMOKE_TIMEOUT", "300"))

    def out_of_time(signum: int, frame: Any) -> None:
        raise SmokeFailure(f"the smoke test ran out of its {budget} s")

    signal.signal(signal.SIGALRM, out_of_time)
    signal.alarm(budget)

    work = Path(tempfile.mkdtemp(prefix="stefna-smoke-"))
    processes: list[Process] = []
    started = time.monotonic()
    from tests.fakes.cloudinary import FakeCloudinary
    from tests.fakes.fal import FakeFal

    fal = FakeFal(cert_dir=work / "certs").start()
    fal.latency = 2.0
    cloudinary = FakeCloudinary(ca_path=fal.certs.ca_path).start()
    try:
        step("scratch PostgreSQL database and Redis")
        scratch_database(database_url)
        scratch_redis(redis_url)

        port = free_port()
        base = f"http://127.0.0.1:{port}"
        metrics_token = secrets.token_urlsafe(24)
        env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(("FAL_", "CLOUDINARY_", "AWS_", "PYTEST", "DJANGO_ALLOW_ASYNC_UNSAFE"))
        }
        env.update(
            {
                "DJANGO_SETTINGS_MODULE": "stefna.settings",
                "PYTHONPATH": str(ROOT),
                "DEBUG": "0",
                # As in the Dockerfile: each log line is one write, so the lines of two gunicorn
                # workers sharing one log file never interleave mid-line.
                "PYTHONUNBUFFERED": "1",
                "SECRET_KEY": secrets.token_urlsafe(50),
                "DATABASE_URL": database_url,
                "REDIS_URL": redis_url,
                "ALLOWED_HOSTS": "127.0.0.1,localhost",
                "CSRF_TRUSTED_ORIGINS": base,
                # Plain http on the loopback: the cookies must travel without TLS here.
                "SESSION_COOKIE_SECURE": "0",
                "CSRF_COOKIE_SECURE": "0",
                "FAL_KEY": "smoke-key-id:smoke-key-secret",
                "FAL_QUEUE_RUN_HOST": f"127.0.0.1:{fal.port}",
                "FAL_RUN_HOST": f"127.0.0.1:{fal.port}",
                "SSL_CERT_FILE": str(fal.certs.ca_path),
                "FAL_POLL_INTERVAL_SECONDS": "0.5",
                "CLOUDINARY_URL": cloudinary.cloudinary_url,
                # The fakes live on the loopback; production never sets this.
                "ALLOW_PRIVATE_RESULT_URLS": "1",
                "MEDIA_ROOT": str(work / "media"),
                "MEDIA_ROOT_SHARED": "1",
                "OFFLINE_PROVIDER_DIR": str(work / "offline"),
                "WEB_CONCURRENCY": str(WEB_PROCESSES),
                "GUNICORN_BIND": f"127.0.0.1:{port}",
                "GUNICORN_GRACEFUL_TIMEOUT": "30",
                "GENERATE_IMAGE_WAIT_SECONDS": "25",
                "PROMETHEUS_MULTIPROC_DIR": str(work / "prometheus"),
                "METRICS_TOKEN": metrics_token,
                "LOG_FORMAT": "json",
                "LOG_LEVEL": "INFO",
                "PIPELINE_LEASE_SECONDS": str(LEASE_SECONDS),
            }
        )

        step("release: migrate, collectstatic, check")
        run_command(env, "migrate", "--no-input")
        run_command(env, "collectstatic", "--no-input", "--verbosity", "0")
        checked = subprocess.run(  # noqa: S603
            [PYTHON, "manage.py", "check"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
        )
        check(checked.returncode == 0, f"manage.py check failed:\n{checked.stdout}{checked.stderr}")
        output = checked.stdout + checked.stderr
        # ALLOW_PRIVATE_RESULT_URLS is on for the fakes (stefna.W006); nothing else may be flagged.
        flagged = set(re.findall(r"\bstefna\.W\d+", output)) - {"stefna.W006"}
        check(not flagged, f"start-up checks flagged {sorted(flagged)}:\n{output}")

        step(f"gunicorn ({WEB_PROCESSES} ASGI processes) and {WORKERS} db_workers")
        web = Process("web", [PYTHON, "-m", "gunicorn", "-c", "gunicorn.conf.py"], env, work)
        workers = [
            Process(f"worker-{n}", [PYTHON, "manage.py", "db_worker", "--worker-id", f"smoke-{n}"], env, work)
            for n in range(1, WORKERS + 1)
        ]
        processes += [web, *workers]

        # 200 alone is only the web: a worker that has not written its first heartbeat yet is
        # "degraded" with a 200 too (the processes start together, and which is first is luck).
        health = wait_for(
            lambda: (
                (r := httpx.get(f"{base}/healthz", timeout=5)).status_code == 200
                and r.json()["checks"]["worker"] == "up"
                and r
            ),
            timeout=60,
            what="/healthz to answer 200 with a worker up (web up, a worker's heartbeat written)",
        )
        body = health.json()
        check(body["status"] == "ok" and body["checks"]["database"] == "up", f"/healthz said {body}")
        check(health.headers.get("X-Request-ID"), "/healthz has no X-Request-ID header")

        client = httpx.Client(base_url=base, timeout=60, follow_redirects=False)
        step("sign in with an emailed code")
        sign_in(client, web, "smoke@example.com")
        token = run_command(env, "create_api_token", "smoke@example.com").strip().splitlines()[-1]
        run_command(env, "grant_credits", "smoke@example.com", "200")
        preset = pick_preset(client)
        photo = tiny_jpeg()
        csrf = {"X-CSRFToken": client.cookies["csrftoken"]}

        def start_generations(count: int) -> list[str]:
            ids = []
            for number in range(count):
                response = client.post(
                    "/api/generations",
                    json={"image_base64": photo, "preset": preset["slug"], "prompt": f"smoke {number}"},
                    headers=csrf,
                )
                check(response.status_code == 202, f"POST /api/generations: {response.status_code} {response.text}")
                ids.append(response.json()["id"])
                time.sleep(0.15)  # spread over polling rounds, so both workers claim some
            return ids

        def final(generation_id: str) -> dict[str, Any] | None:
            body = client.get(f"/api/generations/{generation_id}").json()
            done = body["status"] in {"succeeded", "failed", "canceled"}
            return body if done and all(image["persisted"] for image in body["images"]) else None

        step("generations through both workers")
        finished: list[dict[str, Any]] = []
        for wave in range(1, 5):
            ids = start_generations(6)
            finished += [wait_for(functools.partial(final, i), timeout=60, what=f"generation {i}") for i in ids]
            by_worker = generations_by_worker(workers)
            if all(by_worker.values()):
                break
            step(f"wave {wave}: only {by_worker} so far; another wave")
        check(all(generations_by_worker(workers).values()), f"a worker did no work: {generations_by_worker(workers)}")
        for body in finished:
            check(body["status"] == "succeeded", f"generation {body['id']} ended {body['status']}: {body['error']}")
            check(body["images"], f"generation {body['id']} has no images")
            # Results are private by default: the API names our own /images/<public id> route,
            # which sends the owner on to a short-lived Cloudinary download URL (signed by the SDK).
            for image in body["images"]:
                check("/images/stefna/generated/" in image["url"], f"not a Cloudinary result: {image['url']}")
                public_id = image["url"].split("/images/", 1)[1]
                check(public_id in cloudinary.assets, f"{public_id} is not in (fake) Cloudinary")
                hop = client.get(image["url"])
                check(hop.status_code == 302, f"{image['url']} answered {hop.status_code}, not a redirect")
                delivered = httpx.get(hop.headers["Location"], timeout=10)
                check(
                    delivered.status_code == 200 and delivered.content == cloudinary.asset_bytes[public_id],
                    f"{hop.headers['Location']} did not deliver the image ({delivered.status_code})",
                )

        step("the studio in one call (/api/generate-image, token auth)")
        # A client of its own: the token alone, no session cookie (which would ask for CSRF).
        studio = httpx.post(
            f"{base}/api/generate-image",
            json={"image_base64": photo, "prompt": "a lighthouse at dusk"},
            headers={"Authorization": f"Bearer {token}"},
            timeout=60,
        )
        check(studio.status_code == 200, f"generate-image answered {studio.status_code}: {studio.text[:500]}")
        check(studio.json()["images"], "generate-image returned no images")

        step("static files, request ids, logs and metrics")
        page = client.get("/")
        check(page.status_code == 200, f"the studio page answered {page.status_code}")
        stylesheet = re.search(r'href="(/static/[^"]+\.css)"', page.text)
        check(stylesheet, "the studio page links no stylesheet")
        css = httpx.get(base + stylesheet.group(1), timeout=10)  # type: ignore[union-attr]
        check(
            css.status_code == 200 and "text/css" in css.headers.get("content-type", ""), f"static: {css.status_code}"
        )
        check("max-age" in css.headers.get("cache-control", ""), "static files are served without caching headers")
        request_lines = [line for line in web.json_lines() if line.get("logger") == "stefna.request"]
        check(request_lines, "the web processes wrote no JSON request log lines")
        check(all(line.get("request_id") for line in request_lines), "a request log line has no request id")
        # Which worker accepts a connection is the kernel's choice (a light load may all land on
        # one), so the test asks gunicorn's process table instead: WEB_PROCESSES live workers
        # under the master, and every request served by one of them.
        children = {
            int(stat.name)
            for stat in Path("/proc").iterdir()
            if stat.name.isdigit() and _parent_pid(int(stat.name)) == web.popen.pid
        }
        check(len(children) == WEB_PROCESSES, f"gunicorn runs {len(children)} worker(s), not {WEB_PROCESSES}")
        pids = {line["process"] for line in request_lines}
        check(pids <= children, f"requests were served by {sorted(pids)}, not gunicorn's workers {sorted(children)}")
        check(httpx.get(f"{base}/metrics", timeout=10).status_code == 401, "/metrics answers anonymous callers")
        scraped = httpx.get(f"{base}/metrics", headers={"Authorization": f"Bearer {metrics_token}"}, timeout=10)
        check(scraped.status_code == 200, f"/metrics with the token answered {scraped.status_code}")
        for series in ("stefna_generations_total", "stefna_http_requests_total", "stefna_generation_queue_depth"):
            check(series in scraped.text, f"/metrics lacks {series}")

        step("SIGTERM to every process with generations in flight")
        fal.latency = 4.0
        in_flight = start_generations(4)
        time.sleep(1.0)
        for process in processes:
            process.terminate()
        for process in processes:
            code = process.wait(timeout=60)
            check(code == 0, f"{process.name} exited {code} after SIGTERM:\n{process.output()}")
            check("Traceback" not in process.output(200000), f"{process.name} logged a traceback:\n{process.output()}")

        step("nothing half done")
        os.environ.update({key: env[key] for key in ("DATABASE_URL", "REDIS_URL", "SECRET_KEY", "DEBUG")})
        os.environ["DJANGO_SETTINGS_MODULE"] = "stefna.settings"
        import django

        django.setup()
        import datetime as dt

        from django.utils import timezone
        from django_tasks_db.models import DBTaskResult

        from generation.models import Attempt, Generation

        stopped_at = timezone.now()
        check(not Attempt.objects.filter(status="submitting").exists(), "an attempt was left mid-submission")
        held = Generation.objects.filter(
            status__in=Generation.ACTIVE_STATUSES, next_check_at__gt=stopped_at + dt.timedelta(seconds=10)
        )
        check(not held.exists(), f"{held.count()} generation(s) still claimed by a stopped worker")
        check(not DBTaskResult.objects.filter(status="RUNNING").exists(), "a task was left running")
        run_command(env, "check_ledger")

        step("a fresh worker finishes what was handed back")
        restarted = Process("worker-restarted", [PYTHON, "manage.py", "db_worker"], env, work)
        processes.append(restarted)
        wait_for(
            lambda: Generation.objects.filter(pk__in=in_flight, status="succeeded").count() == len(in_flight),
            timeout=60,
            what="the handed-back generations to succeed",
        )
        restarted.terminate()
        check(restarted.wait(timeout=60) == 0, f"the restarted worker exited badly:\n{restarted.output()}")
        run_command(env, "check_ledger")
        from generation.models import Media

        persisted = Media.objects.filter(persisted=True).count()
        check(persisted == len(cloudinary.assets), f"{len(cloudinary.assets)} Cloudinary assets, {persisted} images")
        submissions = len(fal.submissions())
        check(submissions == Attempt.objects.count(), f"{submissions} fal submissions for {Attempt.objects.count()}")
        from django.db import connections

        connections.close_all()
        step(f"passed in {time.monotonic() - started:.0f} s")
        return 0
    except SmokeFailure as failure:
        print(f"smoke: FAILED: {failure}", file=sys.stderr, flush=True)
        for process in processes:
            print(f"--- {process.name} (last lines) ---\n{process.output(3000)}", file=sys.stderr)
        return 1
    finally:
        signal.alarm(0)
        for process in processes:
            process.kill()
        fal.stop()
        cloudinary.stop()


if __name__ == "__main__":
    sys.exit(main())
