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
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import support  # noqa: E402


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
    port = support.free_port()
    cert_dir = work / "certs"
    from tests.fakes.certs import make_certificates

    certs = make_certificates(cert_dir)
    env = support.pipeline_env(
        app_root=ROOT, work=work, fal_port=port, ca_path=certs.ca_path, database_file="bench.sqlite3"
    )
    if args.threads:
        env["PIPELINE_THREADS"] = str(args.threads)
    os.environ.update(env)

    fake = support.start_fake_fal(port=port, latency=args.latency, cert_dir=cert_dir, record_limit=100, env=env)
    worker = None
    try:
        support.wait_for_port(port)
        import django

        django.setup()
        from django.core.management import call_command

        call_command("migrate", verbosity=0)
        from generation.images import validate_image
        from generation.models import Generation
        from generation.registry import FAST_SDXL_I2I, GHIBLIFY, REALISTIC_VISION
        from generation.services import generation_request
        from tests.images import make_jpeg

        Generation.objects.filter(user__email__endswith="@bench.invalid").update(status="canceled")
        preset = support.bench_preset(
            slug="bench-ghibli", name="Bench", chain=[GHIBLIFY, REALISTIC_VISION, FAST_SDXL_I2I]
        )
        users = support.bench_users(
            prefix="bench", domain="bench.invalid", count=max(1, args.count // 50), credits=2 * 60
        )
        image = validate_image(make_jpeg(256, 192))

        worker = support.start_worker(app_root=ROOT, env=env)
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
        rss = support.peak_rss_mb(worker.pid)
        worker_cpu = support.process_cpu_seconds(worker.pid)
        fake_cpu = support.process_cpu_seconds(fake.pid)
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
        support.stop_processes(worker, fake)


if __name__ == "__main__":
    main()
