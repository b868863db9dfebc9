"""`manage.py db_worker` stopped the way supervisors stop it (SIGTERM from systemd,
`docker compose stop`, a deploy): it exits 0 within its grace period and hands back
every job it held, so the next worker resumes them at once with no second submission
to fal and no second charge.

A worker killed with SIGKILL is covered in test_crash_safety.py (its claims expire with
the lease); this is the polite stop, where nothing may wait for a lease to run out.
"""

from __future__ import annotations

import datetime as dt
import signal
import subprocess
import sys
import time

import pytest
from django.utils import timezone

from credits.models import CreditEntry
from credits.reconcile import find_ledger_problems
from generation import services
from generation.images import validate_image
from generation.models import Attempt, Generation
from tests.images import make_jpeg

from .conftest import ROOT, child_env, entries, wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

JOBS = 6
# Long enough that a claim still held after the stop is unmistakable (the test waits far less).
LEASE_SECONDS = 120


def start_worker(log, *extra: str) -> subprocess.Popen[bytes]:
    env = {**child_env(), "PIPELINE_LEASE_SECONDS": str(LEASE_SECONDS)}
    return subprocess.Popen(  # noqa: S603
        [sys.executable, "manage.py", "db_worker", "--interval", "0.1", "--no-startup-delay", "--no-reload", *extra],
        cwd=ROOT,
        env=env,
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
    )


def test_sigterm_exits_zero_and_hands_back_every_claimed_job(user, funded, fake_fal, one_model_style, tmp_path):
    fake_fal.manual = True  # jobs wait in fal's queue until the test moves them
    generations = [
        services.generation_request(
            user=user, preset_slug=one_model_style.slug, image=validate_image(make_jpeg(160, 120)), prompt=f"n{n}"
        )[0]
        for n in range(JOBS)
    ]
    log = tmp_path / "worker.log"
    first = start_worker(log)
    try:
        wait_for(
            lambda: Attempt.objects.exclude(fal_job_id="").count() == JOBS,
            timeout=60,
            what="fal to accept every job",
        )
        time.sleep(0.5)  # a few polling rounds: the worker is holding claims as it checks
        first.send_signal(signal.SIGTERM)
        returncode = first.wait(timeout=30)
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    output = log.read_text(errors="replace")[-3000:]
    assert returncode == 0, output
    assert "Traceback" not in output, output

    # Nothing half done: each job is at fal with its request id stored, none left
    # mid-submission, and none still claimed (due again within the normal poll interval).
    stopped_at = timezone.now()
    assert not Attempt.objects.filter(status=Attempt.Status.SUBMITTING).exists()
    for generation in Generation.objects.filter(pk__in=[g.pk for g in generations]):
        assert generation.status == Generation.Status.RUNNING
        assert generation.next_check_at <= stopped_at + dt.timedelta(seconds=10), "still claimed after the stop"
    assert len(fake_fal.submissions()) == JOBS

    # The next worker takes over at once, without re-submitting anything.
    for attempt in Attempt.objects.all():
        fake_fal.advance(attempt.fal_job_id, steps=3)
    second = start_worker(log)
    try:
        wait_for(
            lambda: Generation.objects.filter(status=Generation.Status.SUCCEEDED).count() == JOBS,
            timeout=60,
            what="the next worker to finish the handed-back jobs",
        )
    finally:
        second.send_signal(signal.SIGTERM)
        assert second.wait(timeout=30) == 0, log.read_text(errors="replace")[-3000:]
    assert len(fake_fal.submissions()) == JOBS, "no job was submitted twice"
    assert find_ledger_problems(users=[user]) == []
    for generation in generations:
        assert entries(generation, CreditEntry.Reason.CAPTURE) == 1


@pytest.mark.postgres_only
def test_a_sigterm_while_the_task_loops_claim_query_waits_still_exits_zero(tmp_path):
    """django-tasks-db's own handler raised SystemExit wherever the main thread stood. In
    its claim query, psycopg's wait took the signal with the query still running; the
    transaction's exit then raised ProgrammingError ("connection in transaction status
    ACTIVE") and the worker exited 1 with a traceback (seen once in CI on PostgreSQL).
    Here the query is held on a table lock while the signal lands."""
    from django.db import connection, transaction
    from django_tasks_db.models import DBTaskResult

    if connection.vendor != "postgresql":
        pytest.skip("PostgreSQL only: psycopg takes signals inside a waiting query; sqlite3 returns first")

    def claim_is_waiting() -> bool:
        with connection.cursor() as cursor:
            # Within a transaction the statistics views are a snapshot taken at first read.
            cursor.execute("SELECT pg_stat_clear_snapshot()")
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND pid <> pg_backend_pid() AND wait_event_type = 'Lock'"
            )
            return cursor.fetchone()[0] > 0

    log = tmp_path / "worker.log"
    worker = None
    try:
        with transaction.atomic():
            with connection.cursor() as cursor:
                cursor.execute(f"LOCK TABLE {DBTaskResult._meta.db_table} IN ACCESS EXCLUSIVE MODE")
            worker = start_worker(log, "--no-poller")
            wait_for(claim_is_waiting, timeout=60, what="the worker's claim query to wait on the lock")
            worker.send_signal(signal.SIGTERM)
            time.sleep(0.5)
            assert worker.poll() is None, "the worker left in the middle of its query"
        # The lock is released: the query ends, and so does the loop.
        returncode = worker.wait(timeout=30)
    finally:
        if worker is not None and worker.poll() is None:
            worker.kill()
            worker.wait()
    output = log.read_text(errors="replace")
    assert returncode == 0, output[-3000:]
    assert "Traceback" not in output, output[-3000:]
    assert "shutting down gracefully" in output


def test_the_command_runs_the_worker_with_every_option_django_tasks_db_takes():
    """`_run_tasks_worker` is django-tasks-db's `handle` with Stefna's Worker; an upgrade
    that adds an option there must be carried over here, not swallowed."""
    import inspect

    from django_tasks_db.management.commands.db_worker import Command as TasksDbWorkerCommand

    from generation.management.commands.db_worker import Command

    def options(function) -> set[str]:  # type: ignore[no-untyped-def]
        return {
            name
            for name, parameter in inspect.signature(function).parameters.items()
            if parameter.kind is inspect.Parameter.KEYWORD_ONLY
        }

    assert options(Command._run_tasks_worker) == options(TasksDbWorkerCommand.handle)
