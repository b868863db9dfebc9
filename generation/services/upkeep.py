"""Upkeep: the periodic clean-up that keeps every job moving, and the worker's heartbeat."""

from __future__ import annotations

import datetime as dt
import logging
import os
import socket

from django.conf import settings
from django.core.files.storage import default_storage
from django.db.models import Q
from django.utils import timezone
from django_tasks_db.models import DBTaskResult

from stefna import ratelimit
from stefna.accounts.services import sign_ins_prune

from ..models import Generation, WorkerHeartbeat
from ..providers.local import LocalProvider
from ..storage import SOURCES_FOLDER
from .log import working_on
from .stop import generation_fail

logger = logging.getLogger("generation")

# A photo no generation points to is removed once it is this old: far longer than any
# request's transaction, so a photo whose generation is still to commit is never taken.
ORPHAN_PHOTO_AGE = dt.timedelta(hours=1)


def generation_sweep(*, now: dt.datetime | None = None) -> dict[str, int]:
    """Periodic clean-up of jobs that would otherwise never move again.

    - an active generation with no next check (should not happen) is made due;
    - a generation running for longer than its whole chain could take (every attempt
      timing out, plus slack for retries), counted from its start at fal, is failed and
      refunded, and its job at fal is canceled (`generation_fail`).
    Lost webhooks and jobs stuck in fal's queue need nothing here: every in-flight job
    is polled anyway, and an attempt past FAL_ATTEMPT_TIMEOUT_SECONDS is canceled and
    falls over to the next model when it is next checked. A crashed worker's claims
    expire on their own (PIPELINE_LEASE_SECONDS). The offline provider's day-old job
    files are removed.
    """
    now = now or timezone.now()
    made_due = Generation.objects.filter(status__in=Generation.ACTIVE_STATUSES, next_check_at__isnull=True).update(
        next_check_at=now
    )
    expired = 0
    slack = settings.PIPELINE_LEASE_SECONDS + 120
    # Counted from when its chain started at fal (`started_at`, set at the first submission
    # and cleared by a staff retry), not from the request: a job that waited its turn for a
    # free slot (FAL_MAX_CONCURRENT) or a retried old one has not used any of its time yet.
    # A queued job is not bounded: it starts as slots free, and its owner can cancel it.
    oldest_start = now - dt.timedelta(seconds=settings.FAL_ATTEMPT_TIMEOUT_SECONDS + slack)
    for generation in Generation.objects.filter(
        Q(started_at__lt=oldest_start) | Q(started_at__isnull=True, created_at__lt=oldest_start),
        status=Generation.Status.RUNNING,
    ).iterator():
        bound = len(generation.model_chain or [1]) * (settings.FAL_ATTEMPT_TIMEOUT_SECONDS + slack)
        if (now - (generation.started_at or generation.created_at)).total_seconds() <= bound:
            continue
        message = (
            f"This generation took longer than {bound // 60} minutes and was stopped; "
            f"your {generation.cost} credits were refunded."
        )
        with working_on(generation):
            if generation_fail(generation=generation, code="timeout", message=message):
                expired += 1
    LocalProvider.prune()
    ratelimit.prune_expired()  # ended rate-limit windows (stefna/ratelimit.py)
    return {"made_due": made_due, "expired": expired}


def worker_heartbeat(*, worker_id: str, started_at: dt.datetime) -> None:
    """Record that a worker is alive (health checks read the newest)."""
    now = timezone.now()
    WorkerHeartbeat.objects.update_or_create(
        worker_id=worker_id,
        defaults={"last_seen_at": now, "hostname": socket.gethostname()[:200], "pid": os.getpid()},
        create_defaults={
            "last_seen_at": now,
            "started_at": started_at,
            "hostname": socket.gethostname()[:200],
            "pid": os.getpid(),
        },
    )


def upkeep_prune(*, now: dt.datetime | None = None) -> dict[str, int]:
    """Delete what only grows: finished background-task results older than
    TASK_RESULT_RETENTION_DAYS, heartbeat rows of workers silent for longer than
    WORKER_HEARTBEAT_RETENTION_HOURS (a worker that comes back writes a new one), and
    expired sessions and sign-in codes (`stefna.accounts.services.sign_ins_prune`).

    Also the photos no generation points to (`photos_orphaned_remove`). Tasks still waiting
    or running are never touched. The worker runs this hourly.
    """
    now = now or timezone.now()
    tasks_before = now - dt.timedelta(days=settings.TASK_RESULT_RETENTION_DAYS)
    heartbeats_before = now - dt.timedelta(hours=settings.WORKER_HEARTBEAT_RETENTION_HOURS)
    tasks, _ = DBTaskResult.objects.finished().filter(finished_at__lt=tasks_before).delete()
    heartbeats, _ = WorkerHeartbeat.objects.filter(last_seen_at__lt=heartbeats_before).delete()
    return {
        "task_results": tasks,
        "heartbeats": heartbeats,
        **sign_ins_prune(now=now),
        "orphaned_photos": photos_orphaned_remove(now=now),
    }


def photos_orphaned_remove(*, now: dt.datetime | None = None, batch: int = 500) -> int:
    """Remove uploaded photos that no generation points to, once an hour old.

    A request stores its photo inside the transaction that creates its generation and
    removes it again if that fails; a process killed in between (SIGKILL, a lost machine),
    or a removal that failed, leaves a photo nothing points to, which no deletion of
    the account would ever find. Only the photos folder is looked at (results are
    named from their generation, and their removals are owed in services/revoke.py).
    """
    now = now or timezone.now()
    try:
        _folders, names = default_storage.listdir(SOURCES_FOLDER)
    except FileNotFoundError:
        return 0  # nothing uploaded yet
    removed = 0
    for start in range(0, len(names), batch):
        paths = [f"{SOURCES_FOLDER}/{name}" for name in names[start : start + batch]]
        kept = set(Generation.objects.filter(source_image__in=paths).values_list("source_image", flat=True))
        for path in paths:
            if path in kept or now - default_storage.get_modified_time(path) < ORPHAN_PHOTO_AGE:
                continue
            default_storage.delete(path)
            removed += 1
    if removed:
        logger.warning("removed %d uploaded photos that no generation points to", removed)
    return removed
