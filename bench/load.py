"""Load test: N concurrent API clients run start → follow → fetch-result flows against the real
stack (gunicorn + `manage.py db_worker` + the database in DATABASE_URL + the fake fal over
HTTPS), then `manage.py check_ledger`.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/stefna_load python bench/load.py
    python bench/load.py --clients 50 --duration 60 --latency 2
    python bench/load.py --clients 5 --flows 2 --no-migrate      # what CI runs (tests/reliability)

Each client has its own account and API token (made through the app's own services in a
`manage.py shell` before the clock starts). A flow: POST /api/generations (JSON base64,
with an Idempotency-Key) → GET /api/generations/{id} until final → GET every image URL.
Prints requests served, errors, 5xx, per-route p50/p95 latency and flow end-to-end times.
Exits 1 on any 5xx, transport error, failed flow or ledger problem.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
FINAL = {"succeeded", "failed", "canceled"}
FAL_KEY = "bench-fal-key-id:bench-fal-key-secret"  # noqa: S105 - the fake's key

SETUP_SCRIPT = """
import json, os
from presets.models import Preset
from stefna.accounts.services import api_token_create, user_get_or_create

run, clients = os.environ["LOAD_RUN"], int(os.environ["LOAD_CLIENTS"])
preset = Preset.objects.filter(is_active=True, requires_prompt=False).order_by("sort_order", "slug").first()
if preset is None:
    # A flushed test database has no seeded presets: add one for the bench.
    from generation.registry import FAST_SDXL_I2I
    preset, _ = Preset.objects.get_or_create(
        slug="load-test", defaults={"name": "Load test", "prompt": "{prompt}", "model_chain": [FAST_SDXL_I2I]}
    )
tokens = []
for n in range(clients):
    user, _ = user_get_or_create(email=f"load-{run}-{n}@bench.stefna.invalid")
    tokens.append(api_token_create(user=user, name="load bench")[1])
print(json.dumps({"preset": preset.slug, "tokens": tokens}))
"""


# --- Processes -----------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Stack:
    """The processes under test. Everything is started by us and stopped by its pid."""

    workdir: Path
    env: dict[str, str]
    base_url: str = ""
    ca_path: str = ""
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def log(self, name: str) -> Path:
        return self.workdir / f"{name}.log"

    def spawn(self, name: str, args: list[str]) -> subprocess.Popen[bytes]:
        log = self.log(name).open("wb")
        process = subprocess.Popen(  # noqa: S603 - our own commands
            args, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        self.processes[name] = process
        return process

    def stop(self, name: str, timeout: float = 10.0) -> None:
        process = self.processes.pop(name, None)
        if process is None or process.poll() is not None:
            return
        # Our own process group (start_new_session): gunicorn's workers go with it.
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(5)

    def stop_all(self) -> None:
        for name in list(self.processes):
            self.stop(name)

    def tail(self, name: str, lines: int = 30) -> str:
        path = self.log(name)
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""

    def manage(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return subprocess.run(  # noqa: S603
            [PYTHON, "manage.py", *args], cwd=ROOT, env=self.env, capture_output=True, text=True, timeout=timeout
        )


def start_fake_fal(stack: Stack, *, latency: float, webhooks: bool) -> None:
    port = free_port()
    process = stack.spawn(
        "fake-fal",
        [
            PYTHON,
            "-m",
            "tests.fakes.fal",
            "--port",
            str(port),
            "--latency",
            str(latency),
            "--cert-dir",
            str(stack.workdir / "certs"),
            *(["--deliver-webhooks"] if webhooks else []),
        ],
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        match = re.search(r"ca=(\S+)", stack.log("fake-fal").read_text(errors="replace"))
        if match:
            stack.ca_path = match.group(1)
            break
        if process.poll() is not None:
            raise RuntimeError("the fake fal exited:\n" + stack.tail("fake-fal"))
        time.sleep(0.05)
    else:
        raise RuntimeError("the fake fal did not start:\n" + stack.tail("fake-fal"))
    stack.env.update(
        {
            "FAL_KEY": FAL_KEY,
            # Results come from the fake on loopback: local fakes only (the result-URL rule).
            "ALLOW_PRIVATE_RESULT_URLS": "1",
            "FAL_QUEUE_RUN_HOST": f"127.0.0.1:{port}",
            "FAL_RUN_HOST": f"127.0.0.1:{port}",
            "SSL_CERT_FILE": stack.ca_path,
            "FAL_WEBHOOK_JWKS_URL": f"https://127.0.0.1:{port}/.well-known/jwks.json",
        }
    )


def start_web_and_worker(stack: Stack, *, port: int, web_workers: int, threads: int) -> None:
    stack.base_url = f"http://127.0.0.1:{port}"
    stack.spawn(
        "gunicorn",
        [
            PYTHON,
            "-m",
            "gunicorn",
            "stefna.wsgi:application",
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            str(web_workers),
            "--worker-class",
            "gthread",
            "--threads",
            str(threads),
            "--timeout",
            "120",
            "--backlog",
            "2048",
        ],
    )
    stack.spawn("worker", [PYTHON, "manage.py", "db_worker", "--interval", "0.1", "--no-startup-delay"])
    deadline = time.monotonic() + 90
    answers: list[str] = []
    while time.monotonic() < deadline:
        try:
            # Any non-5xx answer means Django is serving. Not a public route: those are
            # rate limited per IP, and a slow start could use up the allowance.
            status = httpx.get(f"{stack.base_url}/api/me", timeout=5).status_code
            if status < 500:
                return
            answers.append(str(status))
        except httpx.HTTPError as exc:
            answers.append(type(exc).__name__)
        for name in ("gunicorn", "worker"):
            if stack.processes[name].poll() is not None:
                raise RuntimeError(f"{name} exited:\n" + stack.tail(name))
        time.sleep(0.1)
    raise RuntimeError(f"gunicorn did not answer ({', '.join(answers[-5:])}):\n" + stack.tail("gunicorn"))


# --- Clients -------------------------------------------------------------------------------


@dataclass
class Stats:
    lock: threading.Lock = field(default_factory=threading.Lock)
    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    statuses: dict[int, int] = field(default_factory=lambda: defaultdict(int))
    transport_errors: list[str] = field(default_factory=list)
    flows_ok: int = 0
    flows_failed: list[str] = field(default_factory=list)
    flow_seconds: list[float] = field(default_factory=list)

    def record(self, route: str, status: int, seconds: float) -> None:
        with self.lock:
            self.latencies[route].append(seconds)
            self.statuses[status] += 1

    @property
    def requests(self) -> int:
        return sum(self.statuses.values())

    @property
    def server_errors(self) -> int:
        return sum(count for status, count in self.statuses.items() if status >= 500)

    @property
    def client_errors(self) -> int:
        return sum(count for status, count in self.statuses.items() if 400 <= status < 500)


def small_jpeg(seed: int) -> str:
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (256, 192), (seed * 37 % 256, seed * 91 % 256, 160))
    ImageDraw.Draw(image).ellipse((64, 48, 192, 144), fill=(240, 200, 80))
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=85)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode()


class Client:
    def __init__(self, *, number: int, token: str, stack: Stack, preset: str, stats: Stats, args: argparse.Namespace):
        self.number = number
        self.stats = stats
        self.args = args
        self.preset = preset
        self.base_url = stack.base_url
        self.http = httpx.Client(
            base_url=stack.base_url,
            headers={"Authorization": f"Bearer {token}"},
            timeout=args.request_timeout,
            verify=stack.ca_path or True,
        )
        self.image = small_jpeg(number)

    def call(self, route: str, method: str, url: str, **kwargs: object) -> httpx.Response | None:
        started = time.perf_counter()
        try:
            response = self.http.request(method, url, **kwargs)  # type: ignore[arg-type]
        except httpx.HTTPError as exc:
            with self.stats.lock:
                self.stats.transport_errors.append(f"{method} {route}: {type(exc).__name__}: {exc}")
            return None
        self.stats.record(route, response.status_code, time.perf_counter() - started)
        return response

    def flow(self, number: int) -> None:
        started = time.perf_counter()
        label = f"client {self.number} flow {number}"
        body = {"image_base64": self.image, "preset": self.preset, "prompt": f"load test {number}", "is_public": False}
        answer = self.call(
            "POST /api/generations",
            "POST",
            "/api/generations",
            json=body,
            headers={"Idempotency-Key": str(uuid.uuid4())},
        )
        if answer is None or answer.status_code != 202:
            return self.fail(label, f"start answered {answer.status_code if answer else 'nothing'}")
        generation_id = answer.json()["id"]
        deadline = time.monotonic() + self.args.flow_timeout
        generation = answer.json()
        while generation["status"] not in FINAL:
            if time.monotonic() > deadline:
                return self.fail(label, f"{generation_id} still {generation['status']} after {self.args.flow_timeout}s")
            time.sleep(self.args.poll)
            answer = self.call("GET /api/generations/{id}", "GET", f"/api/generations/{generation_id}")
            if answer is None or answer.status_code != 200:
                return self.fail(label, f"follow answered {answer.status_code if answer else 'nothing'}")
            generation = answer.json()
        if generation["status"] != "succeeded":
            return self.fail(label, f"{generation_id} ended {generation['status']}: {generation['error']}")
        if not generation["images"]:
            return self.fail(label, f"{generation_id} succeeded without images")
        for image in generation["images"]:
            url = image["url"]
            route = "GET image (ours)" if url.startswith(("/", self.base_url)) else "GET image (fal)"
            fetched = self.call(route, "GET", url)
            if fetched is None or fetched.status_code != 200 or not fetched.content:
                return self.fail(label, f"image {url} answered {fetched.status_code if fetched else 'nothing'}")
        with self.stats.lock:
            self.stats.flows_ok += 1
            self.stats.flow_seconds.append(time.perf_counter() - started)

    def fail(self, label: str, reason: str) -> None:
        with self.stats.lock:
            self.stats.flows_failed.append(f"{label}: {reason}")

    def run(self, stop_at: float | None) -> None:
        number = 0
        try:
            while True:
                if self.args.flows is not None and number >= self.args.flows:
                    break
                if stop_at is not None and time.monotonic() >= stop_at:
                    break
                self.flow(number)
                number += 1
        except Exception as exc:  # a bench thread must report, never die silently
            self.fail(f"client {self.number}", f"crashed: {exc!r}")
        finally:
            self.http.close()


# --- Report --------------------------------------------------------------------------------


def percentile(values: list[float], fraction: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))]


def report(stats: Stats, *, seconds: float, ledger: subprocess.CompletedProcess[str], args: argparse.Namespace) -> bool:
    mode = "webhooks + poller" if args.webhooks else "poller"
    print(f"\nStefna load test: {args.clients} clients, {seconds:.1f} s, fake fal latency {args.latency:g} s ({mode})")
    print(f"  requests served    {stats.requests}  ({stats.requests / seconds:.1f}/s)")
    print(f"  5xx                {stats.server_errors}")
    print(f"  4xx                {stats.client_errors}")
    print(f"  transport errors   {len(stats.transport_errors)}")
    print(f"  flows ok / failed  {stats.flows_ok} / {len(stats.flows_failed)}")
    if stats.flow_seconds:
        print(
            f"  flow end-to-end    p50 {percentile(stats.flow_seconds, 0.5):.2f} s  "
            f"p95 {percentile(stats.flow_seconds, 0.95):.2f} s  max {max(stats.flow_seconds):.2f} s"
        )
    print(f"\n  {'route':<30} {'count':>7} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8}")
    for route, values in sorted(stats.latencies.items()):
        print(
            f"  {route:<30} {len(values):>7} {percentile(values, 0.5) * 1000:>8.1f} "
            f"{percentile(values, 0.95) * 1000:>8.1f} {max(values) * 1000:>8.1f}"
        )
    all_latencies = [value for values in stats.latencies.values() for value in values]
    if all_latencies:
        print(
            f"  {'all requests':<30} {len(all_latencies):>7} {percentile(all_latencies, 0.5) * 1000:>8.1f} "
            f"{percentile(all_latencies, 0.95) * 1000:>8.1f} {max(all_latencies) * 1000:>8.1f}"
        )
    statuses = ", ".join(f"{status}: {count}" for status, count in sorted(stats.statuses.items()))
    print(f"\n  statuses           {statuses}")
    ledger_clean = ledger.returncode == 0
    print(f"  check_ledger       {'clean' if ledger_clean else 'PROBLEMS'}: {(ledger.stdout + ledger.stderr).strip()}")
    for problem in (stats.transport_errors + stats.flows_failed)[:20]:
        print(f"  ! {problem}")
    ok = stats.server_errors == 0 and not stats.transport_errors and not stats.flows_failed and ledger_clean
    ok = ok and stats.flows_ok > 0
    print(f"\nRESULT {'OK' if ok else 'FAILED'}")
    return ok


# --- Main ----------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=50, help="concurrent API clients (default 50)")
    amount = parser.add_mutually_exclusive_group()
    amount.add_argument("--flows", type=int, default=None, help="flows per client (default: 3 unless --duration)")
    amount.add_argument("--duration", type=float, default=None, help="run flows for this many seconds instead")
    parser.add_argument("--latency", type=float, default=1.0, help="fake fal seconds per job (default 1)")
    parser.add_argument("--poll", type=float, default=0.25, help="seconds between status reads (default 0.25)")
    parser.add_argument("--flow-timeout", type=float, default=120.0)
    parser.add_argument("--request-timeout", type=float, default=30.0)
    parser.add_argument("--web-workers", type=int, default=4, help="gunicorn processes (default 4)")
    parser.add_argument("--threads", type=int, default=8, help="threads per gunicorn process (default 8)")
    parser.add_argument(
        "--webhooks", action="store_true", help="fal delivers signed webhooks too (FAL_WEBHOOK_BASE_URL set)"
    )
    parser.add_argument("--no-migrate", action="store_true", help="the database is already migrated")
    parser.add_argument("--database-url", default=os.environ.get("DATABASE_URL", ""))
    args = parser.parse_args(argv)
    if args.flows is None and args.duration is None:
        args.flows = 3
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="stefna-load-"))
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("FAL_", "CLOUDINARY_", "AWS_", "PYTEST", "DJANGO_SETTINGS"))
    }
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "stefna.settings",
            "DEBUG": "0",
            "SECRET_KEY": "bench-only-secret-key-" + uuid.uuid4().hex,
            "ALLOWED_HOSTS": "127.0.0.1,localhost",
            "DATABASE_URL": args.database_url or f"sqlite:///{workdir / 'load.sqlite3'}",
            "MEDIA_ROOT": str(workdir / "media"),
            "SERVE_MEDIA": "1",
            "CLOUDINARY_URL": "",
            "FAL_WEBHOOK_BASE_URL": "",
            "REDIS_URL": "",
            "FAL_POLL_INTERVAL_SECONDS": "0.2",
            # Enough credits and starts per minute for every flow: the bench measures the
            # pipeline, not the limits (their own tests cover those).
            "DAILY_CREDITS": "1000000",
            "RATE_LIMIT_GENERATIONS_PER_MINUTE": "1000000",
            "FAL_MAX_CONCURRENT": "100000",
            "OFFLINE_PROVIDER_DIR": str(workdir / "offline"),
            "LOG_LEVEL": "WARNING",
        }
    )
    stack = Stack(workdir=workdir, env=env)
    print(f"database {re.sub(r'//[^@/]*@', '//***@', env['DATABASE_URL'])}; logs in {workdir}")
    try:
        if not args.no_migrate:
            migrated = stack.manage("migrate", "--noinput")
            if migrated.returncode:
                print(migrated.stdout + migrated.stderr)
                return 2
        web_port = free_port()
        if args.webhooks:
            stack.env["FAL_WEBHOOK_BASE_URL"] = f"http://127.0.0.1:{web_port}"
        start_fake_fal(stack, latency=args.latency, webhooks=args.webhooks)
        stack.env.update({"LOAD_RUN": uuid.uuid4().hex[:8], "LOAD_CLIENTS": str(args.clients)})
        setup = stack.manage("shell", "-c", SETUP_SCRIPT)
        if setup.returncode:
            print(setup.stdout + setup.stderr)
            return 2
        prepared = json.loads(setup.stdout.strip().splitlines()[-1])
        start_web_and_worker(stack, port=web_port, web_workers=args.web_workers, threads=args.threads)

        stats = Stats()
        started = time.monotonic()
        stop_at = started + args.duration if args.duration else None
        clients = [
            Client(number=n, token=token, stack=stack, preset=prepared["preset"], stats=stats, args=args)
            for n, token in enumerate(prepared["tokens"])
        ]
        threads = [threading.Thread(target=client.run, args=(stop_at,), daemon=True) for client in clients]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        seconds = time.monotonic() - started

        stack.stop("gunicorn")
        stack.stop("worker")
        ledger = stack.manage("check_ledger")
        ok = report(stats, seconds=seconds, ledger=ledger, args=args)
        if not ok:
            for name in ("gunicorn", "worker"):
                print(f"\n--- last lines of {name}.log ---\n{stack.tail(name)}")
        return 0 if ok else 1
    finally:
        stack.stop_all()


if __name__ == "__main__":
    sys.exit(main())
