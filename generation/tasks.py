"""Background tasks. Each takes ids and calls one service (see services.py)."""

from __future__ import annotations

from django.tasks import task


@task()
def generation_submit_task(*, generation_id: str) -> None:
    """Submit a queued generation to the first model of its chain."""
    from . import services

    services.generation_submit(generation_id=generation_id)
