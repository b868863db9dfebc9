"""fal's copy gone before ours exists: the generation says so plainly and the owner gets
the credits back, once; staff see it in the admin."""

from __future__ import annotations

import pytest
from django.db import connection
from django.urls import reverse

from credits.models import CreditEntry
from credits.reconcile import find_ledger_problems
from generation import services
from generation.models import Generation
from generation.registry import FAST_SDXL_I2I
from generation.tests.pipeline_helpers import balance, run_worker, start_generation
from presets.tests.factories import PresetFactory

pytestmark = pytest.mark.django_db


def test_images_gone_at_fal_before_any_copy_fail_plainly_and_refund(user, fake_fal):
    fake_fal.set_result(FAST_SDXL_I2I, {"images": [{"url": f"{fake_fal.base_url}/gone/0.png"}]})
    fake_fal.expire_files()
    generation = start_generation(user, PresetFactory(model_chain=[FAST_SDXL_I2I]))

    run_worker(generation)

    assert generation.status == Generation.Status.FAILED
    assert generation.error_code == "result_lost"
    assert "deleted them before we could save a copy" in generation.error_message
    assert "refunded" in generation.error_message
    assert balance(user) == 30
    assert not generation.media.exists()


def test_an_image_lost_before_its_retried_copy_gives_the_credits_back_once(
    user, fake_fal, fake_cloudinary, staff_client, client
):
    fake_cloudinary.fail_uploads(status=500)
    generation = start_generation(user, PresetFactory(model_chain=[FAST_SDXL_I2I]), is_public=True)
    run_worker(generation)
    media = generation.media.get()
    assert generation.status == Generation.Status.SUCCEEDED and not media.persisted
    assert balance(user) == 28
    fake_fal.expire_files()  # fal deleted its copy before Cloudinary came back

    services.media_persist(media_id=media.pk, reschedule=True)
    services.media_persist(media_id=media.pk, reschedule=True)  # a second try changes nothing

    generation.refresh_from_db()
    media.refresh_from_db()
    assert generation.error_code == "result_lost"
    assert "deleted the images before we could save a copy" in generation.error_message
    assert balance(user) == 30  # given back, once
    assert media.hidden and not media.is_public and media.persist_next_at is None
    assert client.get("/api/feed").json()["items"] == []
    assert find_ledger_problems(users=[user]) == []
    page = staff_client.get(reverse("admin:generation_generation_change", args=[generation.pk]))
    assert "result_lost" in page.content.decode()


@pytest.mark.parametrize(
    ("language", "expected"),
    [
        ("en", "Given back: your images were lost before they could be saved"),
        ("id", "Dikembalikan: gambarmu hilang sebelum sempat disimpan"),
    ],
)
def test_the_owner_reads_why_the_credits_came_back_in_their_language(
    user, fake_fal, fake_cloudinary, client, language, expected
):
    """The grant was noted "images of <id> lost at fal" and the statement showed nothing
    else: an English note in an Indonesian page, naming a provider the owner never chose.
    The grant now records its reason, and the statement names it in the owner's language."""
    fake_cloudinary.fail_uploads(status=500)
    generation = start_generation(user, PresetFactory(model_chain=[FAST_SDXL_I2I]))
    run_worker(generation)
    fake_fal.expire_files()
    services.media_persist(media_id=generation.media.get().pk, reschedule=True)

    entry = CreditEntry.objects.get(user=user, reason=CreditEntry.Reason.RESULT_LOST)
    assert entry.amount == generation.cost and str(generation.pk) in entry.note  # staff still see which one
    user.language = language
    user.save(update_fields=["language"])
    client.force_login(user)
    page = client.get("/accounts/", headers={"accept-language": language}).content.decode()
    assert expected in page
    assert "lost at fal" not in page


def _while_the_retry_fetches(fake_cloudinary, fake_fal, action) -> None:  # type: ignore[no-untyped-def]
    """Once, on the fake's thread, before Cloudinary fetches fal's file for the worker's
    retry: `action` (on a connection of its own, closed after), then fal deletes its files."""

    def then_fal_deletes_the_file(upload: dict) -> None:
        fake_cloudinary.before_upload = None
        try:
            action()
        finally:
            connection.close()
        fake_fal.expire_files()

    fake_cloudinary.before_upload = then_fal_deletes_the_file


def _succeeded_with_its_copy_to_retry(user, fake_cloudinary):  # type: ignore[no-untyped-def]
    """A generation that succeeded while Cloudinary refused its copy: its image is shown
    from fal's address until a retry saves it."""
    fake_cloudinary.fail_uploads(status=500, times=1)
    generation = start_generation(user, PresetFactory(model_chain=[FAST_SDXL_I2I]))
    run_worker(generation)
    media = generation.media.get()
    assert generation.status == Generation.Status.SUCCEEDED and not media.persisted
    return generation, media


@pytest.mark.django_db(transaction=True)
def test_a_copy_try_that_finds_fal_s_file_gone_after_another_try_saved_it_keeps_the_image(
    user, fake_fal, fake_cloudinary
):
    """Two tries of one image's copy at once (staff's "save now" while the worker's retry
    runs): one saves it, then fal deletes its file before the other's fetch. The image is
    saved; the late try's "gone" must neither hide it nor give its credits back."""
    generation, media = _succeeded_with_its_copy_to_retry(user, fake_cloudinary)

    # Another try saves it (staff's "save now"), then fal deletes the file.
    _while_the_retry_fetches(fake_cloudinary, fake_fal, lambda: services.media_persist(media_id=media.pk))
    services.media_persist(media_id=media.pk, reschedule=True)  # the worker's retry

    media.refresh_from_db()
    generation.refresh_from_db()
    assert media.persisted and media.storage_key in fake_cloudinary.assets
    assert not media.hidden, media.hidden_reason
    assert generation.error_code == ""
    assert balance(user) == 28  # captured, not given back
    assert find_ledger_problems(users=[user]) == []


@pytest.mark.django_db(transaction=True)
def test_an_image_deleted_while_its_copy_is_retried_gives_nothing_back_when_fal_s_file_is_gone(
    user, fake_fal, fake_cloudinary
):
    """The owner deletes an image not saved yet while the worker retries its copy, and
    fal's file is gone by then: nothing was lost on our side (deleting an image gives
    nothing back), so its credits stay captured."""
    generation, media = _succeeded_with_its_copy_to_retry(user, fake_cloudinary)

    # The owner deletes it, then fal deletes the file.
    _while_the_retry_fetches(fake_cloudinary, fake_fal, lambda: services.media_delete(user=user, media_id=media.pk))
    services.media_persist(media_id=media.pk, reschedule=True)  # the worker's retry

    generation.refresh_from_db()
    assert not generation.media.exists()
    assert generation.error_code == ""
    assert balance(user) == 28  # captured, not given back
    assert find_ledger_problems(users=[user]) == []
