"""bench/load.py at a small size, in CI: 5 clients × 2 flows against gunicorn + db_worker +
the fake fal, on the database the suite runs with (SQLite or PostgreSQL). Zero 5xx, every
flow delivered, `check_ledger` clean."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.databases import database_url

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_five_clients_two_flows_each_no_5xx_and_a_clean_ledger(transactional_db):
    env = {key: value for key, value in os.environ.items() if key != "DATABASE_URL"}
    result = subprocess.run(
        [
            sys.executable,
            "bench/load.py",
            "--clients",
            "5",
            "--flows",
            "2",
            "--latency",
            "0.3",
            "--poll",
            "0.2",
            "--web-workers",
            "2",
            "--threads",
            "4",
            "--no-migrate",
            "--database-url",
            database_url(),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )

    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "RESULT OK" in output
    assert "5xx                0" in output
    assert "flows ok / failed  10 / 0" in output
    assert "check_ledger       clean" in output
