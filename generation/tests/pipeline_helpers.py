"""Shared helpers for the pipeline tests: start a generation the way the API does, and
run the worker's rounds (in the test's thread and transaction) until it settles."""

from __future__ import annotations

from typing import Any

from credits import ledger
from credits.selectors import balance_of
from generation import services
from generation.images import validate_image
from generation.models import Generation
from tests.images import make_jpeg


def start_generation(user: Any, preset: Any, *, prompt: str = "a quiet harbour", **kwargs: Any) -> Generation:
    ledger.ensure_daily_allowance(user=user)
    image = validate_image(make_jpeg(320, 240))
    generation, created = services.generation_request(
        user=user, preset_slug=preset.slug, image=image, prompt=prompt, **kwargs
    )
    assert created
    return generation


def run_worker(generation: Generation | None = None, *, rounds: int = 40) -> Generation | None:
    """Run poller rounds until `generation` is final (or nothing is due any more)."""
    for _ in range(rounds):
        claimed = services.generation_poll_due(limit=500)
        if generation is not None:
            generation.refresh_from_db()
            if generation.is_final:
                return generation
        elif not claimed:
            return None
    return generation


def balance(user: Any) -> int:
    return balance_of(user=user)
