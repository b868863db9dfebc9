"""Background tasks (django.tasks, stored by django-tasks-db). Each takes ids and calls one service.

Tasks never wait for a generation: submitting returns as soon as fal has queued the
job. Following in-flight jobs is the worker's poller's work (see
generation/management/commands/db_worker.py), not a task per job.
"""

from __future__ import annotations

from django.tasks import task


@task()
def generation_submit_task(*, generation_id: str) -> None:
    """Submit a queued generation to the first model of its chain (no-op if already taken)."""
    from . import services

    services.generation_submit(generation_id=generation_id)


@task()
def media_persist_task(*, media_id: str) -> None:
    """Try again to save an image durably; schedules the next try itself while worth it."""
    from . import services

    services.media_persist(media_id=media_id, reschedule=True)
