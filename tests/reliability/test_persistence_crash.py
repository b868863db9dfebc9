"""A worker SIGKILLed while it copies a paid image loses nothing: the copy is state on the
job record (the attempt still in flight, or the image's `persist_next_at`), so the next
worker makes it once the dead one's lease runs out.

Real `manage.py db_worker` processes against the fake fal and the fake Cloudinary (HTTPS,
signatures checked, remote URLs really fetched); the fake Cloudinary holds each upload
for a while, so the worker is killed in the middle of one.
"""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from generation import services
from generation.images import validate_image
from generation.models import Attempt, Generation, Media
from tests.images import make_jpeg

from .conftest import entries, wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


@pytest.fixture
def cloudinary_for_workers(fake_cloudinary, monkeypatch):
    """The worker processes we start use the fake Cloudinary too (through their environment)."""
    monkeypatch.setenv("CLOUDINARY_URL", fake_cloudinary.cloudinary_url)
    monkeypatch.setenv("CLOUDINARY_TIMEOUT_SECONDS", "20")
    monkeypatch.setenv("MEDIA_PERSIST_RETRY_SECONDS", "1")
    return fake_cloudinary


def _start(user, style) -> Generation:  # type: ignore[no-untyped-def]
    generation, _ = services.generation_request(
        user=user, preset_slug=style.slug, image=validate_image(make_jpeg(160, 120)), prompt="crash"
    )
    return generation


def _assert_saved_once_and_charged_once(generation: Generation, cloudinary) -> None:  # type: ignore[no-untyped-def]
    generation.refresh_from_db()
    assert generation.status == Generation.Status.SUCCEEDED
    media = generation.media.get()
    assert media.persisted and media.url == f"/images/{media.storage_key}"  # private delivery (storage.py)
    assert media.storage_key in cloudinary.assets
    assert entries(generation, "capture") == 1 and entries(generation, "refund") == 0


def test_a_worker_killed_between_fals_completion_and_the_copy_is_finished_after_restart(
    user, funded, fake_fal, one_model_style, cloudinary_for_workers, workers
):
    fake_fal.manual = True
    generation = _start(user, one_model_style)
    first = workers()
    attempt = wait_for(
        lambda: Attempt.objects.filter(generation=generation).exclude(fal_job_id="").first(),
        timeout=30,
        what="fal to accept the job",
        worker=first,
    )
    cloudinary_for_workers.delay = 30  # the copy will hang in Cloudinary's hands
    fake_fal.advance(attempt.fal_job_id, steps=3)  # done at fal
    wait_for(
        lambda: [
            call for call in fake_fal.calls("GET", f"/requests/{attempt.fal_job_id}") if "/status" not in call.path
        ],
        timeout=30,
        what="the worker to fetch the result and start copying it",
        worker=first,
    )

    first.kill()  # SIGKILL mid-copy: nothing recorded, nothing charged yet
    generation.refresh_from_db()
    assert generation.status == Generation.Status.RUNNING and not generation.media.exists()
    cloudinary_for_workers.reset()  # Cloudinary answers promptly again
    second = workers()
    wait_for(
        lambda: Media.objects.filter(generation=generation, persisted=True).exists(),
        timeout=60,
        what="the restarted worker to copy the image",
        worker=second,
    )

    _assert_saved_once_and_charged_once(generation, cloudinary_for_workers)
    assert len(fake_fal.submissions()) == 1, "fal was not asked twice"


def test_a_worker_killed_while_retrying_a_copy_leaves_it_to_the_next(
    user, funded, fake_fal, one_model_style, cloudinary_for_workers, workers
):
    cloudinary_for_workers.fail_uploads(status=500, times=1)  # the first copy fails: a retry is due
    generation = _start(user, one_model_style)
    first = workers()
    media = wait_for(
        lambda: Media.objects.filter(generation=generation, persisted=False, persist_next_at__isnull=False).first(),
        timeout=30,
        what="the generation to succeed with its copy still to make",
        worker=first,
    )
    cloudinary_for_workers.delay = 30  # the retry will hang
    wait_for(
        lambda: Media.objects.filter(
            pk=media.pk, persist_next_at__gt=timezone.now() + dt.timedelta(seconds=3)
        ).exists(),
        timeout=30,
        what="the worker to claim the retry",
        worker=first,
    )

    first.kill()  # SIGKILL while the retry's upload is in Cloudinary's hands
    cloudinary_for_workers.reset()
    second = workers()
    wait_for(
        lambda: Media.objects.filter(pk=media.pk, persisted=True).exists(),
        timeout=60,
        what="the next worker to make the copy once the dead one's claim ran out",
        worker=second,
    )

    _assert_saved_once_and_charged_once(generation, cloudinary_for_workers)
