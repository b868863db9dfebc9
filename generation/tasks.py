"""Background tasks (django.tasks, stored by django-tasks-db). Each takes ids and calls one service.

Submitting and following generations is not a task per job: the worker's poller
(generation/management/commands/db_worker.py) claims every due generation, queued
or in flight, in batches, and moves each on its thread pool. A task per submission
cost the worker about as much CPU as the submission itself, ran one at a time, and
raced the poller for the same jobs (README, design notes).
"""

from __future__ import annotations

from django.tasks import task


@task()
def media_persist_task(*, media_id: str) -> None:
    """Try again to save an image durably; schedules the next try itself while worth it."""
    from . import services

    services.media_persist(media_id=media_id, reschedule=True)
