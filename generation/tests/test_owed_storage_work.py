"""Storage work that must not be forgotten: when Cloudinary refuses to move an image off
a name that was public, or to remove one no row points to, the debt is recorded, and
one pass of the worker after Cloudinary recovers pays it, killing the old address.

The fake Cloudinary (tests/fakes/cloudinary.py) refuses every call while
`reject_signatures` is set, as it would with a bad key or during an outage of its API;
`delivered(url)` says whether its CDN would still serve an address.
"""

from __future__ import annotations

import datetime as dt
import threading
import time

import pytest
from django.db import connection, transaction
from django.test import Client
from django.utils import timezone

from generation import moderation, persistence, services
from generation.models import Generation, Media, StoredRemoval
from generation.registry import FAST_SDXL_I2I
from generation.services import revoke
from generation.services.finish import Finished
from generation.tests.pipeline_helpers import run_upkeep, run_worker, start_generation
from presets.tests.factories import PresetFactory
from stefna.accounts.deletion import account_delete
from tests.databases import someone_waits_for_a_lock_held_here

pytestmark = pytest.mark.django_db


def _owner(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def public_on_cloudinary(user, fake_fal, fake_cloudinary):
    """A finished image on Cloudinary, made public by its owner; the signed delivery
    address every visitor was sent to."""
    generation = start_generation(user, PresetFactory(kind="neo_glitch"))
    run_worker(generation)
    assert generation.status == Generation.Status.SUCCEEDED
    media = generation.media.get()
    owner = _owner(user)
    owner.post(f"/i/{media.pk}/visibility/", {"is_public": "1"})
    answer = Client().get(media.url)
    assert answer.status_code == 302
    public_address = answer["Location"]
    assert fake_cloudinary.delivered(public_address)
    return media, public_address, owner


# --- F1: making an image private --------------------------------------------------------


def test_making_private_moves_the_asset_and_says_so(public_on_cloudinary, fake_cloudinary):
    media, public_address, owner = public_on_cloudinary

    page = owner.post(f"/i/{media.pk}/visibility/", {}, follow=True)

    assert "Your image is private now." in page.content.decode()
    media.refresh_from_db()
    assert not media.move_owed and media.move_to == ""
    assert not fake_cloudinary.delivered(public_address)


def test_a_refused_rename_on_make_private_is_owed_and_one_worker_pass_finishes_it(
    public_on_cloudinary, fake_cloudinary
):
    media, public_address, owner = public_on_cloudinary
    old_key = media.storage_key
    fake_cloudinary.reject_signatures = True

    page = owner.post(f"/i/{media.pk}/visibility/", {}, follow=True)

    # The owner is told no more than is true: private here, the old link dies soon.
    text = page.content.decode()
    assert "Your image is private on Stefna now. Its old public link will stop working shortly." in text
    assert "Your image is private now." not in text
    media.refresh_from_db()
    assert not media.is_public and media.storage_key == old_key
    assert media.move_owed and media.move_to and media.move_to != old_key
    assert media.move_attempts == 1 and "Invalid Signature" in media.move_error
    assert fake_cloudinary.delivered(public_address), "the debt is real until it is paid"
    assert Client().get(media.url).status_code == 404, "our own address refuses at once"

    fake_cloudinary.reject_signatures = False
    run_upkeep()

    media.refresh_from_db()
    assert not media.move_owed and media.move_error == "" and media.move_to == ""
    assert media.storage_key != old_key and media.url == f"/images/{media.storage_key}"
    assert not fake_cloudinary.delivered(public_address)
    assert owner.get(media.url).status_code == 302, "the owner still has the image"
    assert media.storage_key in fake_cloudinary.assets


def test_a_rename_whose_answer_was_lost_is_not_redone_under_another_name(public_on_cloudinary, fake_cloudinary):
    """Cloudinary moved the asset but the answer never came: the retry finds nothing
    under the old name and takes the asset to be at the name chosen for the move."""
    media, public_address, owner = public_on_cloudinary
    fake_cloudinary.reject_signatures = True
    owner.post(f"/i/{media.pk}/visibility/", {})
    fake_cloudinary.reject_signatures = False
    media.refresh_from_db()
    target = media.move_to
    # What the lost call did at Cloudinary.
    fake_cloudinary.assets[target] = {**fake_cloudinary.assets.pop(media.storage_key), "public_id": target}
    fake_cloudinary.asset_bytes[target] = fake_cloudinary.asset_bytes.pop(media.storage_key)

    run_upkeep()

    media.refresh_from_db()
    assert not media.move_owed and media.storage_key == target
    assert owner.get(media.url).status_code == 302
    assert not fake_cloudinary.delivered(public_address)


def test_a_move_keeps_being_retried_with_a_doubling_delay_of_at_most_an_hour(public_on_cloudinary, fake_cloudinary):
    media, _, owner = public_on_cloudinary
    fake_cloudinary.reject_signatures = True
    owner.post(f"/i/{media.pk}/visibility/", {})

    run_upkeep(later=dt.timedelta(minutes=2))  # the first retry is due a minute after the failure

    media.refresh_from_db()
    assert media.move_attempts == 2 and media.move_owed
    waited = media.move_next_at - timezone.now()
    assert dt.timedelta(minutes=3) < waited <= dt.timedelta(minutes=5), "two minutes after the try, 2 min later"
    for attempts in (1, 2, 10, 60):
        assert revoke.retry_at(attempts=attempts) <= timezone.now() + dt.timedelta(hours=1, seconds=1)


# --- F1: deleting an image and an account ------------------------------------------------


def test_a_refused_destroy_on_image_delete_is_owed_and_one_worker_pass_finishes_it(
    public_on_cloudinary, fake_cloudinary, django_capture_on_commit_callbacks
):
    media, public_address, owner = public_on_cloudinary
    fake_cloudinary.reject_signatures = True

    with django_capture_on_commit_callbacks(execute=True):
        assert owner.post(f"/i/{media.pk}/delete/").status_code == 302

    assert not Media.objects.filter(pk=media.pk).exists()
    [removal] = StoredRemoval.objects.all()
    assert (removal.where, removal.key, removal.reason) == ("cloudinary", media.storage_key, "image_deleted")
    assert removal.attempts == 1 and "Invalid Signature" in removal.last_error
    assert fake_cloudinary.delivered(public_address)

    fake_cloudinary.reject_signatures = False
    run_upkeep()

    assert not StoredRemoval.objects.exists()
    assert media.storage_key not in fake_cloudinary.assets
    assert not fake_cloudinary.delivered(public_address)


def test_a_refused_destroy_on_account_deletion_is_owed_and_one_worker_pass_finishes_it(
    public_on_cloudinary, user, fake_cloudinary, django_capture_on_commit_callbacks
):
    media, public_address, _ = public_on_cloudinary
    fake_cloudinary.reject_signatures = True

    with django_capture_on_commit_callbacks(execute=True):
        account_delete(user=user, confirm=user.email)

    assert not Media.objects.filter(pk=media.pk).exists()
    owed = StoredRemoval.objects.filter(where="cloudinary")
    assert [(removal.key, removal.reason, removal.attempts) for removal in owed] == [
        (media.storage_key, "account_deleted", 1)
    ]
    assert fake_cloudinary.delivered(public_address)

    fake_cloudinary.reject_signatures = False
    run_upkeep()

    assert not StoredRemoval.objects.exists(), "the photo in Django storage went too"
    assert not fake_cloudinary.assets
    assert not fake_cloudinary.delivered(public_address)


def test_an_object_in_use_again_is_never_removed(public_on_cloudinary, fake_cloudinary):
    """A staff retry of a stopped generation copies its images under the same derived
    names: an older debt for that name must not take the new image."""
    media, public_address, _ = public_on_cloudinary
    StoredRemoval.objects.create(
        where="cloudinary", key=media.storage_key, reason="surplus_copy", next_at=timezone.now()
    )

    run_upkeep()

    assert not StoredRemoval.objects.exists()
    assert media.storage_key in fake_cloudinary.assets and fake_cloudinary.delivered(public_address)


# --- F2: a staff takedown ----------------------------------------------------------------


def test_a_takedown_moves_the_asset_so_its_public_address_dies(public_on_cloudinary, fake_cloudinary, staff):
    media, public_address, owner = public_on_cloudinary

    moderation.media_takedown(media_id=media.pk, reason="abuse report", by=staff)

    media.refresh_from_db()
    assert media.hidden and not media.move_owed
    [rename] = fake_cloudinary.renames
    assert rename["from_public_id"] != media.storage_key and rename["invalidate"] in ("1", "true")
    assert not fake_cloudinary.delivered(public_address)
    assert Client().get(media.url).status_code == 404
    assert owner.get(media.url).status_code == 302, "the owner still sees it"

    moderation.media_restore(media_id=media.pk, by=staff)  # under its new name

    again = Client().get(media.url)
    assert again.status_code == 302 and again["Location"] != public_address
    assert fake_cloudinary.delivered(again["Location"])


def test_a_refused_rename_on_takedown_is_owed_and_one_worker_pass_finishes_it(
    public_on_cloudinary, fake_cloudinary, staff
):
    media, public_address, _ = public_on_cloudinary
    fake_cloudinary.reject_signatures = True

    moderation.media_takedown(media_id=media.pk, reason="posted without consent", by=staff)

    media.refresh_from_db()
    assert media.hidden and media.move_owed and "Invalid Signature" in media.move_error
    assert fake_cloudinary.delivered(public_address)

    fake_cloudinary.reject_signatures = False
    run_upkeep()

    media.refresh_from_db()
    assert not media.move_owed
    assert not fake_cloudinary.delivered(public_address)


def test_a_takedown_moves_a_local_file_off_its_public_name(user, fake_fal, staff):
    generation = start_generation(user, PresetFactory(kind="neo_glitch"))
    run_worker(generation)
    media = generation.media.get()
    _owner(user).post(f"/i/{media.pk}/visibility/", {"is_public": "1"})
    public_url = f"/media/{media.storage_key}"
    assert Client().get(public_url).status_code == 200

    moderation.media_takedown(media_id=media.pk, reason="abuse report", by=staff)

    media.refresh_from_db()
    assert not media.move_owed and f"/media/{media.storage_key}" != public_url
    assert _owner(user).get(public_url).status_code == 404, "nothing is left under the old name"
    assert _owner(user).get(f"/media/{media.storage_key}").status_code == 200


# --- F9: a copy that lands after its image was deleted ------------------------------------


@pytest.mark.django_db(transaction=True)
def test_a_copy_that_lands_after_its_image_was_deleted_is_removed(user, fake_fal, fake_cloudinary):
    fake_cloudinary.fail_uploads(status=500, times=None)
    generation = start_generation(user, PresetFactory(kind="neo_glitch"))
    run_worker(generation)
    media = generation.media.get()
    assert not media.persisted
    fake_cloudinary.reset()

    def owner_deletes_it_meanwhile(answer: dict) -> None:
        # On the fake's thread, while the worker waits for the upload's answer.
        try:
            services.media_delete(user=user, media_id=media.pk)
        finally:
            connection.close()
        fake_cloudinary.reject_signatures = True  # and Cloudinary refuses the next call

    fake_cloudinary.on_upload = owner_deletes_it_meanwhile
    services.media_persist(media_id=media.pk, reschedule=True)  # what the worker runs when it is due

    [copied] = fake_cloudinary.assets
    assert not Media.objects.filter(pk=media.pk).exists()
    [removal] = StoredRemoval.objects.all()
    assert (removal.key, removal.reason, removal.attempts) == (copied, "surplus_copy", 1)

    fake_cloudinary.reject_signatures = False
    fake_cloudinary.on_upload = None
    run_upkeep()

    assert not StoredRemoval.objects.exists()
    assert not fake_cloudinary.assets


# --- A copy left behind by a generation that stopped ---------------------------------------


def _copied_not_recorded(generation: Generation) -> Finished:
    """Worker rounds up to the one that copied fal's result and has not recorded it yet:
    what the poller holds until its next round, and what a worker killed at that moment
    leaves behind."""
    for _ in range(20):
        for future in services.generation_poll_batch(generation_ids=services.generation_claim_due(limit=50)):
            result = future.result()
            if isinstance(result, Finished):
                return result
    raise AssertionError("the job never finished at fal")


@pytest.mark.parametrize("stopper", ["cancel", "account_delete"])
def test_a_copy_a_dead_worker_left_is_owed_by_the_stop_and_one_worker_pass_removes_it(
    user, fake_fal, fake_cloudinary, stopper, django_capture_on_commit_callbacks
):
    generation = start_generation(user, PresetFactory(model_chain=[FAST_SDXL_I2I]))
    [(_, _, copy)] = _copied_not_recorded(generation).kept  # and the worker dies: never recorded
    assert copy.key in fake_cloudinary.assets
    fake_cloudinary.reject_signatures = True

    with django_capture_on_commit_callbacks(execute=True):
        if stopper == "cancel":
            services.generation_cancel(generation_id=generation.pk, user=user)
        else:
            account_delete(user=user, confirm=user.email)

    [removal] = StoredRemoval.objects.filter(key=copy.key)
    assert (removal.where, removal.reason, removal.attempts) == ("cloudinary", "generation_stopped", 1)
    assert copy.key in fake_cloudinary.assets

    fake_cloudinary.reject_signatures = False
    run_upkeep()

    assert not StoredRemoval.objects.exists()
    assert copy.key not in fake_cloudinary.assets


@pytest.mark.django_db(transaction=True)
def test_a_copy_that_lands_after_the_cancel_is_owed_by_the_worker_that_lost(user, fake_fal, fake_cloudinary):
    generation = start_generation(user, PresetFactory(model_chain=[FAST_SDXL_I2I]))

    def owner_cancels_meanwhile(upload: dict) -> None:
        # On the fake's thread, while Cloudinary fetches fal's file: the cancel's own
        # removal finds nothing there yet, and is done.
        try:
            services.generation_cancel(generation_id=generation.pk, user=user)
        finally:
            connection.close()
        fake_cloudinary.reject_signatures = True  # then Cloudinary refuses for a while

    fake_cloudinary.before_upload = owner_cancels_meanwhile
    run_worker(generation)  # copies the result, then loses the recording to the cancel
    fake_cloudinary.before_upload = None

    assert generation.status == Generation.Status.CANCELED
    [copied] = fake_cloudinary.assets
    [removal] = StoredRemoval.objects.all()
    assert (removal.key, removal.reason, removal.attempts) == (copied, "generation_stopped", 1)

    fake_cloudinary.reject_signatures = False
    run_upkeep()

    assert not StoredRemoval.objects.exists()
    assert not fake_cloudinary.assets


@pytest.mark.django_db(transaction=True)
def test_a_copy_owed_again_while_the_cancels_removal_waits_for_its_answer_stays_owed(user, fake_fal, fake_cloudinary):
    """A cancel racing completion (CI saw it once on PostgreSQL): the cancel's removal
    asks Cloudinary before the worker's copy has landed there, the copy lands, and the
    worker, losing the recording, owes the same name again while that first try still
    waits for its answer. The first try's "not found" must not settle the newer debt."""
    generation = start_generation(user, PresetFactory(model_chain=[FAST_SDXL_I2I]))
    finished = _copied_not_recorded(generation)
    [(_, _, copy)] = finished.kept
    # Cloudinary is still fetching fal's file: the asset is not there yet.
    landing = fake_cloudinary.assets.pop(copy.key), fake_cloudinary.asset_bytes.pop(copy.key)

    def copy_lands_and_the_worker_loses(fields: dict) -> None:
        # On the fake's thread, after the cancel's destroy found nothing, before it answers.
        fake_cloudinary.after_destroy = None
        fake_cloudinary.assets[copy.key], fake_cloudinary.asset_bytes[copy.key] = landing
        fake_cloudinary.reject_signatures = True  # the worker's own try is refused
        try:
            services.generations_finish(finished=[finished])
        finally:
            connection.close()
            fake_cloudinary.reject_signatures = False

    fake_cloudinary.after_destroy = copy_lands_and_the_worker_loses
    services.generation_cancel(generation_id=generation.pk, user=user)

    assert copy.key in fake_cloudinary.assets
    [removal] = StoredRemoval.objects.filter(key=copy.key)
    assert (removal.reason, removal.attempts) == ("generation_stopped", 1)

    run_upkeep()

    assert not StoredRemoval.objects.exists()
    assert copy.key not in fake_cloudinary.assets


@pytest.mark.parametrize("owner_action", ["delete", "make_private"])
@pytest.mark.django_db(transaction=True)
def test_a_second_copy_that_lands_after_the_owner_deleted_or_moved_the_image_is_removed(
    user, fake_fal, fake_cloudinary, owner_action
):
    """Two copiers of one job: the poller's check copies fal's answer while fal's webhook
    stores it and makes the job due again, so a second round copies what the webhook
    stored. The first records the success, and the owner deletes the image (its removal
    is done) or makes it private (it moves off its public name), while Cloudinary still
    fetches the second copy. That copy lands under the image's first name, which no row
    points to any more: its copier, losing the recording, must owe it."""
    generation = start_generation(user, PresetFactory(model_chain=[FAST_SDXL_I2I]))
    polled = _copied_not_recorded(generation)
    [(_, _, copy)] = polled.kept
    attempt = polled.attempt
    result = {"images": [{"url": f"{fake_fal.base_url}/files/{attempt.fal_job_id}/0.png"}]}
    assert services.generation_webhook(request_id=attempt.fal_job_id, status="OK", payload=result) == "completed"

    def first_records_then_the_owner_acts(upload: dict) -> None:
        # On the fake's thread, while Cloudinary fetches fal's file for the second copier.
        fake_cloudinary.before_upload = None
        try:
            services.generations_finish(finished=[polled])
            media = Media.objects.get(generation=generation)
            if owner_action == "delete":
                services.media_delete(user=user, media_id=media.pk)
            else:
                services.media_set_public(user=user, media_id=media.pk, is_public=True)
                services.media_set_public(user=user, media_id=media.pk, is_public=False)
        finally:
            connection.close()
        assert copy.key not in fake_cloudinary.assets  # removed, or moved to a fresh name

    fake_cloudinary.before_upload = first_records_then_the_owner_acts
    stored = _copied_not_recorded(generation)  # the second claim copies what the webhook stored
    fake_cloudinary.before_upload = None
    assert copy.key in fake_cloudinary.assets
    services.generations_finish(finished=[stored])  # lost: the generation succeeded already

    generation.refresh_from_db()
    assert generation.status == Generation.Status.SUCCEEDED
    run_upkeep()
    assert copy.key not in fake_cloudinary.assets, "a copy no row points to, owed by nobody"
    assert not StoredRemoval.objects.exists()
    if owner_action == "delete":
        assert not Media.objects.filter(generation=generation).exists()
        assert not fake_cloudinary.assets
    else:
        media = Media.objects.get(generation=generation)
        assert not media.is_public and media.storage_key != copy.key
        assert list(fake_cloudinary.assets) == [media.storage_key]


@pytest.mark.django_db(transaction=True)
def test_an_image_the_webhook_stored_and_the_owner_deleted_while_it_was_copied_stays_deleted(
    user, fake_fal, fake_cloudinary
):
    """fal's webhook stores the result (the image is listed at fal's address at once)
    and the worker copies it; the owner deletes the image while Cloudinary fetches it.
    Recording the success must not bring the deleted image back, and its copy, which no
    row points to, is owed."""
    generation = start_generation(user, PresetFactory(model_chain=[FAST_SDXL_I2I]))
    services.generation_poll_due(limit=10)  # submitted
    fake_fal.complete_all()
    attempt = generation.attempts.get()
    result = {"images": [{"url": f"{fake_fal.base_url}/files/{attempt.fal_job_id}/0.png"}]}
    assert services.generation_webhook(request_id=attempt.fal_job_id, status="OK", payload=result) == "completed"
    stored = Media.objects.get(generation=generation)
    assert not stored.persisted

    def owner_deletes_it_meanwhile(upload: dict) -> None:
        # On the fake's thread, while Cloudinary fetches fal's file for the worker.
        fake_cloudinary.before_upload = None
        try:
            services.media_delete(user=user, media_id=stored.pk)
        finally:
            connection.close()

    fake_cloudinary.before_upload = owner_deletes_it_meanwhile
    run_worker(generation)
    fake_cloudinary.before_upload = None

    assert generation.status == Generation.Status.SUCCEEDED
    assert not Media.objects.filter(generation=generation).exists(), "the deleted image came back"
    run_upkeep()
    assert not fake_cloudinary.assets, "a copy no row points to, owed by nobody"
    assert not StoredRemoval.objects.exists()


def _canceled_with_its_copies_owed(user, fake_cloudinary) -> Generation:
    """A generation canceled after a worker copied its result, while Cloudinary refused
    the removal: the stop's removal of its copies stays owed."""
    generation = start_generation(user, PresetFactory(model_chain=[FAST_SDXL_I2I]))
    _copied_not_recorded(generation)
    fake_cloudinary.reject_signatures = True
    services.generation_cancel(generation_id=generation.pk, user=user)
    assert StoredRemoval.objects.filter(reason="generation_stopped").exists()
    fake_cloudinary.reject_signatures = False
    return generation


def test_a_generation_retried_after_its_stop_keeps_the_copies_it_makes(user, fake_fal, fake_cloudinary, staff):
    """A staff retry copies its images under the names the stop owed: they are in use
    again, and the owed removal is dropped rather than done."""
    generation = _canceled_with_its_copies_owed(user, fake_cloudinary)

    services.generation_retry(generation_id=generation.pk, by=staff)
    run_worker(generation)
    run_upkeep()

    assert generation.status == Generation.Status.SUCCEEDED
    media = generation.media.get()
    assert media.persisted and media.storage_key in fake_cloudinary.assets
    assert not StoredRemoval.objects.exists()


# --- Deleting while a copy retry lands (PostgreSQL: real row locks) ---------------------------


@pytest.mark.parametrize("deleter", ["media_delete", "account_delete"])
@pytest.mark.postgres_only
@pytest.mark.django_db(transaction=True)
def test_deleting_an_image_while_its_copy_retry_commits_owes_the_copy(user, fake_fal, fake_cloudinary, deleter):
    if connection.vendor != "postgresql":
        pytest.skip(
            "PostgreSQL only: SQLite runs one writing transaction at a time, so the deletion could never "
            "read the image while the copy retry's write is still to commit"
        )
    fake_cloudinary.fail_uploads(status=500, times=1)  # the first copy fails: a retry is owed
    generation = start_generation(user, PresetFactory(model_chain=[FAST_SDXL_I2I]))
    run_worker(generation)
    media = generation.media.get()
    assert generation.status == Generation.Status.SUCCEEDED and not media.persisted

    failures: list[Exception] = []

    def delete() -> None:
        try:
            if deleter == "media_delete":
                services.media_delete(user=user, media_id=media.pk)
            else:
                account_delete(user=user, confirm=user.email)
        except Exception as exc:  # reported below, not lost in the thread
            failures.append(exc)
        finally:
            connection.close()

    deleting = threading.Thread(target=delete)
    with transaction.atomic():
        # The worker's copy retry has copied the image and written the row (the one
        # UPDATE of persistence.persist, which media_persist runs), not committed yet.
        assert persistence.persist(Media.objects.select_related("generation").get(pk=media.pk)).surplus == ""
        deleting.start()
        # The deletion reads the image, then waits for the retry's row lock: to delete it
        # (it read the row as it was, not copied) or, locking it first, to read it.
        deadline = time.monotonic() + 10
        while not someone_waits_for_a_lock_held_here():
            assert time.monotonic() < deadline, "the deletion never waited for the copy retry"
            time.sleep(0.02)
    deleting.join(20)
    assert not failures, [str(failure) for failure in failures]

    assert not Media.objects.filter(pk=media.pk).exists()
    run_upkeep()
    assert not fake_cloudinary.assets, "the retry's copy stays at Cloudinary, owed by nobody"


def test_a_retry_forgets_the_removals_its_stop_owed_so_a_fresh_copy_is_never_removed(
    user, fake_fal, fake_cloudinary, staff
):
    """The retry copies to the same derived names before it records a row; a removal the
    stop still owed, retried in between, found no row pointing to the fresh copy and
    removed it: the image the user then sees would be gone."""
    import time_machine

    generation = _canceled_with_its_copies_owed(user, fake_cloudinary)

    services.generation_retry(generation_id=generation.pk, by=staff)
    assert not StoredRemoval.objects.exists()
    finished = _copied_not_recorded(generation)  # the retry's copy, not recorded yet
    [(_, _, copy)] = finished.kept
    with time_machine.travel(timezone.now() + dt.timedelta(hours=2), tick=False):
        for removal_id in services.stored_removals_due(limit=50):  # the worker's removal retries
            services.stored_removal_attempt(removal_id=removal_id)
    services.generations_finish(finished=[finished])

    assert copy.key in fake_cloudinary.assets
    generation.refresh_from_db()
    assert generation.status == Generation.Status.SUCCEEDED
    assert generation.media.get().storage_key == copy.key
