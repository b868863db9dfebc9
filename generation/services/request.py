"""Requesting: validate what the user asked for, create the job, reserve its credits.

`generation_request` creates the `Generation` (due at once), reserves its credits and
stores the photo in one transaction; the row is the job, so a crash can never leave a
reservation without its job. The worker's poller then starts it (`submit.generations_start`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import uuid
from typing import TYPE_CHECKING

from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext as _

from credits import ledger
from presets.models import Preset
from presets.selectors import active_preset_by_slug
from stefna import ratelimit
from stefna.errors import InvalidInput, NotFound

from .. import storage
from ..exceptions import AlreadyRetried, IdempotencyConflict, InvalidTransition
from ..images import ValidatedImage
from ..models import Generation
from ..registry import chain_without_image
from . import revoke
from .claim import GenerationId, workers_wake
from .log import generation_log, log_line, log_transition

if TYPE_CHECKING:
    from stefna.accounts.models import User

logger = logging.getLogger("generation")


def clean_prompt(prompt: str | None, *, required: bool) -> str:
    """The user's prompt, trimmed and checked. Nothing else about it is changed."""
    prompt = (prompt or "").strip()
    if "\x00" in prompt:
        raise InvalidInput("The prompt contains a NUL character.", detail={"field": "prompt"})
    if len(prompt) > settings.MAX_PROMPT_CHARS:
        raise InvalidInput(
            f"The prompt is {len(prompt)} characters; the limit is {settings.MAX_PROMPT_CHARS}.",
            detail={"field": "prompt", "max_length": settings.MAX_PROMPT_CHARS},
        )
    if required and not prompt:
        raise InvalidInput("This style needs a prompt: describe what you want to see.", detail={"field": "prompt"})
    return prompt


def render_prompt(template: str, user_prompt: str) -> str:
    """The final prompt: the preset's template with `{prompt}` replaced by the user's text."""
    if not template:
        return user_prompt
    if "{prompt}" in template:
        # str.replace, not format(): user text with braces must pass through untouched.
        return template.replace("{prompt}", user_prompt).strip()
    return f"{template}, {user_prompt}" if user_prompt else template


def active_preset(slug: str) -> Preset:
    preset = active_preset_by_slug(slug)
    if preset is None:
        raise InvalidInput(f"There is no active style called {slug!r}.", detail={"field": "preset"})
    return preset


def source_image_path(*, user_id: object, kind: str, extension: str) -> str:
    return storage.source_name(extension=extension)  # unguessable, no user id in it


def _fingerprint(*, preset_slug: str, prompt: str, is_public: bool, image_sha256: str, notify: bool) -> str:
    fields: list[object] = [preset_slug, prompt, is_public, image_sha256]
    if notify:
        # Only when asked: a request without it keeps the fingerprint it had before `notify`
        # counted, so a retry of one made before this change is still a replay.
        fields.append({"notify": True})
    return hashlib.sha256(json.dumps(fields).encode()).hexdigest()


def generation_request(
    *,
    user: User,
    preset_slug: str,
    image: ValidatedImage | None,
    prompt: str | None = "",
    is_public: bool = False,
    idempotency_key: str | None = None,
    notify: bool = False,
    request_id: str = "",
) -> tuple[Generation, bool]:
    """Start a generation: store the photo, reserve the credits, queue the submission.

    Returns `(generation, created)`. With an `idempotency_key` already used by this
    user for the same request, returns the first generation and `created=False`,
    charging nothing; for a different request it raises IdempotencyConflict.
    Every refusal (bad preset or prompt, too few credits) leaves nothing stored
    and nothing charged.

    `image` is None for a text-to-image style (`Preset.needs_photo` false): then nothing
    is stored and the generation's chain keeps only the models that need no photo.
    A style that transforms a photo refuses None with `invalid_input` on `image`.

    `request_id` is the asking web request's X-Request-ID: the worker's log lines about
    this generation carry it (`log.working_on`).
    """
    preset = active_preset(preset_slug)
    if image is None and preset.needs_photo:
        raise InvalidInput(
            _("This style transforms a photo: send one as `image` (or reuse one with `source_generation`)."),
            detail={"field": "image"},
        )
    prompt = clean_prompt(prompt, required=preset.requires_prompt)
    idempotency_key = (idempotency_key or "").strip()[:200] or None
    image_sha256 = image.sha256 if image is not None else ""
    fingerprint = _fingerprint(
        preset_slug=preset.slug, prompt=prompt, is_public=is_public, image_sha256=image_sha256, notify=notify
    )
    if idempotency_key:
        existing = _idempotent_replay(user=user, key=idempotency_key, fingerprint=fingerprint)
        if existing:
            return existing, False
    limit, window = settings.RATE_LIMIT_GENERATIONS
    ratelimit.hit(f"generation-start:{user.pk}", limit=limit, window=window)

    path = source_image_path(user_id=user.pk, kind=preset.kind, extension=image.extension) if image else ""
    # Without a photo the chain's image models are dropped now, not skipped later: the
    # generation's copy of the chain is what every attempt and fallback reads.
    model_chain = list(preset.model_chain) if image else chain_without_image(list(preset.model_chain))
    saved_path: str | None = None
    try:
        with transaction.atomic():
            generation = Generation.objects.create(
                source_image=path,  # the name it is saved under below (unique: a UUID)
                user=user,
                preset=preset,
                preset_slug=preset.slug,
                preset_name=preset.name,
                kind=preset.kind,
                prompt=prompt,
                prompt_template=preset.prompt,
                prompt_sent=render_prompt(preset.prompt, prompt),
                model_chain=model_chain,
                parameters=dict(preset.parameters or {}),
                loras=list(preset.loras or []),
                num_images=preset.num_images,
                cost=settings.GENERATION_COST,
                is_public=is_public,
                notify=notify,  # "Email me when it's done" (issue 19)
                idempotency_key=idempotency_key,
                request_fingerprint=fingerprint,
                origin_request_id=request_id[:128],
                source_width=image.width if image else None,
                source_height=image.height if image else None,
                next_check_at=timezone.now(),
                logs=[log_line("Queued")],
            )
            ledger.reserve(user=user, generation=generation, amount=generation.cost, new_generation=True)
            # The file is written last, after the credits are secured; if anything
            # below fails it is removed again, so a refusal stores nothing.
            if image is not None:
                saved_path = default_storage.save(path, ContentFile(image.content))
                if saved_path != path:  # the storage chose another name after all
                    generation.source_image.name = saved_path
                    generation.save(update_fields=["source_image"])
            # Due at once (next_check_at=now): the workers are woken for it when this commits.
            workers_wake()
    except IntegrityError:
        discard(saved_path)
        if idempotency_key:
            # Two requests with one key raced; the other one won.
            existing = _idempotent_replay(user=user, key=idempotency_key, fingerprint=fingerprint)
            if existing:
                return existing, False
        raise
    except BaseException:
        discard(saved_path)
        raise
    logger.info("generation %s requested: preset=%s user=%s", generation.pk, preset.slug, user.pk)
    return generation, True


def _idempotent_replay(*, user: User, key: str, fingerprint: str) -> Generation | None:
    existing = Generation.objects.filter(user=user, idempotency_key=key).first()
    if existing is None:
        return None
    if existing.request_fingerprint != fingerprint:
        raise IdempotencyConflict(detail={"generation_id": str(existing.pk)})
    return existing


def discard(path: str | None) -> None:
    """Remove a stored file; a failure is logged, never raised over the original error."""
    if path:
        try:
            default_storage.delete(path)
        except Exception:  # a cleanup failure must not hide the original error
            logger.exception("could not remove %s", path)


def generation_retry(
    *, generation_id: GenerationId, by: User | None = None, request_id: str = "", retry_key: uuid.UUID | None = None
) -> Generation:
    """Staff: failed or canceled → queued (the only writer of it), from the first model,
    reserving its cost again. With `request_id` (the staff request's X-Request-ID) the
    worker's log lines from here on carry that id instead of the first request's.

    `retry_key` is the one-time key of the staff form that asked: a second call with the
    key of the retry that restarted it last raises AlreadyRetried, even when that retry
    has ended since (failed again in a moment), so the form sent twice charges once."""
    generation = Generation.objects.filter(pk=generation_id).first()
    if generation is None:
        raise NotFound("Generation not found.")
    if retry_key is not None and generation.retry_key == retry_key:
        raise AlreadyRetried()
    retryable = (Generation.Status.FAILED, Generation.Status.CANCELED)
    if generation.status not in retryable:
        raise InvalidTransition(f"Only failed or canceled generations can be retried; this one is {generation.status}.")
    with transaction.atomic():
        # Two submits of one form at once: the second finds the first's key here.
        not_this_form = ~Q(retry_key=retry_key) if retry_key is not None else Q()
        restarted = Generation.objects.filter(not_this_form, pk=generation.pk, status__in=retryable).update(
            status=Generation.Status.QUEUED,
            error_code="",
            error_message="",
            completed_at=None,
            started_at=None,
            queue_position=None,
            current_model="",
            next_check_at=timezone.now(),
            # A new run, charged again: an owner who asked to be emailed hears how this
            # one ends too, not only the end they were already told about.
            notified_at=None,
            **({"origin_request_id": request_id[:128]} if request_id else {}),
            **({"retry_key": retry_key} if retry_key is not None else {}),
        )
        if not restarted:
            if retry_key is not None and Generation.objects.filter(pk=generation.pk, retry_key=retry_key).exists():
                raise AlreadyRetried()
            raise InvalidTransition("This generation changed meanwhile; reload and try again.")
        # Raises InsufficientCredits (rolling the restart back) when the owner is broke.
        ledger.reserve(user=generation.user, generation=generation, amount=generation.cost)
        revoke.stored_removals_forget_for_retry(generation=generation)
        workers_wake()
    log_transition(generation.pk, to=Generation.Status.QUEUED, writer="generation_retry")
    # The generation's log is shown to its owner: name no staff member there, only in the server log.
    generation_log(generation, "Retried by staff; starting again with the first model")
    logger.info("generation %s retried by staff user %s", generation.pk, getattr(by, "pk", None))
    generation.refresh_from_db()
    return generation
