"""Nothing lost under faults: the real web and worker processes against wire-level fakes.

    .venv/bin/python bench/faults.py                    # 200 generations, SQLite
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/stefna_faults .venv/bin/python bench/faults.py

What it does:
1. starts the fake fal (its own process, HTTPS), the fake Cloudinary (in this process,
   HTTPS, signatures checked, remote URLs really fetched) and a TCP relay in front of Redis
   (database 1) that it can cut, so "the cache stops" without touching the real server;
2. migrates a fresh database, creates an account and its API token, and starts the web
   process (`manage.py runserver`, no reload) and ONE worker (`manage.py db_worker`);
3. starts `--count` generations through `POST /api/generations` from a few threads while
   it injects faults: fal answers 500, then 429, then hangs (every job past the attempt
   timeout); the safety checker flags every image for a while; Cloudinary answers 500,
   then times out; the cache is cut; and the worker is SIGKILLed at random moments
   (`--kills`) and started again;
4. lifts the faults, waits until every generation is final and every image copied, and
   prints: started, succeeded, failed (and how many were refunded), blocked, lost (paid
   images not in storage: must be 0), orphaned copies (in Cloudinary with no row: must be
   0), 5xx answers, and whether `check_ledger` is clean. Exit 1 when lost, orphaned or
   the ledger is not clean.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.support import free_port, pipeline_env, wait_for_port  # noqa: E402


class Relay:
    """A TCP relay to Redis that can be cut (connections dropped, new ones refused)."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.port = free_port()
        self._listener: socket.socket | None = None
        self._sockets: set[socket.socket] = set()
        self._lock = threading.Lock()

    def up(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        for _ in range(50):  # the port may still be held for a moment after down()
            try:
                listener.bind(("127.0.0.1", self.port))
                break
            except OSError:
                time.sleep(0.1)
        listener.listen(64)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def down(self) -> None:
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        with self._lock:
            for sock in self._sockets:
                try:
                    sock.close()
                except OSError:
                    pass
            self._sockets.clear()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=2)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._sockets |= {client, upstream}
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(source, sink), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                try:
                    sock.close()
                except OSError:
                    pass


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=200)
    parser.add_argument("--kills", type=int, default=4, help="how many times the worker is SIGKILLed")
    parser.add_argument("--latency", type=float, default=2.0, help="seconds fal takes per job")
    parser.add_argument("--timeout", type=float, default=180.0, help="seconds to wait after the last request")
    parser.add_argument("--seed", type=int, default=15)
    args = parser.parse_args()
    rng = random.Random(args.seed)

    work = Path(tempfile.mkdtemp(prefix="stefna-faults-"))
    fal_port, web_port = free_port(), free_port()
    from tests.fakes.certs import make_certificates

    certs = make_certificates(work / "certs")
    os.environ["SSL_CERT_FILE"] = str(certs.ca_path)
    from tests.fakes.cloudinary import FakeCloudinary

    cloudinary = FakeCloudinary(ca_path=certs.ca_path).start()
    relay = Relay(("127.0.0.1", 6379))
    relay.up()
    # The pipeline's environment (support.pipeline_env: FAL_MAX_CONCURRENT out of the way,
    # so the faults decide what happens; a 429 still halves it), with the faults' fakes and
    # short timeouts so that each fault plays out within the run.
    env = pipeline_env(
        app_root=ROOT, work=work, fal_port=fal_port, ca_path=certs.ca_path, database_file="faults.sqlite3",
        ALLOWED_HOSTS="127.0.0.1,localhost",
        CLOUDINARY_URL=cloudinary.cloudinary_url,
        CLOUDINARY_TIMEOUT_SECONDS="2",
        FAL_ATTEMPT_TIMEOUT_SECONDS="10",
        FAL_POLL_INTERVAL_SECONDS="0.5",
        PIPELINE_LEASE_SECONDS="6",
        MEDIA_PERSIST_RETRY_SECONDS="1",
        MEDIA_PERSIST_RETRY_MAX_SECONDS="4",
        REDIS_URL=f"redis://127.0.0.1:{relay.port}/1",
    )  # fmt: skip
    os.environ.update(env)
    processes: list[subprocess.Popen[bytes]] = []

    def spawn(*command: str) -> subprocess.Popen[bytes]:
        log = (work / f"process-{len(processes)}.log").open("ab")  # the processes' own logs stay out of the figures
        process = subprocess.Popen(  # noqa: S603
            [sys.executable, *command], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        processes.append(process)
        return process

    spawn("-m", "tests.fakes.fal", "--port", str(fal_port), "--latency", str(args.latency),
                     "--cert-dir", str(work / "certs"), "--record-limit", "100")  # fmt: skip
    try:
        wait_for_port(fal_port)
        import django
        import httpx

        django.setup()
        from django.core.management import call_command

        call_command("migrate", verbosity=0)
        from credits import ledger
        from credits.models import CreditEntry
        from credits.reconcile import find_ledger_problems
        from generation.models import Generation, Media
        from generation.registry import FAST_SDXL_I2I, GHIBLIFY
        from presets.models import Preset
        from stefna.accounts.models import User
        from stefna.accounts.services import api_token_create
        from tests.images import make_jpeg

        fal = httpx.Client(base_url=f"https://127.0.0.1:{fal_port}", verify=str(certs.ca_path), timeout=10)

        def configure(**knobs: Any) -> None:
            fal.post("/_fake/configure", json=knobs).raise_for_status()

        preset, _ = Preset.objects.update_or_create(
            slug="faults-ghibli",
            defaults={"name": "Faults", "kind": "ghibli_reaction", "prompt": "{prompt}",
                      "model_chain": [GHIBLIFY, FAST_SDXL_I2I]},
        )  # fmt: skip
        user, _ = User.objects.get_or_create(email="faults@bench.invalid")
        ledger.ensure_daily_allowance(user=user)
        ledger.grant(user=user, amount=2 * args.count, note="bench")
        _, token = api_token_create(user=user, name="faults bench")

        spawn("manage.py", "runserver", f"127.0.0.1:{web_port}", "--noreload", "--skip-checks")
        workers = [spawn("manage.py", "db_worker", "--no-startup-delay", "--no-reload", "--verbosity", "0")]
        wait_for_port(web_port, timeout=30)
        web = httpx.Client(base_url=f"http://127.0.0.1:{web_port}", timeout=30,
                           headers={"Authorization": f"Bearer {token}"})  # fmt: skip
        photo = make_jpeg(256, 192)
        answers: dict[int, int] = {}
        answers_lock = threading.Lock()

        def request(n: int) -> str | None:
            time.sleep(n * 0.05)  # spread over the faults' timeline
            try:
                response = web.post("/api/generations", files={"image": ("photo.jpg", photo, "image/jpeg")},
                                    data={"preset": preset.slug, "prompt": f"faults {n}"})  # fmt: skip
                status = response.status_code
            except httpx.HTTPError:
                status = 0
                response = None
            with answers_lock:
                answers[status] = answers.get(status, 0) + 1
            return response.json()["id"] if response is not None and status in (200, 202) else None

        started_at = time.monotonic()
        kill_times = sorted(rng.uniform(2, args.count * 0.05 + 4) for _ in range(args.kills))
        faults = [
            (1.0, "fal answers 500", lambda: configure(fail_submit={"endpoint": GHIBLIFY, "status": 500, "times": 15})),
            (3.0, "fal answers 429", lambda: configure(fail_submit={"endpoint": FAST_SDXL_I2I, "status": 429, "times": 15})),
            (4.0, "safety checker flags everything", lambda: configure(flag_images={"endpoint": GHIBLIFY, "flags": [True]})),
            (5.0, "Cloudinary answers 500", lambda: cloudinary.fail_uploads(status=500, times=40)),
            (6.0, "fal hangs", lambda: configure(latency=60)),
            (6.5, "safety checker back to normal", lambda: configure(flag_images={"endpoint": GHIBLIFY, "flags": [False]})),
            (7.0, "the cache stops", relay.down),
            (8.0, "Cloudinary times out", lambda: setattr(cloudinary, "delay", 3.0)),
            (9.0, "fal answers again", lambda: configure(latency=args.latency)),
            (10.0, "the cache is back", relay.up),
            (11.0, "Cloudinary answers promptly", lambda: setattr(cloudinary, "delay", 0.0)),
        ]  # fmt: skip

        def inject() -> None:
            schedule = sorted(
                [(at, name, action) for at, name, action in faults]
                + [(at, "worker SIGKILLed", None) for at in kill_times]
            )
            for at, name, action in schedule:
                time.sleep(max(0.0, started_at + at - time.monotonic()))
                print(f"  t={time.monotonic() - started_at:5.1f} s  {name}", flush=True)
                if action is not None:
                    action()
                    continue
                os.killpg(workers[-1].pid, signal.SIGKILL)
                workers[-1].wait(10)
                time.sleep(rng.uniform(0.2, 1.5))
                workers.append(spawn("manage.py", "db_worker", "--no-startup-delay", "--no-reload",
                                     "--verbosity", "0"))  # fmt: skip

        injector = threading.Thread(target=inject)
        injector.start()
        with ThreadPoolExecutor(max_workers=4) as pool:
            ids = [gid for gid in pool.map(request, range(args.count)) if gid]
        injector.join()
        print(f"started {len(ids)} generations in {time.monotonic() - started_at:.1f} s", flush=True)

        final = ("succeeded", "failed", "canceled")
        requested_at = time.monotonic()
        while time.monotonic() - requested_at < args.timeout:
            done = Generation.objects.filter(pk__in=ids, status__in=final).count()
            pending = Media.objects.filter(generation_id__in=ids, persisted=False, hidden=False).count()
            if done == len(ids) and not pending:
                break
            time.sleep(0.5)
        elapsed = time.monotonic() - started_at

        generations = Generation.objects.filter(pk__in=ids)
        succeeded = generations.filter(status="succeeded").count()
        failed = generations.filter(status="failed")
        refunded = CreditEntry.objects.filter(generation__in=failed, reason="refund").values("generation").distinct()
        blocked = generations.filter(error_code="content_blocked").count()
        result_lost = generations.filter(error_code="result_lost").count()
        active = generations.filter(status__in=("queued", "running")).count()
        # Lost: a succeeded generation's image that is neither copied nor accounted for
        # (a `result_lost` generation was given its credits back).
        lost = (
            Media.objects.filter(generation__in=generations.filter(status="succeeded"), persisted=False)
            .exclude(generation__error_code="result_lost")
            .count()
        )
        keys = set(Media.objects.filter(persisted=True).values_list("storage_key", flat=True))
        orphaned = [key for key in cloudinary.assets if key not in keys]
        problems = find_ledger_problems()
        five_xx = sum(count for status, count in answers.items() if status >= 500 or status == 0)
        print(
            json.dumps(
                {
                    "database": os.environ["DATABASE_URL"].split(":", 1)[0],
                    "requested": args.count,
                    "started": len(ids),
                    "answers": dict(sorted(answers.items())),
                    "succeeded": succeeded,
                    "failed": failed.count(),
                    "failed_and_refunded": refunded.count(),
                    "blocked": blocked,
                    "result_lost_and_given_back": result_lost,
                    "still_active": active,
                    "lost": lost,
                    "orphaned_copies": len(orphaned),
                    "worker_kills": args.kills,
                    "5xx_or_no_answer": five_xx,
                    "check_ledger": "clean" if not problems else problems[:5],
                    "seconds": round(elapsed, 1),
                },
                indent=2,
            ),
            flush=True,
        )
        ok = not lost and not orphaned and not problems and not active and refunded.count() == failed.count()
        print(f"MET (logs in {work})" if ok else f"MISSED (logs in {work})", flush=True)
        return 0 if ok else 1
    finally:
        for process in processes:
            if process.poll() is None:
                try:
                    os.killpg(process.pid, signal.SIGTERM)
                    process.wait(10)
                except (OSError, subprocess.TimeoutExpired):
                    os.killpg(process.pid, signal.SIGKILL)
        relay.down()
        cloudinary.stop()


if __name__ == "__main__":
    sys.exit(main())
