"""Run the django-tasks-db tasks queued so far, in the test's transaction, the way
`manage.py db_worker` does (django-tasks-db's own worker runs each one)."""

from __future__ import annotations

from django.tasks import TaskResultStatus
from django.utils import timezone
from django_tasks_db.management.commands.db_worker import Worker
from django_tasks_db.models import DBTaskResult


def run_tasks() -> int:
    """Run every task that is ready now (not those whose `run_after` is still ahead);
    returns how many ran."""
    worker = Worker(
        queue_names=["*"],
        interval=0,
        batch=True,
        backend_name="default",
        startup_delay=False,
        max_tasks=None,
        worker_id="test",
        excluded_queue_names=[],
    )
    ran = 0
    for task_result in DBTaskResult.objects.ready().order_by("enqueued_at"):
        task_result.claim(worker.worker_id)
        worker.run_task(task_result)
        ran += 1
    return ran


def time_passes() -> None:
    """Every task waiting for its `run_after` (a retry's backoff) is due now."""
    DBTaskResult.objects.filter(status=TaskResultStatus.READY).update(run_after=timezone.now())
