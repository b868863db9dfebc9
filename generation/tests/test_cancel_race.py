"""A cancel racing fal's completion keeps nothing: no Media row, no Cloudinary asset, no
local file, whichever wins, with and without webhooks (PostgreSQL: real row locks).

Each iteration finishes a job at fal, then releases the worker's round (which copies the
images and records the success) and the owner's cancel at the same instant. Either the
generation succeeded (the cancel was refused) and its image is stored once, or it was
canceled and refunded and nothing of it is left anywhere.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest
from django.db import connection
from django.utils import timezone

from credits import ledger
from credits.reconcile import find_ledger_problems
from generation import services
from generation.exceptions import InvalidTransition
from generation.models import Generation, Media
from generation.registry import FAST_SDXL_I2I
from generation.storage import result_name
from generation.tests.pipeline_helpers import start_generation
from presets.tests.factories import PresetFactory

pytestmark = pytest.mark.django_db(transaction=True)

ITERATIONS = 12


@pytest.fixture
def postgres_only() -> None:
    if connection.vendor != "postgresql":
        pytest.skip(
            "PostgreSQL only: SQLite runs one writing transaction at a time, so the cancel and the "
            "worker's round could never overlap and the race would not be exercised"
        )


def _together(*works: Any) -> list[Any]:
    """Run each callable in its own thread, released at the same instant; results in order."""
    barrier = threading.Barrier(len(works))
    results: list[Any] = [None] * len(works)

    def run(number: int) -> None:
        try:
            barrier.wait(10)
            results[number] = works[number]()
        except Exception as exc:  # reported by the test, not lost in a thread
            results[number] = exc
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(n,)) for n in range(len(works))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return results


def _leftovers(generation: Generation, fake_cloudinary: Any, settings: Any) -> list[str]:
    # Results are named by generation/storage.py's derived (unguessable) names.
    names = [result_name(generation.pk, index) for index in range(8)]
    assets = [key for key in fake_cloudinary.assets if key.rsplit("/", 1)[-1] in names]
    folder = Path(settings.MEDIA_ROOT) / "generated"
    files = [path.name for path in folder.glob("*") if path.stem in names] if folder.exists() else []
    return assets + files


@pytest.mark.parametrize("storage", ["cloudinary", "local"])
@pytest.mark.parametrize("delivery", ["poll", "webhook"])
@pytest.mark.postgres_only
def test_a_cancel_racing_completion_leaves_no_copy_behind(
    postgres_only, user, fake_fal, fake_cloudinary, settings, storage, delivery
):
    if storage == "local":
        settings.CLOUDINARY_ENABLED = False
    ledger.grant(user=user, amount=2 * ITERATIONS)
    preset = PresetFactory(model_chain=[FAST_SDXL_I2I])
    outcomes = []
    for iteration in range(ITERATIONS):
        generation = start_generation(user, preset)
        services.generation_poll_due(limit=10)  # submitted
        attempt = generation.attempts.get()
        fake_fal.complete_all()
        if delivery == "webhook":
            result = {"images": [{"url": f"{fake_fal.base_url}/files/{attempt.fal_job_id}/0.png"}]}
            assert services.generation_webhook(request_id=attempt.fal_job_id, status="OK", payload=result) == (
                "completed"
            )
        Generation.objects.filter(pk=generation.pk).update(next_check_at=timezone.now())

        # The cancel lands at a different moment each time: before the worker asks fal,
        # while it copies the images, or after it recorded the success.
        delay = (iteration % 6) * 0.03

        def cancel_later(generation: Generation = generation, delay: float = delay) -> Generation:
            time.sleep(delay)
            return services.generation_cancel(generation_id=generation.pk, user=user)

        worker, cancel = _together(lambda: services.generation_poll_due(limit=10), cancel_later)

        assert not isinstance(worker, Exception), worker
        generation.refresh_from_db()
        if generation.status == Generation.Status.CANCELED:
            assert not isinstance(cancel, Exception), cancel
            assert not Media.objects.filter(generation=generation).exists()
            assert _leftovers(generation, fake_cloudinary, settings) == []
        else:
            # The worker finished first; the cancel was refused and the image is kept once.
            services.generation_poll_due(limit=10)  # (a round the race left for later)
            generation.refresh_from_db()
            assert generation.status == Generation.Status.SUCCEEDED, generation.status
            assert isinstance(cancel, InvalidTransition)
            media = generation.media.get()
            assert media.persisted
            assert len(_leftovers(generation, fake_cloudinary, settings)) == 1
        outcomes.append(generation.status)
    assert find_ledger_problems(users=[user]) == []
    assert len(outcomes) == ITERATIONS


@pytest.mark.parametrize("storage", ["cloudinary", "local"])
def test_a_cancel_after_a_worker_died_holding_copies_removes_them(user, fake_fal, fake_cloudinary, settings, storage):
    if storage == "local":
        settings.CLOUDINARY_ENABLED = False
    generation = start_generation(user, PresetFactory(model_chain=[FAST_SDXL_I2I]))
    services.generation_poll_due(limit=10)  # submitted
    fake_fal.complete_all()
    Generation.objects.filter(pk=generation.pk).update(next_check_at=timezone.now())
    claimed = services.generation_claim_due(limit=10)
    # The worker copies the images for the round... and is killed before recording it.
    [copied] = [future.result() for future in services.generation_poll_batch(generation_ids=claimed)]
    assert copied is not None and _leftovers(generation, fake_cloudinary, settings)

    services.generation_cancel(generation_id=generation.pk, user=user)

    assert _leftovers(generation, fake_cloudinary, settings) == []
    assert not Media.objects.filter(generation=generation).exists()
