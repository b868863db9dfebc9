"""Offline preview provider: real images made with Pillow, no key and no network.

Used when FAL_KEY is unset. It behaves like fal's queue so the very same pipeline,
tasks and persistence run: `submit` returns a request id at once; `status` goes
IN_QUEUE (with a queue position) → IN_PROGRESS (with log lines) → COMPLETED over
`OFFLINE_QUEUE_SECONDS` + `OFFLINE_RUN_SECONDS`; `result` renders the user's photo in
the preset's own look (`local_looks`: the prompt picks effect, palette and motifs; with no
photo, `local_scenes` lays out a scene from the prompt first) and stores it through Django's default storage,
answering fal's output shape with the file's URL.

Job state lives in small JSON files under `OFFLINE_PROVIDER_DIR`, not in memory: the
web process (cancel) and the worker (status, result) are different processes.
"""

from __future__ import annotations

import base64
import io
import json
import math
import os
import re
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from PIL import Image, ImageDraw, ImageOps

from generation.exceptions import ProviderError

from . import local_looks, local_scenes
from .base import ProviderState, ProviderStatus

# Where the offline preview writes its outputs; /media/offline/<name> serves them.
OFFLINE_FOLDER = "offline"

LOCAL_PREFIX = "local-"
SINGLE_IMAGE_ENDPOINTS = {"fal-ai/ghiblify"}
WORKING_SIDE = 768  # previews are rendered at this long side: fast, and plenty for a preview
_REQUEST_ID = re.compile(r"^local-[0-9a-f-]{36}$")


class LocalProvider:
    name = "local"

    # --- state files -------------------------------------------------------------------------

    @staticmethod
    def _dir() -> Path:
        directory = Path(settings.OFFLINE_PROVIDER_DIR)
        directory.mkdir(parents=True, exist_ok=True)
        return directory

    def _path(self, request_id: str) -> Path:
        if not _REQUEST_ID.match(request_id):
            raise ProviderError(f"Unknown offline request {request_id!r}", permanent=True, code="provider_not_found")
        return self._dir() / f"{request_id}.json"

    def _read(self, request_id: str) -> dict[str, Any]:
        try:
            return json.loads(self._path(request_id).read_text())
        except FileNotFoundError:
            raise ProviderError(
                f"Unknown offline request {request_id!r}", permanent=True, code="provider_not_found"
            ) from None

    def _write(self, request_id: str, state: dict[str, Any]) -> None:
        # Written to a temporary file and renamed, so a reader in another process never
        # sees half a file.
        path = self._path(request_id)
        handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        with os.fdopen(handle, "w") as file:
            json.dump(state, file)
        os.replace(temporary, path)

    # --- protocol ------------------------------------------------------------------------------

    def submit(self, endpoint: str, payload: dict[str, Any], webhook_url: str | None = None, *, kind: str = "") -> str:
        request_id = f"{LOCAL_PREFIX}{uuid.uuid4()}"
        state = {
            "endpoint": endpoint,
            "payload": payload,
            "kind": kind,
            # Kept apart from the payload, which is emptied once the result is rendered.
            "has_photo": bool(payload.get("image_url")),
            "submitted_at": time.time(),
            "canceled": False,
        }
        self._write(request_id, state)
        return request_id

    def status(self, endpoint: str, request_id: str) -> ProviderStatus:
        state = self._read(request_id)
        if state.get("canceled"):
            return ProviderStatus(ProviderState.COMPLETED, error="Request was cancelled")
        queue_seconds = float(settings.OFFLINE_QUEUE_SECONDS)
        run_seconds = float(settings.OFFLINE_RUN_SECONDS)
        elapsed = time.time() - float(state["submitted_at"])
        if elapsed < queue_seconds:
            position = math.ceil((queue_seconds - elapsed) / queue_seconds * 3) - 1
            return ProviderStatus(ProviderState.IN_QUEUE, queue_position=max(0, position))
        look_name = local_looks.describe(
            kind=state.get("kind") or "", prompt=str((state.get("payload") or {}).get("prompt") or "")
        )
        has_photo = state.get("has_photo", bool((state.get("payload") or {}).get("image_url")))
        lines = [
            "Offline preview: no FAL_KEY, rendering locally",
            "Loading your photo" if has_photo else "Laying out a scene from your prompt (no photo needed)",
            f"Applying the {look_name} look",
        ]
        progress = (elapsed - queue_seconds) / run_seconds if run_seconds else 1.0
        if progress < 1:
            shown = lines[: 1 + int(progress * len(lines))]
            return ProviderStatus(ProviderState.IN_PROGRESS, logs=_log_lines(shown, state["submitted_at"]))
        return ProviderStatus(ProviderState.COMPLETED, logs=_log_lines([*lines, "Done"], state["submitted_at"]))

    def result(self, endpoint: str, request_id: str) -> dict[str, Any]:
        state = self._read(request_id)
        if state.get("canceled"):
            raise ProviderError("Request was cancelled", permanent=True, code="provider_canceled")
        if state.get("result"):
            return state["result"]
        payload = state.get("payload") or {}
        source = _load_source(payload.get("image_url"), prompt=str(payload.get("prompt") or ""))
        prompt = str(payload.get("prompt") or "")
        count = 1 if endpoint in SINGLE_IMAGE_ENDPOINTS else max(1, min(4, int(payload.get("num_images") or 1)))
        images = []
        for index in range(count):
            rendered = _badge(local_looks.render(source, kind=state.get("kind") or "", prompt=prompt, variant=index))
            buffer = io.BytesIO()
            rendered.save(buffer, "PNG", optimize=False)
            name = default_storage.save(f"{OFFLINE_FOLDER}/{request_id}_{index}.png", ContentFile(buffer.getvalue()))
            images.append(
                {
                    "url": default_storage.url(name),
                    "width": rendered.width,
                    "height": rendered.height,
                    "content_type": "image/png",
                }
            )
        result: dict[str, Any] = {"image": images[0]} if endpoint in SINGLE_IMAGE_ENDPOINTS else {"images": images}
        state["result"] = result
        state["payload"] = {}  # the photo's data URI is not needed any more
        self._write(request_id, state)
        return result

    @classmethod
    def prune(cls, *, older_than_seconds: float = 24 * 60 * 60) -> int:
        """Remove state files of jobs submitted long ago (the sweeper calls this)."""
        directory = Path(settings.OFFLINE_PROVIDER_DIR)
        if not directory.is_dir():
            return 0
        cutoff = time.time() - older_than_seconds
        removed = 0
        for path in directory.glob(f"{LOCAL_PREFIX}*.json"):
            try:
                if path.stat().st_mtime < cutoff:
                    path.unlink()
                    removed += 1
            except FileNotFoundError:
                continue
        return removed

    def cancel(self, endpoint: str, request_id: str) -> None:
        state = self._read(request_id)
        state["canceled"] = True
        self._write(request_id, state)


def _log_lines(messages: list[str], started: float) -> list[dict[str, str]]:
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(started))
    return [{"message": m, "level": "INFO", "timestamp": f"{stamp}.{n:06d}"} for n, m in enumerate(messages)]


def _load_source(image_url: Any, *, prompt: str) -> Image.Image:
    """The user's photo from the payload (data URI, our own storage URL, or a public URL)."""
    data: bytes | None = None
    if isinstance(image_url, str) and image_url.startswith("data:") and "," in image_url:
        data = base64.b64decode(image_url.split(",", 1)[1])
    elif isinstance(image_url, str) and image_url.startswith(settings.MEDIA_URL):
        with default_storage.open(image_url[len(settings.MEDIA_URL) :]) as file:
            data = file.read()
    elif isinstance(image_url, str) and image_url.startswith(("http://", "https://")):
        import httpx

        try:
            response = httpx.get(image_url, timeout=10, follow_redirects=True)
            response.raise_for_status()
            data = response.content
        except httpx.HTTPError as exc:
            raise ProviderError(f"Could not read the photo ({type(exc).__name__})", permanent=True) from None
    if data is None:
        return _prompt_canvas(prompt)
    try:
        opened = Image.open(io.BytesIO(data))
        image: Image.Image = (ImageOps.exif_transpose(opened) or opened).convert("RGB")
    except Exception:
        raise ProviderError("The photo could not be decoded", permanent=True, code="provider_invalid_input") from None
    image.thumbnail((WORKING_SIDE, WORKING_SIDE), Image.Resampling.LANCZOS)
    return image


def _prompt_canvas(prompt: str) -> Image.Image:
    """Text-to-image models get no photo: a scene laid out from the prompt's words stands in."""
    return local_scenes.compose(prompt, side=WORKING_SIDE)


def _badge(image: Image.Image) -> Image.Image:
    """A small corner label, so nobody mistakes a preview for a model's output."""
    draw = ImageDraw.Draw(image, "RGBA")
    text = "offline preview"
    width = 8 + 6 * len(text)
    draw.rectangle((6, image.height - 22, 6 + width, image.height - 6), fill=(0, 0, 0, 150))
    draw.text((10, image.height - 20), text, fill=(255, 255, 255, 230))
    return image
