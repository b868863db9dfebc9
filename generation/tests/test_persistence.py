"""Durable results: Cloudinary remote uploads, local storage, and retries when saving fails."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from django.utils import timezone

from credits.models import CreditEntry
from generation import services
from generation.models import Attempt, Generation, Media, StoredRemoval
from generation.providers import ProviderState, ProviderStatus
from generation.registry import FAST_SDXL_I2I
from generation.storage import result_name
from generation.tests.pipeline_helpers import balance, run_worker, start_generation
from presets.tests.factories import PresetFactory

pytestmark = pytest.mark.django_db


def _retries():
    """Images whose copy the worker's poller will try again (durable state on the row)."""
    return Media.objects.filter(persisted=False, persist_next_at__isnull=False)


def test_cloudinary_failing_then_recovering(user, fake_fal, fake_cloudinary, django_capture_on_commit_callbacks):
    fake_cloudinary.fail_uploads(status=500, times=1)
    preset = PresetFactory(kind="emotion_mask", model_chain=[FAST_SDXL_I2I])
    generation = start_generation(user, preset)

    with django_capture_on_commit_callbacks(execute=True):
        run_worker(generation)

    # The user has the image (fal's URL) and the generation succeeded; saving is retried.
    assert generation.status == Generation.Status.SUCCEEDED
    media = generation.media.get()
    assert not media.persisted
    assert media.url == media.original_url and media.url.startswith(fake_fal.base_url)
    assert "General Error" in media.persist_error
    [retry] = _retries()
    assert retry.pk == media.pk
    assert retry.persist_next_at > timezone.now() + dt.timedelta(seconds=5)

    services.media_persist(media_id=media.pk, reschedule=True)  # what the poller runs when it is due

    media.refresh_from_db()
    assert media.persisted and media.url == f"/images/{media.storage_key}"
    assert media.storage_key == f"stefna/generated/{result_name(generation.pk, 0)}"
    assert [u["public_id"] for u in fake_cloudinary.uploads] == [result_name(generation.pk, 0)] * 2
    assert not _retries().exists()  # no further retry scheduled
    assert media.persist_next_at is None


def test_a_cloudinary_timeout_is_retried_later(user, fake_fal, fake_cloudinary, settings):
    settings.CLOUDINARY_TIMEOUT_SECONDS = 0.2
    fake_cloudinary.delay = 0.5
    preset = PresetFactory(model_chain=[FAST_SDXL_I2I])
    generation = start_generation(user, preset)

    run_worker(generation)

    media = generation.media.get()
    assert generation.status == Generation.Status.SUCCEEDED
    assert not media.persisted and media.persist_error


def test_retries_stop_when_fals_url_is_gone(user, fake_fal, fake_cloudinary, caplog):
    fake_cloudinary.fail_uploads(status=500)
    preset = PresetFactory(model_chain=[FAST_SDXL_I2I])
    generation = start_generation(user, preset)
    run_worker(generation)
    media = generation.media.get()
    fake_fal.expire_files()
    fake_cloudinary.reset()

    services.media_persist(media_id=media.pk, reschedule=True)

    media.refresh_from_db()
    assert not media.persisted
    assert media.persist_error.startswith("Source gone")
    assert not _retries().exists()
    assert any(r.levelname == "ERROR" and "gone" in r.message for r in caplog.records)


def test_a_result_already_gone_is_not_charged_and_the_next_model_is_tried(user, fake_fal, caplog):
    from credits.selectors import balance_of
    from generation.registry import GHIBLIFY

    fake_fal.set_result(GHIBLIFY, {"image": {"url": f"{fake_fal.base_url}/gone/0.png"}})
    preset = PresetFactory(kind="ghibli_reaction", model_chain=[GHIBLIFY, FAST_SDXL_I2I])
    generation = start_generation(user, preset)

    run_worker(generation)

    assert generation.status == Generation.Status.SUCCEEDED
    first, second = generation.attempts.order_by("position")
    assert first.status == "failed" and "gone" in first.error
    media = generation.media.get()
    assert media.model == FAST_SDXL_I2I and media.persisted
    assert any(r.levelname == "ERROR" and "gone" in r.message for r in caplog.records)
    assert balance_of(user=user) == 28


def test_cloudinary_rejecting_our_signature_is_not_persisted(user, fake_fal, fake_cloudinary):
    fake_cloudinary.reject_signatures = True
    preset = PresetFactory(model_chain=[FAST_SDXL_I2I])
    generation = start_generation(user, preset)

    run_worker(generation)

    media = generation.media.get()
    assert not media.persisted and "Invalid Signature" in media.persist_error


def test_deleting_an_image_destroys_the_cloudinary_asset(
    user, fake_fal, fake_cloudinary, django_capture_on_commit_callbacks
):
    preset = PresetFactory(model_chain=[FAST_SDXL_I2I])
    generation = start_generation(user, preset)
    run_worker(generation)
    media = generation.media.get()
    assert media.storage_key in fake_cloudinary.assets

    with django_capture_on_commit_callbacks(execute=True):
        services.media_delete(user=user, media_id=media.pk)

    assert not Media.objects.filter(pk=media.pk).exists()
    assert [d["public_id"] for d in fake_cloudinary.destroys] == [media.storage_key]
    assert media.storage_key not in fake_cloudinary.assets


def test_an_image_already_gone_is_dropped_and_the_others_are_kept(user, fake_fal):
    fake_fal.set_result(
        FAST_SDXL_I2I,
        {"images": [{"url": f"{fake_fal.base_url}/gone/0.png"}, {"url": f"{fake_fal.base_url}/files/x/1.png"}]},
    )
    preset = PresetFactory(kind="image_to_image", model_chain=[FAST_SDXL_I2I], num_images=2)
    generation = start_generation(user, preset)

    run_worker(generation)

    assert generation.status == Generation.Status.SUCCEEDED
    [media] = generation.media.all()
    assert (
        media.persisted and media.index == 1 and media.storage_key == f"generated/{result_name(generation.pk, 1)}.png"
    )
    assert balance(user) == 28  # charged once: the user has an image


def _completed_at_fal(user, fake_fal):  # type: ignore[no-untyped-def]
    """A submitted generation fal has finished, and the attempt as the poller loaded it."""
    generation = start_generation(user, PresetFactory(model_chain=[FAST_SDXL_I2I]))
    services.generation_poll_due(limit=10)  # submitted
    fake_fal.complete_all()
    return generation, Attempt.objects.select_related("generation").get(generation=generation)


def test_a_generation_canceled_while_its_images_were_copied_keeps_no_copy(
    user, fake_fal, settings, django_capture_on_commit_callbacks
):
    generation, attempt = _completed_at_fal(user, fake_fal)
    # Removals are owed with the cancel and with the recording that lost to it, and
    # tried once each commits.
    with django_capture_on_commit_callbacks(execute=True):
        # The poller holds fal's "completed" for this attempt when the owner cancels.
        services.generation_cancel(generation_id=generation.pk, user=user)

        services.apply_status(attempt.generation, attempt, ProviderStatus(ProviderState.COMPLETED))

    generation.refresh_from_db()
    assert generation.status == Generation.Status.CANCELED
    assert not generation.media.exists()
    assert not list((Path(settings.MEDIA_ROOT) / "generated").glob("*"))
    assert not StoredRemoval.objects.exists()
    assert balance(user) == 30  # refunded, never captured


def test_a_late_poller_never_removes_images_a_webhook_already_delivered(user, fake_fal, settings):
    generation, attempt = _completed_at_fal(user, fake_fal)
    # The poller holds fal's "completed" while the webhook delivers and the job finishes.
    result = {"images": [{"url": f"{fake_fal.base_url}/files/{attempt.fal_job_id}/0.png"}]}
    assert services.generation_webhook(request_id=attempt.fal_job_id, status="OK", payload=result) == "completed"
    run_worker(generation)
    media = generation.media.get()
    assert generation.status == Generation.Status.SUCCEEDED and media.persisted

    services.apply_status(attempt.generation, attempt, ProviderStatus(ProviderState.COMPLETED))

    assert (Path(settings.MEDIA_ROOT) / media.storage_key).is_file()
    assert generation.media.count() == 1
    assert balance(user) == 28  # captured once


def test_jobs_finished_in_one_round_are_recorded_together(user, fake_fal, settings, django_assert_max_num_queries):
    preset = PresetFactory(model_chain=[FAST_SDXL_I2I])
    generations = [start_generation(user, preset, prompt=f"harbour {n}") for n in range(4)]
    services.generation_poll_due(limit=10)  # all submitted
    fake_fal.complete_all()
    Generation.objects.filter(pk__in=[g.pk for g in generations]).update(next_check_at=timezone.now())
    claimed = services.generation_claim_due(limit=10)
    # Each job's images are copied; nothing is recorded yet.
    finished = [future.result() for future in services.generation_poll_batch(generation_ids=claimed)]
    assert len(finished) == 4 and not Media.objects.exists()
    # The owner cancels one of them before the worker records the round.
    services.generation_cancel(generation_id=generations[3].pk, user=user)

    with django_assert_max_num_queries(16):  # one transaction for the round, not one per job
        services.generations_finish(finished=finished)

    for generation in generations:
        generation.refresh_from_db()
    assert [g.status for g in generations] == ["succeeded"] * 3 + ["canceled"]
    for generation in generations[:3]:
        media = generation.media.get()
        assert media.persisted and (Path(settings.MEDIA_ROOT) / media.storage_key).is_file()
        assert [line["message"] for line in generation.logs][-2:] == [
            "Fast SDXL (image-to-image) finished: 1 image; saving",
            "Done",
        ]
        assert CreditEntry.objects.filter(generation=generation, reason="capture").count() == 1
    assert not generations[3].media.exists()
    assert not list((Path(settings.MEDIA_ROOT) / "generated").glob(f"*{generations[3].pk}*"))
    assert balance(user) == 30 - 3 * 2


def test_two_copies_to_one_local_name_leave_one_file(fake_fal, monkeypatch):
    # Two workers copying one image both find its name free; the first saves, then the
    # second saves: local storage would put the second under another name, a file no
    # row points to. The second keeps the first's (the same image) and removes its own.
    from django.core.files.storage import FileSystemStorage, default_storage

    from generation import persistence

    source = f"{fake_fal.base_url}/files/race/0.png"
    first = persistence.save_copy(source, public_id="race-0", content_type="image/png")
    real_exists = FileSystemStorage.exists
    looks = []

    def exists(self, name):  # the second worker's look came before the first one's save
        looks.append(name)
        return False if len(looks) == 1 else real_exists(self, name)

    monkeypatch.setattr(FileSystemStorage, "exists", exists)

    second = persistence.save_copy(source, public_id="race-0", content_type="image/png")

    monkeypatch.undo()
    assert first.outcome == second.outcome == persistence.Outcome.PERSISTED
    assert second.key == first.key == "generated/race-0.png"
    assert [name for name in default_storage.listdir("generated")[1] if name.startswith("race-0")] == ["race-0.png"]
