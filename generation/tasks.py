"""Background tasks (django.tasks, stored by django-tasks-db). Each takes ids and calls one service.

Submitting and following generations is not a task per job: the worker's poller
(generation/worker.py) claims every due generation, queued or in flight, in batches,
and moves each on its thread pool. Retrying an image's copy is not a task either: it is
durable state on the Media row (`persist_next_at`) that the poller finds, so a worker
killed mid-task loses nothing (README, design notes).
"""

from __future__ import annotations

from django.tasks import task

from .services import media_persist


@task()
def media_persist_task(*, media_id: str) -> None:
    """Kept for retries enqueued by an earlier version: save an image durably now.

    Nothing enqueues it any more. Remove it (and its README sentence) once no deployment
    holds a waiting one: `DBTaskResult.objects.filter(task_path__endswith="media_persist_task",
    status="READY")` is empty everywhere. Until then a stored task naming it would fail to load.
    """
    media_persist(media_id=media_id, reschedule=True)
