"""What one round of the worker's poller looks at (generation/worker.py).

Each round records finished jobs, starts waiting ones and checks running ones whose
check is due; images whose copy is due again are looked for once a second. The rounds
run here in the test's thread and transaction, with an executor that runs each job at
once.
"""

from __future__ import annotations

import datetime as dt
import time

import pytest
from django.utils import timezone

from generation.models import Generation, Media
from generation.registry import FAST_SDXL_I2I
from generation.tests.factories import MediaFactory
from generation.tests.pipeline_helpers import Inline, run_worker, start_generation
from generation.worker import Poller
from presets.tests.factories import PresetFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def preset():
    return PresetFactory(model_chain=[FAST_SDXL_I2I])


@pytest.fixture
def due_check(user, preset, fake_fal):
    """A job running at fal whose next check is due now."""
    fake_fal.manual = True  # it stays in fal's queue
    generation = start_generation(user, preset)
    run_worker(rounds=1)
    generation.refresh_from_db()
    assert generation.status == Generation.Status.RUNNING
    Generation.objects.filter(pk=generation.pk).update(next_check_at=timezone.now() - dt.timedelta(seconds=1))
    return generation


def status_checks(fake_fal, generation: Generation) -> int:
    return len(fake_fal.calls("GET", f"/requests/{generation.attempts.get().fal_job_id}/status"))


def test_a_round_starts_waiting_jobs_and_checks_due_ones(due_check, other_user, preset, fake_fal):
    waiting = start_generation(other_user, preset)
    checks_before = status_checks(fake_fal, due_check)

    Poller(worker_id="rounds", threads=2)._round(Inline())

    waiting.refresh_from_db()
    assert waiting.status == Generation.Status.RUNNING
    assert len(fake_fal.submissions()) == 2
    assert status_checks(fake_fal, due_check) == checks_before + 1


def unsaved_image_due(fake_fal) -> Media:
    """A result whose first copy failed, due for another (fal still has the file)."""
    media = MediaFactory.create(
        persisted=False, persist_attempts=1, persist_next_at=timezone.now() - dt.timedelta(seconds=1)
    )
    Media.objects.filter(pk=media.pk).update(original_url=f"{fake_fal.base_url}/files/{media.pk}/0.png")
    return media


def test_images_due_for_another_copy_are_looked_for_once_a_second(fake_fal):
    first = unsaved_image_due(fake_fal)
    poller = Poller(worker_id="rounds", threads=2)

    poller._round(Inline())
    first.refresh_from_db()
    assert first.persisted

    second = unsaved_image_due(fake_fal)
    poller._round(Inline())  # the next round, within the second
    second.refresh_from_db()
    assert not second.persisted

    poller._next_persist = time.monotonic()  # a second later
    poller._round(Inline())
    second.refresh_from_db()
    assert second.persisted
