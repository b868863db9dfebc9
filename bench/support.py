"""Shared pieces of the benches: a throwaway PostgreSQL database, a gunicorn server, a
concurrent HTTP client and percentiles. Nothing here is imported by the app."""

from __future__ import annotations

import os
import resource
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
# The server the benches use; each bench creates and drops its own database on it.
POSTGRES_URL = os.environ.get("BENCH_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432").rstrip("/")


def database_url(name: str) -> str:
    return f"{POSTGRES_URL}/{name}"


def _admin_connection():  # type: ignore[no-untyped-def]
    import psycopg

    return psycopg.connect(database_url("postgres"), autocommit=True)


def create_database(name: str) -> str:
    """A fresh, empty database `name` (dropped first if a previous run left it)."""
    with _admin_connection() as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        connection.execute(f'CREATE DATABASE "{name}"')
    return database_url(name)


def drop_database(name: str) -> None:
    with _admin_connection() as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"nothing listens on port {port}")


# --- A worker against the fake fal (inflight.py, pacing.py; faults.py its environment) ------


def pipeline_env(
    *, app_root: Path, work: Path, fal_port: int, ca_path: Path, database_file: str, **overrides: str
) -> dict[str, str]:
    """The environment of a worker and of the bench's own Django, against the fake fal on
    `fal_port`: DEBUG off, the fake's key and CA, no Cloudinary or webhooks, limits out of
    the way. `app_root` is the code measured; a temporary SQLite file (`database_file` in
    `work`) unless DATABASE_URL is set."""
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "stefna.settings",
        "SECRET_KEY": "bench-only-secret-key",
        "DEBUG": "0",
        "FAL_KEY": "bench-key-id:bench-key-secret",
        # Results come from the fake on loopback: local fakes only (the result-URL rule).
        "ALLOW_PRIVATE_RESULT_URLS": "1",
        "FAL_QUEUE_RUN_HOST": f"127.0.0.1:{fal_port}",
        "FAL_RUN_HOST": f"127.0.0.1:{fal_port}",
        "SSL_CERT_FILE": str(ca_path),
        "CLOUDINARY_URL": "",
        "FAL_WEBHOOK_BASE_URL": "",
        "MEDIA_ROOT": str(work / "media"),
        "RATE_LIMIT_GENERATIONS_PER_MINUTE": "1000000",
        # What is measured is the worker, not a fal account's limit of jobs at once.
        "FAL_MAX_CONCURRENT": "100000",
        "LOG_LEVEL": os.environ.get("LOG_LEVEL", "WARNING"),
        "PYTHONPATH": str(app_root),
    }
    if not os.environ.get("DATABASE_URL"):
        env["DATABASE_URL"] = f"sqlite:///{work / database_file}"
    env.update(overrides)
    return env


def start_fake_fal(
    *, port: int, latency: float, cert_dir: Path, record_limit: int, env: dict[str, str]
) -> subprocess.Popen[bytes]:
    """tests/fakes/fal.py in its own process (this checkout's), HTTPS on `port`."""
    return subprocess.Popen(  # noqa: S603
        [PYTHON, "-m", "tests.fakes.fal", "--port", str(port), "--latency", str(latency),
         "--cert-dir", str(cert_dir), "--record-limit", str(record_limit)],
        cwd=ROOT, env={**env, "PYTHONPATH": str(ROOT)}, stdout=subprocess.DEVNULL,
    )  # fmt: skip


def start_worker(*, app_root: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    """One `manage.py db_worker` (tasks + poller) of the code measured, as `make worker` runs it."""
    return subprocess.Popen(  # noqa: S603
        [PYTHON, "manage.py", "db_worker", "--no-startup-delay", "--no-reload", "--verbosity", "0"],
        cwd=app_root, env=env,
    )  # fmt: skip


def stop_processes(*processes: subprocess.Popen[bytes] | None) -> None:
    """SIGTERM each one still running, then kill what has not stopped within 10 s."""
    for process in processes:
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()


def bench_preset(*, slug: str, name: str, chain: list[str]):  # type: ignore[no-untyped-def]
    """A Ghibli-reaction style with this model chain (after django.setup())."""
    from presets.models import Preset

    preset, _ = Preset.objects.update_or_create(
        slug=slug, defaults={"name": name, "kind": "ghibli_reaction", "prompt": "{prompt}", "model_chain": chain}
    )
    return preset


def bench_users(*, prefix: str, domain: str, count: int, credits: int) -> list:  # type: ignore[type-arg]
    """`count` users `<prefix><n>@<domain>`, each granted `credits` (after django.setup())."""
    from credits import ledger
    from stefna.accounts.models import User

    users = []
    for n in range(count):
        user, _ = User.objects.get_or_create(email=f"{prefix}{n}@{domain}", defaults={"display_name": prefix.title()})
        ledger.ensure_daily_allowance(user=user)
        ledger.grant(user=user, amount=credits, note="bench")
        users.append(user)
    return users


def bench_env(**overrides: str) -> dict[str, str]:
    """The environment of a production-like process: DEBUG off, a secret, no real keys."""
    env = {
        **os.environ,
        "DEBUG": "0",
        "SECRET_KEY": "bench-only-secret-key-not-for-production",
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "FAL_KEY": "",
        "CLOUDINARY_URL": "",
        "FAL_WEBHOOK_BASE_URL": "",
        "REDIS_URL": "",
        # Benches measure our own overhead, not a fal account's limit of jobs at once.
        "FAL_MAX_CONCURRENT": "100000",
        "AWS_STORAGE_BUCKET_NAME": "",
        "LOG_LEVEL": "WARNING",
        "PYTHONPATH": str(ROOT),
    }
    env.update(overrides)
    return env


@dataclass
class Server:
    base: str
    pid: int


def process_cpu_seconds(pid: int) -> float:
    """user + system CPU seconds of one process (0 if it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def peak_rss_mb(pid: int) -> float:
    """A process's peak resident memory (VmHWM) in MB; nan once it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def child_pids(parent: int) -> list[int]:
    children = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except (FileNotFoundError, ProcessLookupError, IndexError):
                continue
            if int(fields[1]) == parent:
                children.append(int(entry.name))
    return children


def database_backend_pids(name: str) -> list[int]:
    with _admin_connection() as connection:
        rows = connection.execute("SELECT pid FROM pg_stat_activity WHERE datname = %s", [name]).fetchall()
    return [row[0] for row in rows]


def cpu_probe(server_pid: int, database: str) -> Callable[[], dict[int, float]]:
    """A function returning cumulative CPU seconds of (the app's worker processes, the
    database's backends). Load-independent: what a request costs, not how long it waited."""

    def snapshot() -> dict[int, float]:
        pids = [*child_pids(server_pid), *database_backend_pids(database)]
        return {pid: process_cpu_seconds(pid) for pid in pids}

    return snapshot


def cpu_spent(before: dict[int, float], after: dict[int, float], pids: set[int]) -> float:
    """CPU seconds `pids` used between two snapshots. A process that appeared in between
    counts from zero; one that vanished is lost (an understatement, never negative)."""
    return sum(max(0.0, after[pid] - before.get(pid, 0.0)) for pid in pids if pid in after)


@contextmanager
def gunicorn(env: dict[str, str], *, workers: int, log: Path) -> Iterator[Server]:
    """Serve stefna.wsgi with `workers` sync workers."""
    port = free_port()
    command = [
        PYTHON,
        "-m",
        "gunicorn",
        "stefna.wsgi",
        "--workers",
        str(workers),
        "--bind",
        f"127.0.0.1:{port}",
        "--worker-class",
        "sync",
        "--backlog",
        "256",
        "--log-level",
        "warning",
    ]
    with log.open("wb") as output:
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=output, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        last = "no answer"
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"gunicorn exited ({process.returncode}); see {log}:\n{log.read_text()[-2000:]}")
            try:
                response = httpx.get(f"{base}/api/feed", params={"limit": 1}, timeout=2)
                if response.status_code == 200:
                    break
                last = f"HTTP {response.status_code}: {response.text[:300]}"
            except httpx.HTTPError as exc:
                last = repr(exc)
            if time.monotonic() > deadline:
                raise RuntimeError(f"gunicorn did not answer 200 within 30 s ({last}):\n{log.read_text()[-2000:]}")
            time.sleep(0.2)
        yield Server(base=base, pid=process.pid)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def priority_boost() -> int:
    """How much to raise the bench's own priority (BENCH_NICE, default 10; 0 = off)."""
    return int(os.environ.get("BENCH_NICE", "10") or 0)


def raise_priority(pids: list[int] | None = None) -> int:
    """Renice this process (and so every child started after it) or `pids` by
    -priority_boost(). On a shared machine other people's work then waits for ours,
    so figures show what our code costs rather than how busy the machine was.
    Returns the niceness applied (0 when off or not permitted)."""
    boost = priority_boost()
    if boost <= 0:
        return 0
    applied = 0
    for pid in pids or [0]:
        try:
            os.setpriority(os.PRIO_PROCESS, pid, -boost)
            applied = -boost
        except (PermissionError, ProcessLookupError):
            continue
    return applied


def percentile(values: list[float], fraction: float) -> float:
    """Nearest-rank percentile (no interpolation: a reported p99 is a real request)."""
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, int(round(fraction * len(ordered) + 0.5)) - 1))
    return ordered[rank]


@dataclass
class Result:
    name: str
    concurrency: int
    latencies_ms: list[float] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    client_cpu_seconds: float = 0.0
    app_cpu_seconds: float = 0.0
    db_cpu_seconds: float = 0.0
    load_average: float = 0.0

    @property
    def count(self) -> int:
        return len(self.latencies_ms)

    @property
    def rps(self) -> float:
        return self.count / self.seconds if self.seconds else 0.0

    def p(self, fraction: float) -> float:
        return percentile(self.latencies_ms, fraction) if self.latencies_ms else float("nan")

    def per_request_ms(self, cpu_seconds: float) -> float:
        # Warm-up requests burn CPU too; they are few, and counting them only overstates.
        return 1000 * cpu_seconds / self.count if self.count else float("nan")

    @property
    def mean(self) -> float:
        return statistics.fmean(self.latencies_ms) if self.latencies_ms else float("nan")


# One request: takes the thread's client and a per-thread counter, returns the response.
Request = Callable[[httpx.Client, int], httpx.Response]


def run_load(
    name: str,
    request: Request,
    *,
    concurrency: int,
    seconds: float,
    warmup_seconds: float = 0.5,
    expect: tuple[int, ...] = (200,),
    probe: Callable[[], dict[int, float]] | None = None,
    app_pids: Callable[[], set[int]] | None = None,
    min_requests: int = 20,
) -> Result:
    """`concurrency` threads, each with its own keep-alive client, sending `request` back
    to back for `seconds` (after a warm-up whose requests are not counted), and on
    until at least `min_requests` were measured, so a slow route still gets a sample.
    `probe` snapshots server CPU; `app_pids` tells the app's processes from the database's."""
    result = Result(name=name, concurrency=concurrency)
    lock = threading.Lock()
    start_barrier = threading.Barrier(concurrency + 1)
    state = {"measure_from": 0.0, "stop_at": 0.0, "measured": 0}

    def worker(thread_number: int) -> None:
        latencies: list[float] = []
        errors: dict[str, int] = {}
        with httpx.Client(timeout=30) as client:
            start_barrier.wait()
            counter = thread_number * 1_000_000
            while True:
                counter += 1
                began = time.perf_counter()
                if began >= state["stop_at"] and state["measured"] >= min_requests:
                    break
                try:
                    response = request(client, counter)
                    outcome = None if response.status_code in expect else f"HTTP {response.status_code}"
                except httpx.HTTPError as exc:
                    outcome = type(exc).__name__
                elapsed_ms = (time.perf_counter() - began) * 1000
                if began < state["measure_from"]:
                    continue
                state["measured"] += 1  # approximate across threads; only a floor
                if outcome:
                    errors[outcome] = errors.get(outcome, 0) + 1
                else:
                    latencies.append(elapsed_ms)
        with lock:
            result.latencies_ms.extend(latencies)
            for key, value in errors.items():
                result.errors[key] = result.errors.get(key, 0) + value

    threads = [threading.Thread(target=worker, args=(number,), daemon=True) for number in range(concurrency)]
    for thread in threads:
        thread.start()
    result.load_average = os.getloadavg()[0]
    cpu_before = resource.getrusage(resource.RUSAGE_SELF)
    server_before = probe() if probe else {}
    now = time.perf_counter()
    state["measure_from"] = now + warmup_seconds
    state["stop_at"] = now + warmup_seconds + seconds
    start_barrier.wait()
    for thread in threads:
        thread.join()
    cpu_after = resource.getrusage(resource.RUSAGE_SELF)
    ended = time.perf_counter()
    server_after = probe() if probe else {}
    app = app_pids() if app_pids else set()
    result.app_cpu_seconds = cpu_spent(server_before, server_after, app)
    result.db_cpu_seconds = cpu_spent(server_before, server_after, set(server_after) - app)
    result.seconds = max(seconds, ended - state["measure_from"])
    result.client_cpu_seconds = (cpu_after.ru_utime + cpu_after.ru_stime) - (cpu_before.ru_utime + cpu_before.ru_stime)
    return result


def print_table(rows: Sequence[Sequence[object]], headers: list[str]) -> None:
    widths = [max(len(str(cell)) for cell in column) for column in zip(headers, *rows, strict=True)]
    line = "  ".join(f"{header:<{width}}" for header, width in zip(headers, widths, strict=True))
    print(line)
    print("  ".join("-" * width for width in widths))
    for row in rows:
        print("  ".join(f"{cell!s:<{width}}" for cell, width in zip(row, widths, strict=True)))
    sys.stdout.flush()
