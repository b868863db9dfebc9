"""Writes for generations, one module per stage of a generation's life.

    request   validate, create the job, reserve its credits; staff's retry (→ queued)
    submit    queued → running (`generations_start`), send each attempt to its model
    check     ask fal where a job stands; progress, errors, time bounds
    finish    copy a finished job's images; running → succeeded (`generations_finish`)
    stop      → failed / → canceled with the refund (`generation_stop`)
    webhook   store fal's answer and make the job due (the worker finishes it)
    media     images not copied yet: durable retries with backoff
    preview   share previews of public images in default storage, made on first use
    owner     an owner's actions on finished generations and images
    revoke    moves and removals owed to storage, retried until storage confirms
    upkeep    the sweeper, pruning what only grows, the worker's heartbeat
    advance   one round of the worker over the due jobs (calls the stages above)
    claim     leases: who may work on a job now
    schedule  who starts next: FAL_MAX_CONCURRENT, the fair order, queue positions, fal's 429
    log       the generation's log lines (and the transition log)

Each transition has one writer, named above, and every path (poller, webhook, cancel
from the API or a page, admin actions, commands) reaches it; docs/architecture.md draws
it. Edges (views, API, admin, the worker) import from here; nothing here imports them.
"""

from __future__ import annotations

from .advance import generation_advance, generation_poll_batch, generation_poll_due, generation_submit
from .check import apply_status
from .claim import WAKE_CHANNEL, generation_claim_running, generation_release, workers_wake
from .finish import Finished, generations_finish
from .media import media_persist, media_persist_due
from .owner import generation_hide, media_delete, media_set_public
from .preview import media_preview_ready
from .request import clean_prompt, generation_request, generation_retry, render_prompt
from .revoke import (
    media_move,
    media_move_owe,
    media_moves_due,
    stored_removal_attempt,
    stored_removal_owe,
    stored_removals_due,
)
from .schedule import effective_limit, generation_claim_due, generation_requeue, generations_schedule
from .stop import IN_FLIGHT, generation_cancel, generation_fail, generation_refund, generation_stop
from .submit import generations_start, shorten_payload, source_image_url
from .upkeep import generation_sweep, upkeep_prune, worker_heartbeat
from .webhook import generation_webhook

__all__ = [
    "IN_FLIGHT",
    "WAKE_CHANNEL",
    "Finished",
    "apply_status",
    "clean_prompt",
    "effective_limit",
    "generation_advance",
    "generation_cancel",
    "generation_claim_due",
    "generation_claim_running",
    "generation_fail",
    "generation_hide",
    "generation_poll_batch",
    "generation_poll_due",
    "generation_refund",
    "generation_release",
    "generation_requeue",
    "generation_request",
    "generation_retry",
    "generation_stop",
    "generation_submit",
    "generation_sweep",
    "generation_webhook",
    "generations_finish",
    "generations_schedule",
    "generations_start",
    "media_delete",
    "media_move",
    "media_move_owe",
    "media_preview_ready",
    "media_moves_due",
    "media_persist",
    "media_persist_due",
    "media_set_public",
    "render_prompt",
    "shorten_payload",
    "source_image_url",
    "stored_removal_attempt",
    "stored_removal_owe",
    "stored_removals_due",
    "upkeep_prune",
    "worker_heartbeat",
    "workers_wake",
]
