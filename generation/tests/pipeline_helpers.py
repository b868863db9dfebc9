"""Shared helpers for the pipeline tests: start a generation the way the API does, and
run the worker's rounds (in the test's thread and transaction) until it settles."""

from __future__ import annotations

import datetime as dt
import uuid
from concurrent.futures import Executor, Future
from typing import Any

import time_machine
from django.utils import timezone

from credits import ledger
from credits.selectors import balance_of
from generation import services
from generation.images import validate_image
from generation.models import Generation
from generation.registry import FAST_SDXL_I2I
from generation.worker import Poller
from presets.tests.factories import PresetFactory
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


class Inline(Executor):
    """Runs each job at once, in the test's thread and transaction."""

    def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> Future[Any]:
        future: Future[Any] = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except Exception as exc:
            future.set_exception(exc)
        return future


def run_upkeep(*, later: dt.timedelta = dt.timedelta(hours=2)) -> None:
    """One round of a fresh worker's poller, `later` from now: long enough for any retry
    of owed storage work to be due again, however often it failed before."""
    with time_machine.travel(timezone.now() + later, tick=False):
        Poller(worker_id="upkeep", threads=2)._round(Inline())


def balance(user: Any) -> int:
    return balance_of(user=user)


def failed_with_its_email_owed(fake_fal: Any, user: Any, capture_on_commit: Any) -> Generation:
    """A generation with "email me" on, failed (every model refused) and its email owed."""
    fake_fal.fail_submit(FAST_SDXL_I2I, status=422)
    generation = start_generation(user, PresetFactory(model_chain=[FAST_SDXL_I2I]), notify=True)
    with capture_on_commit(execute=True):
        run_worker(generation)
    assert generation.status == Generation.Status.FAILED
    return generation


def staff_retry_form(generation: Generation) -> dict[str, Any]:
    """The admin changelist's confirmed "Retry" of `generation`, as staff send it: with the
    form's one-time key, fresh, as a newly shown form carries."""
    return {
        "action": "retry_generations",
        "index": "0",
        "_selected_action": [str(generation.pk)],
        "apply": "1",
        "retry_key": str(uuid.uuid4()),
    }
