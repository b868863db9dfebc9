"""How long one worker takes to carry many in-flight generations through a slow fal.

    .venv/bin/python bench/inflight.py                 # 300 generations, 10 s fal latency
    .venv/bin/python bench/inflight.py --count 1000
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/bench .venv/bin/python bench/inflight.py

What it does:
1. starts the fake fal (tests/fakes/fal.py) as its own process, HTTPS, every job
   taking `--latency` seconds (IN_QUEUE, then IN_PROGRESS with logs, then COMPLETED);
2. migrates a fresh database (a temporary SQLite file unless DATABASE_URL is set; a
   PostgreSQL database is flushed of generations first) and creates users and presets;
3. starts ONE worker process (`manage.py db_worker`, i.e. tasks + poller) as `make worker`
   does (django-tasks-db's default task interval: no generation goes through a task; the
   poller submits new ones);
4. requests `--count` generations through `generation_request` (what the API calls),
   from a few threads, and waits until every one is final;
5. prints how long that took from the first request (the figure judged against the
   target, so requesting them counts too), how long after the last request (all N
   in flight), the worker's peak RSS (VmHWM from /proc) and the CPU each process used.
   On a busy machine the load average printed with it explains slow runs.

Results are stored with Django's default storage in a temporary MEDIA_ROOT (the
Cloudinary path is the same code with a remote upload instead of a stream).
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


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


def peak_rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=300)
    parser.add_argument("--latency", type=float, default=10.0)
    parser.add_argument("--threads", type=int, default=None, help="PIPELINE_THREADS for the worker")
    parser.add_argument("--budget", type=float, default=None, help="seconds allowed beyond the latency")
    parser.add_argument("--timeout", type=float, default=180.0)
    args = parser.parse_args()
    budget = args.budget if args.budget is not None else (10.0 if args.count <= 300 else 15.0)

    work = Path(tempfile.mkdtemp(prefix="stefna-bench-"))
    port = free_port()
    cert_dir = work / "certs"
    from tests.fakes.certs import make_certificates

    certs = make_certificates(cert_dir)
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "stefna.settings",
        "SECRET_KEY": "bench-only-secret-key",
        "DEBUG": "0",
        "FAL_KEY": "bench-key-id:bench-key-secret",
        # Results come from the fake on loopback: local fakes only (the result-URL rule).
        "ALLOW_PRIVATE_RESULT_URLS": "1",
        "FAL_QUEUE_RUN_HOST": f"127.0.0.1:{port}",
        "FAL_RUN_HOST": f"127.0.0.1:{port}",
        "SSL_CERT_FILE": str(certs.ca_path),
        "CLOUDINARY_URL": "",
        "FAL_WEBHOOK_BASE_URL": "",
        "MEDIA_ROOT": str(work / "media"),
        "RATE_LIMIT_GENERATIONS_PER_MINUTE": "1000000",
        # Every one of them in flight at once: what is measured is one worker carrying them,
        # not a fal account's limit of jobs at once (FAL_MAX_CONCURRENT).
        "FAL_MAX_CONCURRENT": "100000",
        "LOG_LEVEL": os.environ.get("LOG_LEVEL", "WARNING"),
        "PYTHONPATH": str(ROOT),
    }
    if args.threads:
        env["PIPELINE_THREADS"] = str(args.threads)
    if not os.environ.get("DATABASE_URL"):
        env["DATABASE_URL"] = f"sqlite:///{work / 'bench.sqlite3'}"
    os.environ.update(env)

    fake = subprocess.Popen(  # noqa: S603
        [sys.executable, "-m", "tests.fakes.fal", "--port", str(port), "--latency", str(args.latency),
         "--cert-dir", str(cert_dir), "--record-limit", "100"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
    )  # fmt: skip
    worker = None
    try:
        wait_for_port(port)
        import django

        django.setup()
        from django.core.management import call_command

        call_command("migrate", verbosity=0)
        from credits import ledger
        from generation.images import validate_image
        from generation.models import Generation
        from generation.registry import FAST_SDXL_I2I, GHIBLIFY, REALISTIC_VISION
        from generation.services import generation_request
        from presets.models import Preset
        from stefna.accounts.models import User
        from tests.images import make_jpeg

        Generation.objects.filter(user__email__endswith="@bench.invalid").update(status="canceled")
        preset, _ = Preset.objects.update_or_create(
            slug="bench-ghibli",
            defaults={
                "name": "Bench",
                "kind": "ghibli_reaction",
                "prompt": "{prompt}",
                "model_chain": [GHIBLIFY, REALISTIC_VISION, FAST_SDXL_I2I],
            },
        )
        users = []
        for n in range(max(1, args.count // 50)):
            user, _ = User.objects.get_or_create(email=f"bench{n}@bench.invalid", defaults={"display_name": "Bench"})
            ledger.ensure_daily_allowance(user=user)
            ledger.grant(user=user, amount=2 * 60, note="bench")
            users.append(user)
        image = validate_image(make_jpeg(256, 192))

        worker = subprocess.Popen(  # noqa: S603
            [sys.executable, "manage.py", "db_worker", "--no-startup-delay", "--no-reload",
             "--verbosity", "0"],
            cwd=ROOT, env=env,
        )  # fmt: skip
        time.sleep(1.0)  # let the worker import Django and connect

        def request(n: int) -> str:
            generation, _ = generation_request(
                user=users[n % len(users)], preset_slug=preset.slug, image=image, prompt=f"bench {n}"
            )
            return str(generation.pk)

        started = time.monotonic()
        with ThreadPoolExecutor(max_workers=4) as pool:
            ids = list(pool.map(request, range(args.count)))
        requested = time.monotonic() - started
        print(f"requested {len(ids)} generations in {requested:.1f} s", flush=True)

        final = ("succeeded", "failed", "canceled")
        done = 0
        next_report = 0.0
        while time.monotonic() - started < args.timeout:
            done = Generation.objects.filter(pk__in=ids, status__in=final).count()
            if done == len(ids):
                break
            if time.monotonic() - started >= next_report:
                running = Generation.objects.filter(pk__in=ids, status="running").count()
                print(f"  t={time.monotonic() - started:5.1f} s  final={done} running={running}", flush=True)
                next_report = time.monotonic() - started + 2
            time.sleep(0.2)
        finished = time.monotonic()
        elapsed = finished - started
        after_last = finished - (started + requested)
        succeeded = Generation.objects.filter(pk__in=ids, status="succeeded").count()
        rss = peak_rss_mb(worker.pid)
        worker_cpu = cpu_seconds(worker.pid)
        fake_cpu = cpu_seconds(fake.pid)
        target = args.latency + budget
        print(
            f"{done}/{len(ids)} final ({succeeded} succeeded) in {elapsed:.1f} s from the first request "
            f"(target: {target:.0f} s = latency {args.latency:g} s + {budget:g} s); "
            f"worker peak RSS {rss:.0f} MB",
            flush=True,
        )
        print(f"({after_last:.1f} s after the last of them was requested, i.e. with all {len(ids)} in flight)")
        print(
            f"CPU used: worker {worker_cpu:.1f} s, fake fal {fake_cpu:.1f} s; "
            f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs",
            flush=True,
        )
        ok = done == len(ids) and succeeded == len(ids) and elapsed <= target
        print("PASS" if ok else "FAIL", flush=True)
        sys.exit(0 if ok else 1)
    finally:
        for process in (worker, fake):
            if process is not None and process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(10)
                except subprocess.TimeoutExpired:
                    process.kill()


if __name__ == "__main__":
    main()
