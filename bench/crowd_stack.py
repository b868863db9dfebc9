"""The processes of the crowd bench (bench/crowd.py) and how their costs are read.

- the stack: the web under the production ASGI command and `manage.py db_worker`,
  each in its own process group, restarted when FAL_MAX_CONCURRENT changes;
- three helper processes, this file run as a script: the fake fal (`--serve-fake-fal`,
  tests/fakes/fal.py plus the submission and completion time of every job), a /healthz
  probe (`--probe-healthz`) and a sampler of the bench database's backends' CPU
  (`--sample-postgres`). Each runs apart from the crowd, whose event loop would
  otherwise add its own lag to what they measure, or take a GIL from them.

Not a bench itself (bench/run_all.py skips it).
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx

from bench import support

DB_NAME = "stefna_bench_crowd"
PROBE_INTERVAL = 0.05
SAMPLE_INTERVAL = 0.02


# --- Helper processes (this file run with --serve-fake-fal, --probe-healthz or --sample-postgres) ---


def serve_fake_fal(latency: float, cert_dir: Path, *, webhooks: bool = False) -> None:
    """The fake fal, in its own process so it never competes with the crowd for a GIL.
    Adds GET /_fake/jobs: request id → [submitted, completed, webhook sent or null]
    (time.monotonic, which is CLOCK_MONOTONIC and so comparable across processes). With
    `webhooks` it POSTs each finished job's signed webhook to the URL the submission gave."""
    from tests.fakes.fal import FakeFal, Job

    class CrowdFal(FakeFal):
        def __init__(self, **options: Any) -> None:
            super().__init__(**options)
            self.posted: dict[str, float] = {}

        def handle(self, method: str, raw_path: str, headers: dict[str, str], body: bytes) -> tuple[int, Any, str]:
            if raw_path.startswith("/_fake/jobs"):
                with self._lock:
                    jobs = {
                        key: [job.submitted_at, job.submitted_at + job.latency, self.posted.get(key)]
                        for key, job in self.jobs.items()
                    }
                return 200, jobs, "application/json"
            return super().handle(method, raw_path, headers, body)

        def _post_webhooks(self, job: Job) -> None:
            with self._lock:
                self.posted[job.request_id] = time.monotonic()  # the callback leaves fal now
            super()._post_webhooks(job)

    fake = CrowdFal(cert_dir=cert_dir, record_limit=500)
    fake.latency = latency
    fake.deliver_webhooks = webhooks
    fake.start()
    print(f"port={fake.port} ca={fake.certs.ca_path}", flush=True)
    while True:  # until SIGTERM
        time.sleep(3600)


def probe_healthz(url: str, out: Path) -> None:
    """GET `url` back to back (a pause of PROBE_INTERVAL between), one line per probe:
    monotonic start, milliseconds, 1 if 200. In its own process: the crowd's event loop
    would otherwise add its own lag to every figure."""
    with httpx.Client(timeout=10) as client, out.open("w") as lines:
        while True:
            began = time.monotonic()
            try:
                ok = client.get(url).status_code == 200
            except httpx.HTTPError:
                ok = False
            lines.write(f"{began:.4f} {(time.monotonic() - began) * 1000:.2f} {int(ok)}\n")
            lines.flush()
            time.sleep(PROBE_INTERVAL)


_BACKEND_TITLE = re.compile(r"^postgres: (?:\S+: )?\S+ (\S+) \S+\(\d+\)|^postgres: (?:\S+: )?\S+ (\S+) \[local\]")


def sample_postgres(database: str, postmaster: int, out: Path) -> None:
    """Every SAMPLE_INTERVAL, the CPU seconds used so far by `database`'s backends (found
    among the postmaster's children by their process title), and the postmaster's
    reaped-children CPU (every database's closed backends). A line every quarter second."""
    ticks = os.sysconf("SC_CLK_TCK")
    verdicts: dict[tuple[int, str], bool] = {}
    tries: Counter[tuple[int, str]] = Counter()
    baseline: dict[tuple[int, str], float] = {}
    latest: dict[tuple[int, str], float] = {}
    first = True
    written = 0.0
    niceness = os.getpriority(os.PRIO_PROCESS, 0)
    with out.open("w") as lines:
        while True:
            try:
                children = Path(f"/proc/{postmaster}/task/{postmaster}/children").read_text().split()
                fields = Path(f"/proc/{postmaster}/stat").read_text().rsplit(")", 1)[1].split()
                reaped = (int(fields[13]) + int(fields[14])) / ticks
            except OSError:
                return
            for pid in children:
                try:
                    stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                except OSError:
                    continue
                key = (int(pid), stat[19])  # pid and start time: pids are reused
                if key not in verdicts:
                    try:
                        title = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
                    except OSError:
                        continue
                    match = _BACKEND_TITLE.match(title)
                    tries[key] += 1
                    if match:
                        verdicts[key] = (match.group(1) or match.group(2)) == database
                        if verdicts[key] and niceness < 0:
                            # As bench/api.py does: this database's backends run at the bench's
                            # priority, ahead of other work on a shared machine (BENCH_NICE).
                            try:
                                os.setpriority(os.PRIO_PROCESS, int(pid), niceness)
                            except OSError:
                                pass
                    elif tries[key] > 20:  # a background process, not a client backend
                        verdicts[key] = False
                    else:
                        continue  # still starting up: its title names no database yet
                if verdicts[key]:
                    cpu = (int(stat[11]) + int(stat[12])) / ticks
                    if key not in baseline:
                        baseline[key] = cpu if first else 0.0
                    latest[key] = cpu
            first = False
            now = time.monotonic()
            if now - written >= 0.25:
                ours = sum(latest[key] - baseline[key] for key in latest)
                lines.write(f"{now:.4f} {ours:.3f} {reaped:.3f}\n")
                lines.flush()
                written = now
            time.sleep(SAMPLE_INTERVAL)


# The last line of a traceback: "psycopg.OperationalError: connection failed: …".
_EXCEPTION_LINE = re.compile(r"^([A-Za-z_][\w.]*(?:Error|Exception|Timeout)): ?(.*)$", re.MULTILINE)


# --- The stack ---------------------------------------------------------------------------------


@dataclass
class Stack:
    workdir: Path
    env: dict[str, str]
    base: str
    web_processes: int
    workers: int
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def spawn(self, name: str, command: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        output = (self.workdir / f"{name}.log").open("ab")
        process = subprocess.Popen(  # noqa: S603 - our own commands
            command,
            cwd=support.ROOT,
            env=env or self.env,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        output.close()
        self.processes[name] = process
        return process

    def stop(self, name: str) -> None:
        process = self.processes.pop(name, None)
        if process is None or process.poll() is not None:
            return
        # Its own process group (start_new_session): gunicorn's workers go with it.
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(5)

    def stop_app(self) -> None:
        for name in [name for name in self.processes if name == "web" or name.startswith("worker")]:
            self.stop(name)

    def stop_all(self) -> None:
        for name in list(self.processes):
            self.stop(name)

    def tail(self, name: str, lines: int = 40) -> str:
        path = self.workdir / f"{name}.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""

    def manage(self, *args: str) -> str:
        result = subprocess.run(  # noqa: S603
            [support.PYTHON, "manage.py", *args], cwd=support.ROOT, env=self.env, capture_output=True, text=True
        )
        if result.returncode != 0:
            raise RuntimeError(f"manage.py {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
        return result.stdout

    def start_app(self, *, max_concurrent: int) -> None:
        """The web (production ASGI command) and the worker(s), with FAL_MAX_CONCURRENT set
        (restarted if they run with another value)."""
        if "web" in self.processes and self.env.get("FAL_MAX_CONCURRENT") == str(max_concurrent):
            return
        self.stop_app()
        self.env["FAL_MAX_CONCURRENT"] = str(max_concurrent)
        self.spawn("web", [support.PYTHON, "-m", "gunicorn", "-c", "gunicorn.conf.py"])
        for number in range(self.workers):
            self.spawn(f"worker{number}", [support.PYTHON, "manage.py", "db_worker", "--no-startup-delay"])
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{self.base}/healthz", timeout=2).json().get("checks", {}).get("worker") == "up":
                    break
            except (httpx.HTTPError, ValueError):
                pass
            for name, process in self.processes.items():
                if process.poll() is not None:
                    raise RuntimeError(f"{name} exited ({process.returncode}):\n{self.tail(name)}")
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"no healthy web and worker within 60 s:\n{self.tail('web')}\n{self.tail('worker0')}"
                )
            time.sleep(0.2)

    def log_sizes(self) -> dict[str, int]:
        """Where each log ends now (see `exceptions_since`)."""
        return {path.stem: path.stat().st_size for path in self.workdir.glob("*.log")}

    def exceptions_since(self, sizes: dict[str, int]) -> Counter[str]:
        """Exceptions the web and worker logged since `sizes`, by their last traceback line
        (e.g. PostgreSQL refusing connections), so a run's 500s come with their cause."""
        found: Counter[str] = Counter()
        for path in self.workdir.glob("*.log"):
            if path.stem != "web" and not path.stem.startswith("worker"):
                continue
            with path.open("rb") as log:
                log.seek(sizes.get(path.stem, 0))
                text = log.read().decode(errors="replace")
            for match in _EXCEPTION_LINE.finditer(text):
                found[f"{path.stem.rstrip('0123456789')}: {match.group(1)}: {match.group(2)[:90]}"] += 1
        return found

    def web_pids(self) -> set[int]:
        master = self.processes["web"].pid
        return {master, *support.child_pids(master)}

    def worker_pids(self) -> set[int]:
        pids: set[int] = set()
        for name, process in self.processes.items():
            if name.startswith("worker"):
                pids |= {process.pid, *support.child_pids(process.pid)}
        return pids


def cpu_of(pids: set[int]) -> dict[int, float]:
    return {pid: support.process_cpu_seconds(pid) for pid in pids}


def spent(before: dict[int, float], after: dict[int, float]) -> float:
    return support.cpu_spent(before, after, set(after))


def postmaster_pid() -> int:
    with support._admin_connection() as connection:  # read while the backend is alive
        backend = connection.execute("SELECT pg_backend_pid()").fetchone()[0]
        return int(Path(f"/proc/{backend}/stat").read_text().rsplit(")", 1)[1].split()[1])


def active_generations() -> int:
    import psycopg

    with psycopg.connect(support.database_url(DB_NAME), autocommit=True) as connection:
        row = connection.execute(
            "SELECT count(*) FROM generation_generation WHERE status IN ('queued', 'running')"
        ).fetchone()
    assert row is not None  # count(*) always answers one row
    return int(row[0])


def pipeline_times(generation_ids: list[str]) -> dict[str, tuple[float, float]]:
    """Generation id → (when the worker saw fal's COMPLETED, when it recorded the success),
    as Unix times: the succeeded attempt's finished_at and the generation's completed_at."""
    import psycopg

    if not generation_ids:
        return {}
    with psycopg.connect(support.database_url(DB_NAME), autocommit=True) as connection:
        rows = connection.execute(
            "SELECT g.id::text, extract(epoch FROM a.finished_at), extract(epoch FROM g.completed_at) "
            "FROM generation_generation g JOIN generation_attempt a "
            "ON a.generation_id = g.id AND a.status = 'succeeded' "
            "WHERE g.id = ANY(%s::uuid[]) AND g.status = 'succeeded'",
            [generation_ids],
        ).fetchall()
    return {row[0]: (float(row[1]), float(row[2])) for row in rows if row[1] is not None and row[2] is not None}


def fal_job_ids(generation_ids: list[str]) -> dict[str, str]:
    """Generation id → fal's request id of its first image."""
    import psycopg

    if not generation_ids:
        return {}
    with psycopg.connect(support.database_url(DB_NAME), autocommit=True) as connection:
        rows = connection.execute(
            "SELECT generation_id::text, fal_job_id FROM generation_media WHERE generation_id = ANY(%s::uuid[]) "
            "AND index = 0",
            [generation_ids],
        ).fetchall()
    return {row[0]: row[1] for row in rows}


def analyze() -> None:
    """Statistics for the planner, as autovacuum would gather them on a server that has
    been up for a while. It looks at most once a minute (autovacuum_naptime), and a bench
    database grows from empty in less: without statistics the planner read every public
    image for each feed page (5.8 ms against 0.16 ms at 1,300 images, and growing)."""
    import psycopg

    with psycopg.connect(support.database_url(DB_NAME), autocommit=True) as connection:
        connection.execute("ANALYZE")


def database_sessions() -> int:
    """Connections ever opened to the bench database (pg_stat_database.sessions, PostgreSQL 14+)."""
    with support._admin_connection() as connection:
        row = connection.execute("SELECT sessions FROM pg_stat_database WHERE datname = %s", [DB_NAME]).fetchone()
    return int(row[0] or 0) if row else 0


def read_series(path: Path) -> list[list[float]]:
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        parts = line.split()
        if len(parts) == 3:
            rows.append([float(part) for part in parts])
    return rows


def value_at(series: list[list[float]], moment: float, column: int) -> float:
    """The sampled value of `column` nearest before `moment` (0 before the first sample)."""
    chosen = 0.0
    for row in series:
        if row[0] > moment:
            break
        chosen = row[column]
    return chosen


def main() -> None:
    parser = argparse.ArgumentParser(description="A helper process of bench/crowd.py.")
    parser.add_argument("--latency", type=float, default=4.0)
    parser.add_argument("--serve-fake-fal", type=Path, metavar="CERT_DIR")
    parser.add_argument("--webhooks", action="store_true", help="the fake fal delivers signed webhooks")
    parser.add_argument("--probe-healthz", nargs=2, metavar=("URL", "OUT"))
    parser.add_argument("--sample-postgres", nargs=3, metavar=("DB", "POSTMASTER", "OUT"))
    args = parser.parse_args()
    if args.serve_fake_fal:
        serve_fake_fal(args.latency, args.serve_fake_fal, webhooks=args.webhooks)
    elif args.probe_healthz:
        probe_healthz(args.probe_healthz[0], Path(args.probe_healthz[1]))
    elif args.sample_postgres:
        sample_postgres(args.sample_postgres[0], int(args.sample_postgres[1]), Path(args.sample_postgres[2]))
    else:
        parser.error("one of --serve-fake-fal, --probe-healthz, --sample-postgres")


if __name__ == "__main__":
    main()
