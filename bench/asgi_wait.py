#!/usr/bin/env python
"""Does a waiting `/api/generate-image` call hold a server worker? (issue 16, point 4)

Serves Stefna the way production does (`gunicorn -c gunicorn.conf.py`: ASGI through
uvicorn-worker, WEB_CONCURRENCY processes) with one `manage.py db_worker`, against the
fake fal over HTTPS taking --fal-seconds per job. Fires --calls concurrent
generate-image calls (which wait for their results) while one client probes `/healthz`
back to back, and prints the probe's latencies: p95 must stay under --target-ms.

With --wsgi the same run uses sync gunicorn workers (`stefna.wsgi`), for contrast: there
each waiting call holds a worker, so /healthz queues behind them.

    .venv/bin/python bench/asgi_wait.py [--calls 20] [--fal-seconds 10] [--wsgi]
"""

from __future__ import annotations

import argparse
import base64
import io
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx

from bench import support

DB_NAME = "stefna_bench_asgi_wait"


def photo() -> str:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (160, 120), (40, 90, 160)).save(buffer, "JPEG")
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode()


def manage(env: dict[str, str], *args: str) -> str:
    result = subprocess.run(
        [support.PYTHON, "manage.py", *args], cwd=support.ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    if result.returncode != 0:
        raise RuntimeError(f"manage.py {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return result.stdout


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=20)
    parser.add_argument("--fal-seconds", type=float, default=10.0)
    parser.add_argument("--web-processes", type=int, default=2)
    parser.add_argument("--target-ms", type=float, default=100.0)
    parser.add_argument("--wsgi", action="store_true", help="sync gunicorn workers instead, for contrast")
    args = parser.parse_args()

    from tests.fakes.fal import FakeFal

    # Ahead of other work on a shared machine (BENCH_NICE; children inherit it), as bench/api.py does.
    niceness = support.raise_priority()
    work = Path(tempfile.mkdtemp(prefix="stefna-bench-asgi-"))
    fal = FakeFal(cert_dir=work / "certs").start()
    fal.latency = args.fal_seconds
    url = support.create_database(DB_NAME)
    port = support.free_port()
    base = f"http://127.0.0.1:{port}"
    env = support.bench_env(
        DATABASE_URL=url,
        DB_CONN_MAX_AGE="0",
        FAL_KEY="bench-key-id:bench-key-secret",
        FAL_QUEUE_RUN_HOST=f"127.0.0.1:{fal.port}",
        FAL_RUN_HOST=f"127.0.0.1:{fal.port}",
        SSL_CERT_FILE=str(fal.certs.ca_path),
        ALLOW_PRIVATE_RESULT_URLS="1",
        MEDIA_ROOT=str(work / "media"),
        MEDIA_ROOT_SHARED="1",
        WEB_CONCURRENCY=str(args.web_processes),
        GUNICORN_BIND=f"127.0.0.1:{port}",
        GENERATE_IMAGE_WAIT_SECONDS=str(args.fal_seconds + 30),
        RATE_LIMIT_GENERATIONS_PER_MINUTE="1000",
        FAL_POLL_INTERVAL_SECONDS="0.5",
    )
    processes: list[subprocess.Popen[bytes]] = []
    try:
        manage(env, "migrate", "--no-input")
        tokens = []
        for number in range(4):
            email = f"bench-wait-{number}@example.com"
            tokens.append(manage(env, "create_api_token", email).strip().splitlines()[-1])
            manage(env, "grant_credits", email, str(2 * args.calls))
        if args.wsgi:
            server = [support.PYTHON, "-m", "gunicorn", "stefna.wsgi", "--worker-class", "sync", "--workers", str(args.web_processes),
                      "--bind", f"127.0.0.1:{port}", "--timeout", "120", "--log-level", "warning"]  # fmt: skip
        else:
            server = [support.PYTHON, "-m", "gunicorn", "-c", "gunicorn.conf.py"]
        log = (work / "server.log").open("wb")
        processes.append(subprocess.Popen(server, cwd=support.ROOT, env=env, stdout=log, stderr=subprocess.STDOUT))
        worker = [support.PYTHON, "manage.py", "db_worker", "--no-startup-delay"]
        processes.append(subprocess.Popen(worker, cwd=support.ROOT, env=env, stdout=log, stderr=subprocess.STDOUT))

        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"the server never answered /healthz 200:\n{(work / 'server.log').read_text()[-3000:]}"
                )
            time.sleep(0.2)

        image = photo()
        outcomes: dict[str, int] = {}
        call_seconds: list[float] = []
        lock = threading.Lock()
        started = threading.Barrier(args.calls + 1)

        def call(number: int) -> None:
            started.wait()
            began = time.perf_counter()
            try:
                response = httpx.post(
                    f"{base}/api/generate-image",
                    json={"image_base64": image, "prompt": f"a harbour {number}"},
                    headers={"Authorization": f"Bearer {tokens[number % len(tokens)]}"},
                    timeout=args.fal_seconds + 60,
                )
                outcome = f"HTTP {response.status_code}"
            except httpx.HTTPError as exc:
                outcome = type(exc).__name__
            with lock:
                outcomes[outcome] = outcomes.get(outcome, 0) + 1
                call_seconds.append(time.perf_counter() - began)

        callers = [threading.Thread(target=call, args=(n,), daemon=True) for n in range(args.calls)]
        for thread in callers:
            thread.start()
        started.wait()
        # Probe from the moment every call is waiting on fal until the last one has its answer.
        arrived = time.monotonic() + 60
        while len(fal.submissions()) < args.calls and time.monotonic() < arrived:
            time.sleep(0.05)
        probes: list[float] = []
        failures = 0
        with httpx.Client(timeout=30) as probe:
            while any(thread.is_alive() for thread in callers):
                began = time.perf_counter()
                try:
                    ok = probe.get(f"{base}/healthz").status_code == 200
                except httpx.HTTPError:
                    ok = False
                elapsed = (time.perf_counter() - began) * 1000
                if ok:
                    probes.append(elapsed)
                else:
                    failures += 1
                time.sleep(0.05)
        for thread in callers:
            thread.join()

        mode = "sync WSGI (stefna.wsgi)" if args.wsgi else "ASGI (gunicorn.conf.py, uvicorn_worker)"
        print(f"{args.calls} concurrent /api/generate-image calls, fal taking {args.fal_seconds:.0f} s, {mode}, "
              f"{args.web_processes} web processes, niceness {niceness}, load average {os.getloadavg()[0]:.1f}")  # fmt: skip
        print(f"  calls: {dict(sorted(outcomes.items()))}, {min(call_seconds):.1f}-{max(call_seconds):.1f} s each")
        if not probes:
            print("  /healthz: no successful probe (FAIL)")
            return 1
        p95 = support.percentile(probes, 0.95)
        verdict = "MET" if p95 < args.target_ms and not failures else "MISSED"
        print(
            f"  /healthz while they waited: {len(probes)} probes, {failures} failed, "
            f"p50 {support.percentile(probes, 0.5):.1f} ms, p95 {p95:.1f} ms, max {max(probes):.1f} ms"
        )
        print(f"healthz p95 {p95:.1f} ms (target < {args.target_ms:.0f} ms): {verdict}")
        return 0 if verdict == "MET" and outcomes.get("HTTP 200") == args.calls else 1
    finally:
        for process in processes:
            process.send_signal(signal.SIGTERM)
        for process in processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
        fal.stop()
        support.drop_database(DB_NAME)
        shutil.rmtree(work, ignore_errors=True)
        os.environ.pop("DATABASE_URL", None)


if __name__ == "__main__":
    sys.exit(main())
