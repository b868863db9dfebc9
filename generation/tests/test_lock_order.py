"""An owner's or staff's click on an image never deadlocks with the worker recording its
generation's result (PostgreSQL: real row locks).

The worker (finish._record) locks the generation, then its images. Any change to an image
also updates its generation's row (the version trigger, migration 0007), so a writer that
locked the image first and then waited for the generation waited in a circle with it:
PostgreSQL aborted one side, and the owner's click answered an error for nothing.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from django.db import connection

from generation import moderation, services
from generation.models import Generation, Media
from generation.registry import FAST_SDXL_I2I
from generation.services.finish import Finished
from generation.tests.pipeline_helpers import start_generation
from presets.tests.factories import PresetFactory
from tests.databases import connections_waiting_for_locks, thread_recording

pytestmark = [pytest.mark.postgres_only, pytest.mark.django_db(transaction=True)]

WAIT = 10


def _stored_by_the_webhook_and_copied(generation: Generation, fake_fal) -> Finished:
    """fal's webhook stored the result (its image listed at fal's address at once) and
    the worker copied it: what the worker records next."""
    services.generation_poll_due(limit=10)  # submitted
    fake_fal.complete_all()
    attempt = generation.attempts.get()
    result = {"images": [{"url": f"{fake_fal.base_url}/files/{attempt.fal_job_id}/0.png"}]}
    assert services.generation_webhook(request_id=attempt.fal_job_id, status="OK", payload=result) == "completed"
    for _ in range(20):
        for future in services.generation_poll_batch(generation_ids=services.generation_claim_due(limit=50)):
            finished = future.result()
            if isinstance(finished, Finished):
                return finished
    raise AssertionError("the job never finished at fal")


def _owner_actions(user, staff) -> dict[str, Callable[[Media], Any]]:
    return {
        "make_public": lambda media: services.media_set_public(user=user, media_id=media.pk, is_public=True),
        "make_private": lambda media: services.media_set_public(user=user, media_id=media.pk, is_public=False),
        "delete": lambda media: services.media_delete(user=user, media_id=media.pk),
        "hide": lambda media: services.generation_hide(user=user, generation_id=media.generation_id),
        "take_down": lambda media: moderation.media_takedown(media_id=media.pk, reason="spam", by=staff),
        "restore": lambda media: moderation.media_restore(media_id=media.pk, by=staff),
    }


@pytest.mark.parametrize("action", ["make_public", "make_private", "delete", "hide", "take_down", "restore"])
def test_an_owner_s_click_while_the_worker_records_the_result_waits_and_both_succeed(
    action, user, staff, fake_fal, fake_cloudinary
):
    if connection.vendor != "postgresql":
        pytest.skip(
            "PostgreSQL only: SQLite runs one writing transaction at a time, so the click and the "
            "worker's recording could never each hold a lock the other needs"
        )

    generation = start_generation(user, PresetFactory(model_chain=[FAST_SDXL_I2I]))
    finished = _stored_by_the_webhook_and_copied(generation, fake_fal)
    media = Media.objects.get(generation=generation)
    if action == "make_private":
        Media.objects.filter(pk=media.pk).update(is_public=True)
    if action == "restore":
        Media.objects.filter(pk=media.pk).update(hidden=True, hidden_reason="spam")

    at_the_images = threading.Event()
    go_on = threading.Event()

    def hold_before_locking_the_images(execute, sql, params, many, context):  # type: ignore[no-untyped-def]
        # The worker has locked the generation; its next lock is the images'.
        if 'FROM "generation_media"' in sql and "FOR UPDATE" in sql and not at_the_images.is_set():
            at_the_images.set()
            go_on.wait(WAIT)
        return execute(sql, params, many, context)

    def record() -> None:
        with connection.execute_wrapper(hold_before_locking_the_images):
            services.generations_finish(finished=[finished])

    recorded: list[Any] = []
    clicked: list[Any] = []
    worker = thread_recording(record, recorded)
    worker.start()
    assert at_the_images.wait(WAIT), "the worker never reached the images"
    click = thread_recording(lambda: _owner_actions(user, staff)[action](media), clicked)
    click.start()
    deadline = time.monotonic() + WAIT
    while connections_waiting_for_locks() < 1:  # the click waits for the worker's lock
        assert time.monotonic() < deadline, "the click never waited for the worker"
        time.sleep(0.02)
    go_on.set()
    worker.join(WAIT * 2)
    click.join(WAIT * 2)

    assert not [c for c in clicked if isinstance(c, Exception)], [str(c) for c in clicked]
    assert not [r for r in recorded if isinstance(r, Exception)], [str(r) for r in recorded]
    generation.refresh_from_db()
    assert generation.status == Generation.Status.SUCCEEDED, "the worker's recording failed"
    assert generation.error_code == ""
    # And the click did what it said, the worker's recording notwithstanding.
    image = Media.objects.filter(pk=media.pk).first()
    done = {
        "make_public": lambda: image is not None and image.is_public,
        "make_private": lambda: image is not None and not image.is_public,
        "delete": lambda: image is None,
        "hide": lambda: generation.deleted_at is not None,
        "take_down": lambda: image is not None and image.hidden,
        "restore": lambda: image is not None and not image.hidden,
    }
    assert done[action](), f"{action} was undone: {image and image.__dict__}"
