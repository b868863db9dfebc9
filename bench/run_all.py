#!/usr/bin/env python
"""Run every bench, one after another, and print all their figures (`make bench`).

Needs the local PostgreSQL (BENCH_POSTGRES_URL, default postgres://postgres@127.0.0.1:5432);
each bench creates and drops its own `stefna_bench*` database. About 20 to 25 minutes on
the 2-core machine (the crowd bench about 6, with webhooks 2 to 3 more, as browsers 1 to 2
more, faults.py about 4 a database).

A bench exits 0 when its targets are met and 1 when it completed but missed one (it
prints MISSED/FAIL next to the figure); a traceback means it crashed. The run exits 1
if any bench crashed, and, with --strict, also if any target was missed.

    .venv/bin/python bench/run_all.py [--only api,persistence] [--quick] [--strict]
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import support

BENCH_DIR = Path(__file__).resolve().parent
NOT_BENCHES = {"__init__.py", "support.py", "run_all.py", "crowd_stack.py"}


def plan(quick: bool) -> list[tuple[str, list[str], str | None]]:
    """(script, arguments, PostgreSQL database it needs created for it or None).

    inflight.py and load.py take DATABASE_URL / --database-url and migrate it
    themselves; the database is created (and dropped) here. The others manage their own.
    """
    inflight_db, load_db = "stefna_bench_inflight", "stefna_bench_load"
    benches: list[tuple[str, list[str], str | None]] = [
        ("api.py", ["--seconds", "1" if quick else "3"], None),
        ("persistence.py", [], None),
        ("inflight.py", ["--count", "200" if quick else "1000"], inflight_db),
        (
            "load.py",
            ["--database-url", support.database_url(load_db), *(["--clients", "10"] if quick else [])],
            load_db,
        ),
        ("ledger.py", ["--seconds", "1" if quick else "3"], None),
        # issue 16 point 4: /healthz while generate-image calls wait (ASGI under gunicorn.conf.py)
        ("asgi_wait.py", ["--fal-seconds", "5" if quick else "10"], None),
        # Faults on both databases: SQLite (a temporary file) and PostgreSQL.
        ("faults.py", ["--count", "60" if quick else "200"], None),
        ("faults.py", ["--count", "60" if quick else "200"], "stefna_bench_faults"),
        # issue 22: a crowd of signed-in users (N = 20, 100, 300) and the fairness scenario
        ("crowd.py", ["--quick"] if quick else [], None),
        # ... and with fal's webhooks: fal's callback → user sees (target p95 ≤ 0.5 s)
        ("crowd.py", ["--webhooks", "--no-fairness", *(["--quick"] if quick else ["--users", "20,100"])], None),
        # ... and as browsers: the status page and its live card
        ("crowd.py", ["--browser", "--no-fairness", *(["--quick"] if quick else ["--users", "100"])], None),
    ]
    known = {script for script, _, _ in benches}
    # A bench added later runs too, with its defaults, so `make bench` never skips one.
    for path in sorted(BENCH_DIR.glob("*.py")):
        if path.name not in NOT_BENCHES and path.name not in known:
            benches.append((path.name, [], None))
    return [bench for bench in benches if (BENCH_DIR / bench[0]).exists()]


def machine() -> str:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor() or "unknown CPU",
    )
    memory_kb = next(
        int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines() if line.startswith("MemTotal")
    )
    try:
        with support._admin_connection() as connection:
            postgres = connection.execute("SHOW server_version").fetchone()[0]
    except Exception as exc:
        raise SystemExit(
            f"bench: cannot reach PostgreSQL at {support.POSTGRES_URL} ({exc}). Start it, or set BENCH_POSTGRES_URL."
        ) from exc
    return (
        f"{os.cpu_count()} CPUs ({cpu}), {memory_kb / 1024 / 1024:.0f} GB RAM, Python {platform.python_version()}, "
        f"PostgreSQL {postgres}, load average {os.getloadavg()[0]:.1f}"
    )


def run(script: str, arguments: list[str], database: str | None) -> tuple[int, float, list[str]]:
    env = {**os.environ, "PYTHONPATH": str(support.ROOT), "PYTHONUNBUFFERED": "1"}
    if database:
        env["DATABASE_URL"] = support.create_database(database)
    started = time.perf_counter()
    lines: list[str] = []
    try:
        process = subprocess.Popen(
            [sys.executable, str(BENCH_DIR / script), *arguments],
            cwd=support.ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        assert process.stdout is not None
        for line in process.stdout:
            sys.stdout.write(line)
            sys.stdout.flush()
            lines.append(line.rstrip("\n"))
        code = process.wait()
    finally:
        if database:
            support.drop_database(database)
    return code, time.perf_counter() - started, lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", default="", help="comma-separated bench names, e.g. api,persistence")
    parser.add_argument("--quick", action="store_true", help="smaller runs (a smoke test of the benches)")
    parser.add_argument("--strict", action="store_true", help="exit 1 when any target is missed, too")
    args = parser.parse_args()
    chosen = {name.strip().removesuffix(".py") for name in args.only.split(",") if name.strip()}

    print(f"Stefna benches on {machine()}\n", flush=True)
    outcomes = []
    began = time.perf_counter()
    for script, arguments, database in plan(args.quick):
        if chosen and script.removesuffix(".py") not in chosen:
            continue
        print(f"\n{'=' * 100}\n$ python bench/{script} {' '.join(arguments)}\n{'=' * 100}", flush=True)
        code, seconds, lines = run(script, arguments, database)
        verdict = next((line for line in reversed(lines) if line.strip()), "")
        crashed = code not in (0, 1) or any(line.startswith("Traceback (most recent call last)") for line in lines)
        status = "CRASHED" if crashed else "targets met" if code == 0 else "target missed"
        outcomes.append((script, status, seconds, verdict))

    print(
        f"\n{'=' * 100}\nSummary ({time.perf_counter() - began:.0f} s in all; load average now {os.getloadavg()[0]:.1f})"
    )
    support.print_table(
        [[script, status, f"{seconds:.0f} s", verdict[:110]] for script, status, seconds, verdict in outcomes],
        ["bench", "status", "time", "last line"],
    )
    failing = {"CRASHED", "target missed"} if args.strict else {"CRASHED"}
    return 1 if any(status in failing for _, status, _, _ in outcomes) else 0


if __name__ == "__main__":
    sys.exit(main())
