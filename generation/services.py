"""Writes for generations: starting one, and everything that moves it afterwards.

Every function here is named `<entity>_<verb>`, takes keyword arguments and runs in
one transaction. Views, endpoints and tasks call these; nothing else writes
`Generation`, `Attempt` or `Media` rows.
"""

from __future__ import annotations

import hashlib
import json
import logging
import uuid
from functools import partial
from typing import TYPE_CHECKING

from django.conf import settings
from django.core.files.storage import default_storage
from django.db import IntegrityError, transaction
from django.utils import timezone

from credits import ledger
from presets.models import Preset
from stefna import ratelimit
from stefna.errors import InvalidInput, NotFound

from .exceptions import IdempotencyConflict
from .images import ValidatedImage
from .models import Generation, Media

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
    preset = Preset.objects.filter(slug=(slug or "").strip(), is_active=True).first()
    if preset is None:
        raise InvalidInput(f"There is no active style called {slug!r}.", detail={"field": "preset"})
    return preset


def source_image_path(*, user_id: object, kind: str, extension: str) -> str:
    return f"IMAGES_UPLOAD/{user_id}/{kind}/{uuid.uuid4()}.{extension}"


def _fingerprint(*, preset_slug: str, prompt: str, is_public: bool, image_sha256: str) -> str:
    body = json.dumps([preset_slug, prompt, is_public, image_sha256])
    return hashlib.sha256(body.encode()).hexdigest()


def generation_request(
    *,
    user: User,
    preset_slug: str,
    image: ValidatedImage,
    prompt: str | None = "",
    is_public: bool = False,
    idempotency_key: str | None = None,
) -> tuple[Generation, bool]:
    """Start a generation: store the photo, reserve the credits, queue the submission.

    Returns `(generation, created)`. With an `idempotency_key` already used by this
    user for the same request, returns the first generation and `created=False`,
    charging nothing; for a different request it raises IdempotencyConflict.
    Every refusal (bad preset or prompt, too few credits) leaves nothing stored
    and nothing charged.
    """
    preset = active_preset(preset_slug)
    prompt = clean_prompt(prompt, required=preset.requires_prompt)
    idempotency_key = (idempotency_key or "").strip()[:200] or None
    fingerprint = _fingerprint(preset_slug=preset.slug, prompt=prompt, is_public=is_public, image_sha256=image.sha256)
    if idempotency_key:
        existing = _idempotent_replay(user=user, key=idempotency_key, fingerprint=fingerprint)
        if existing:
            return existing, False
    limit, window = settings.RATE_LIMIT_GENERATIONS
    ratelimit.hit(f"generation-start:{user.pk}", limit=limit, window=window)

    path = source_image_path(user_id=user.pk, kind=preset.kind, extension=image.extension)
    saved_path: str | None = None
    try:
        with transaction.atomic():
            generation = Generation.objects.create(
                user=user,
                preset=preset,
                preset_slug=preset.slug,
                preset_name=preset.name,
                kind=preset.kind,
                prompt=prompt,
                prompt_template=preset.prompt,
                prompt_sent=render_prompt(preset.prompt, prompt),
                model_chain=list(preset.model_chain),
                parameters=dict(preset.parameters or {}),
                loras=list(preset.loras or []),
                num_images=preset.num_images,
                cost=settings.GENERATION_COST,
                is_public=is_public,
                idempotency_key=idempotency_key,
                request_fingerprint=fingerprint,
                source_width=image.width,
                source_height=image.height,
                next_check_at=timezone.now(),
                logs=[_log_line("Queued")],
            )
            ledger.reserve(user=user, generation=generation, amount=generation.cost)
            # The file is written last, after the credits are secured; if anything
            # below fails it is removed again, so a refusal stores nothing.
            saved_path = default_storage.save(path, _content_file(image))
            generation.source_image.name = saved_path
            generation.save(update_fields=["source_image"])
            transaction.on_commit(partial(_enqueue_submit, generation.pk))
    except IntegrityError:
        _discard(saved_path)
        if idempotency_key:
            # Two requests with one key raced; the other one won.
            existing = _idempotent_replay(user=user, key=idempotency_key, fingerprint=fingerprint)
            if existing:
                return existing, False
        raise
    except BaseException:
        _discard(saved_path)
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


def _content_file(image: ValidatedImage):  # type: ignore[no-untyped-def]
    from django.core.files.base import ContentFile

    return ContentFile(image.content)


def _discard(path: str | None) -> None:
    if path:
        try:
            default_storage.delete(path)
        except Exception:  # a cleanup failure must not hide the original error
            logger.exception("could not remove %s", path)


def _enqueue_submit(generation_id: uuid.UUID) -> None:
    from .tasks import generation_submit_task

    generation_submit_task.enqueue(generation_id=str(generation_id))


def _log_line(message: str, level: str = "info") -> dict[str, str]:
    return {"message": message, "level": level, "timestamp": timezone.now().isoformat()}


# --- Owner actions on generations and media ----------------------------------------------


def generation_hide(*, user: User, generation_id: object) -> None:
    """Remove a finished generation from its owner's history. The row stays (money record)."""
    generation = Generation.objects.filter(pk=generation_id, user=user, deleted_at__isnull=True).first()
    if generation is None:
        raise NotFound("Generation not found.")
    with transaction.atomic():
        Generation.objects.filter(pk=generation.pk).update(deleted_at=timezone.now())
        Media.objects.filter(generation=generation).update(is_public=False)


def media_set_public(*, user: User, media_id: object, is_public: bool) -> Media:
    media = Media.objects.filter(pk=media_id, user=user).first()
    if media is None:
        raise NotFound("Image not found.")
    media.is_public = bool(is_public)
    media.save(update_fields=["is_public"])
    return media


def media_delete(*, user: User, media_id: object) -> None:
    """Delete an image for good: the row, and the stored file when we hold it locally."""
    media = Media.objects.filter(pk=media_id, user=user).first()
    if media is None:
        raise NotFound("Image not found.")
    storage_key = media.storage_key
    persisted_locally = media.persisted and not settings.CLOUDINARY_ENABLED
    media.delete()
    if persisted_locally and storage_key:
        transaction.on_commit(partial(_discard, storage_key))
