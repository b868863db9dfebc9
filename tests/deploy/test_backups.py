"""docs/deploy.md's backup and restore commands, as written, on this PostgreSQL: the dump
restores into a new, empty database (a new server, or a scratch one to test restores) and
over the database it came from.

`pg_restore --clean` alone drops each object before making it, and on an empty database
every drop failed (195 errors for Stefna's schema, exit 1): `--if-exists` is needed."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
from pathlib import Path

import psycopg
import pytest
from django.db import connection

ROOT = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.postgres_only, pytest.mark.django_db(transaction=True)]


def documented(tool: str) -> list[str]:
    """The systemd path's command for `tool` in docs/deploy.md, without its `sudo -u postgres`."""
    text = (ROOT / "docs/deploy.md").read_text()
    [command] = {found for found in re.findall(rf"sudo -u postgres ({tool} [^`\n]+)", text)}
    return shlex.split(command.replace("$(date +%F)", "2026-12-07"))  # the shell's part


def test_the_documented_dump_restores_into_a_new_database_and_over_the_old(user, tmp_path):
    if connection.vendor != "postgresql":
        pytest.skip("PostgreSQL only: the backups are pg_dump and pg_restore")
    settings = connection.settings_dict
    env = {
        **os.environ,
        "PGHOST": settings["HOST"] or "127.0.0.1",
        "PGPORT": str(settings["PORT"] or 5432),
        "PGUSER": settings["USER"] or "",
        "PGPASSWORD": settings["PASSWORD"] or "",
    }
    source, scratch = settings["NAME"], f"{settings['NAME']}_restore"
    dump_file = tmp_path / "stefna.dump"

    dump = [re.sub(r"^--file=.*", f"--file={dump_file}", word) for word in documented("pg_dump")]
    assert dump[-1] == "stefna"
    subprocess.run([*dump[:-1], source], env=env, check=True, timeout=120)

    restore = documented("pg_restore")
    assert restore[-3:] == ["--dbname", "stefna", "FILE"]
    address = {"host": env["PGHOST"], "port": env["PGPORT"], "user": env["PGUSER"], "password": env["PGPASSWORD"]}
    with psycopg.connect(**address, dbname="postgres", autocommit=True) as server:
        server.execute(f'DROP DATABASE IF EXISTS "{scratch}"')
        server.execute(f'CREATE DATABASE "{scratch}"')
    try:
        for attempt in ("into a new database", "over the restored one"):
            result = subprocess.run(
                [*restore[:-2], scratch, str(dump_file)], env=env, capture_output=True, text=True, timeout=120
            )
            assert result.returncode == 0, f"{attempt}: {result.stderr[-2000:]}"
        with psycopg.connect(**address, dbname=scratch) as restored:
            emails = restored.execute("SELECT email FROM accounts_user").fetchall()
        assert emails == [(user.email,)]
    finally:
        with psycopg.connect(**address, dbname="postgres", autocommit=True) as server:
            server.execute(f'DROP DATABASE IF EXISTS "{scratch}"')
