"""Operator actions in the admin: retry, cancel, refund, re-persist. Refusals are messages, never 500s."""

from __future__ import annotations

import re
import uuid

import pytest
from django.urls import reverse
from django.utils import timezone

from credits import ledger
from credits.models import CreditEntry
from credits.selectors import balance_of
from generation.models import Attempt, Generation, Media
from generation.registry import FAST_SDXL_I2I, GHIBLIFY, REALISTIC_VISION
from generation.tests.factories import AttemptFactory, GenerationFactory, MediaFactory
from generation.tests.pipeline_helpers import run_worker, start_generation
from presets.tests.factories import PresetFactory
from stefna.accounts.tests.factories import UserFactory

CHANGELIST = reverse("admin:generation_generation_changelist")
MEDIA_CHANGELIST = reverse("admin:generation_media_changelist")
S = Generation.Status


def job(status: str, *, email: str = "ada@example.com", settle: str | None = None) -> Generation:
    """A generation in `status` whose credits were reserved, then settled as `settle` ("capture"/"refund")."""
    preset = PresetFactory(slug="action-style", model_chain=[GHIBLIFY, REALISTIC_VISION, FAST_SDXL_I2I])
    generation = GenerationFactory.create(
        user=UserFactory(email=email),
        preset=preset,
        status=status,
        current_model=GHIBLIFY,
        completed_at=None if status in Generation.ACTIVE_STATUSES else timezone.now(),
    )
    ledger.reserve(user=generation.user, generation=generation, amount=generation.cost)
    if settle == "capture":
        ledger.capture(generation=generation)
    elif settle == "refund":
        ledger.refund(generation=generation)
    return generation


def act(client, action: str, *generations: Generation, url: str = CHANGELIST):
    """Run an action through its confirmation step, if it has one."""
    response = client.post(
        url,
        {
            "action": action,
            "index": "0",
            "_selected_action": [str(g.pk) for g in generations],
            "apply": "1",
            "retry_key": str(uuid.uuid4()),  # the retry form's one-time key (other forms ignore it)
        },
        follow=True,
    )
    assert response.status_code == 200
    return [(message.level_tag, str(message)) for message in response.context["messages"]]


def refunds_of(generation: Generation) -> int:
    return CreditEntry.objects.filter(generation=generation, reason="refund").count()


# --- Refund ---------------------------------------------------------------------------------


def test_refund_stops_a_running_generation_and_gives_the_credits_back(staff_client, staff):
    generation = job(S.RUNNING)
    AttemptFactory(generation=generation, model=GHIBLIFY, status=Attempt.Status.RUNNING, fal_job_id="")
    before = balance_of(user=generation.user)
    assert act(staff_client, "refund_generations", generation) == [("success", "Refunded 1 generation.")]
    generation.refresh_from_db()
    assert generation.status == S.FAILED
    assert balance_of(user=generation.user) == before + generation.cost
    entry = CreditEntry.objects.get(generation=generation, reason="refund")
    assert entry.created_by == staff


def test_refunding_twice_is_refused_with_a_message(staff_client):
    generation = job(S.RUNNING)
    act(staff_client, "refund_generations", generation)
    balance = balance_of(user=generation.user)
    messages = act(staff_client, "refund_generations", generation)
    assert len(messages) == 1 and messages[0][0] == "error"
    assert messages[0][1].startswith(f"Generation {str(generation.pk)[:8]}: ")
    assert "already" in messages[0][1]
    assert refunds_of(generation) == 1
    assert balance_of(user=generation.user) == balance


def test_refunding_a_delivered_generation_is_refused(staff_client):
    generation = job(S.SUCCEEDED, settle="capture")
    [(level, _)] = act(staff_client, "refund_generations", generation)
    assert level == "error"
    assert refunds_of(generation) == 0


def test_refund_handles_the_refundable_and_reports_the_rest(staff_client):
    refundable = job(S.RUNNING, email="a@example.com")
    settled = job(S.FAILED, email="b@example.com", settle="refund")
    messages = act(staff_client, "refund_generations", refundable, settled)
    assert ("success", "Refunded 1 generation.") in messages
    assert [level for level, _ in messages].count("error") == 1
    assert refunds_of(refundable) == 1 and refunds_of(settled) == 1


# --- Retry ----------------------------------------------------------------------------------


def test_retry_restarts_a_failed_generation_from_the_first_model_and_reserves_again(staff_client):
    generation = job(S.FAILED, settle="refund")
    before = balance_of(user=generation.user)
    assert act(staff_client, "retry_generations", generation) == [("success", "Restarted 1 generation.")]
    generation.refresh_from_db()
    assert generation.status == S.QUEUED
    assert generation.error_code == ""
    assert balance_of(user=generation.user) == before - generation.cost
    assert CreditEntry.objects.filter(generation=generation, reason="reserve").count() == 2
    # The owner sees the log: it says staff retried it, without naming the staff member.
    last_log = generation.logs[-1]["message"]
    assert last_log.startswith("Retried by staff")
    assert "@" not in last_log


def test_retrying_a_succeeded_generation_is_refused_with_a_message(staff_client):
    generation = job(S.SUCCEEDED, settle="capture")
    before = balance_of(user=generation.user)
    [(level, text)] = act(staff_client, "retry_generations", generation)
    assert level == "error"
    assert "succeeded" in text
    generation.refresh_from_db()
    assert generation.status == S.SUCCEEDED
    assert balance_of(user=generation.user) == before


def test_retry_is_refused_when_the_owner_has_no_credits(staff_client):
    generation = job(S.FAILED, settle="refund")
    balance = balance_of(user=generation.user)
    ledger.grant(user=generation.user, amount=-balance, reason=CreditEntry.Reason.ADJUST, note="empty")
    [(level, text)] = act(staff_client, "retry_generations", generation)
    assert level == "error" and "credits" in text
    generation.refresh_from_db()
    assert generation.status == S.FAILED  # the restart was rolled back with the reservation


# --- Cancel ---------------------------------------------------------------------------------


def test_cancel_stops_a_queued_generation_and_refunds_it(staff_client):
    generation = job(S.QUEUED)
    before = balance_of(user=generation.user)
    assert act(staff_client, "cancel_generations", generation) == [("success", "Canceled 1 generation.")]
    generation.refresh_from_db()
    assert generation.status == S.CANCELED
    assert balance_of(user=generation.user) == before + generation.cost
    assert refunds_of(generation) == 1


def test_canceling_a_finished_generation_is_refused_with_a_message(staff_client):
    generation = job(S.SUCCEEDED, settle="capture")
    [(level, _)] = act(staff_client, "cancel_generations", generation)
    assert level == "error"
    generation.refresh_from_db()
    assert generation.status == S.SUCCEEDED


def test_actions_work_from_the_change_page(staff_client):
    generation = job(S.RUNNING)
    url = reverse("admin:generation_generation_change", args=[generation.pk])
    response = staff_client.post(
        url, {"CHANGE_FORM-action": "cancel_generations", "_selected_action": str(generation.pk), "apply": "1"}
    )
    assert response.status_code == 302 and response["Location"] == url
    generation.refresh_from_db()
    assert generation.status == S.CANCELED


# --- Persistence ----------------------------------------------------------------------------


def unpersisted(generation: Generation, fake_fal, index: int = 0) -> Media:
    source = f"{fake_fal.base_url}/files/{generation.pk}/{index}.png"
    return MediaFactory.create(generation=generation, index=index, persisted=False, url=source, original_url=source)


def test_persist_copies_unpersisted_images_to_cloudinary(staff_client, fake_fal, fake_cloudinary):
    generation = job(S.SUCCEEDED, settle="capture")
    media = unpersisted(generation, fake_fal)
    messages = act(staff_client, "persist_generation_media", generation)
    assert messages == [("success", "Persisted 1 image.")]
    media.refresh_from_db()
    assert media.persisted is True
    assert media.url == f"/images/{media.storage_key}"
    assert len(fake_cloudinary.uploads) == 1


def test_persist_from_the_media_admin_reports_an_image_that_cannot_be_saved(staff_client, fake_fal, fake_cloudinary):
    generation = job(S.SUCCEEDED, settle="capture")
    media = unpersisted(generation, fake_fal)
    fake_fal.expire_files()  # fal deleted the result: nothing left to copy
    messages = act(staff_client, "persist_media", media, url=MEDIA_CHANGELIST)
    assert messages == [("warning", "1 image is still not persisted: see its persist error.")]
    media.refresh_from_db()
    assert media.persisted is False
    assert media.persist_error.startswith("Source gone")


def test_persist_with_nothing_to_do_says_so(staff_client):
    generation = job(S.SUCCEEDED, settle="capture")
    MediaFactory(generation=generation, persisted=True)
    assert act(staff_client, "persist_generation_media", generation) == [
        ("info", "Every selected image is already persisted.")
    ]


def test_view_only_staff_can_look_but_not_act(client, db):
    from django.contrib.auth.models import Permission

    support = UserFactory(email="support@example.com", is_staff=True)
    support.user_permissions.add(*Permission.objects.filter(codename__in=["view_generation", "view_media"]))
    client.force_login(support)
    generation = job(S.RUNNING)
    page = client.get(reverse("admin:generation_generation_change", args=[generation.pk]))
    assert page.status_code == 200
    assert b"cancel_generations" not in page.content
    assert b"cancel_generations" not in client.get(CHANGELIST).content
    client.post(CHANGELIST, {"action": "cancel_generations", "index": "0", "_selected_action": [str(generation.pk)]})
    generation.refresh_from_db()
    assert generation.status == S.RUNNING


@pytest.mark.parametrize(
    ("action", "status", "settle", "asks"),
    [
        ("retry_generations", S.FAILED, "refund", "cost from its owner"),
        ("cancel_generations", S.RUNNING, None, "stopped for good"),
        ("refund_generations", S.RUNNING, None, "credits go back"),
    ],
)
def test_actions_that_move_credits_ask_first_and_list_the_jobs(staff_client, action, status, settle, asks):
    generation = job(status, settle=settle)
    before = (balance_of(user=generation.user), CreditEntry.objects.count())
    response = staff_client.post(CHANGELIST, {"action": action, "index": "0", "_selected_action": [str(generation.pk)]})
    page = response.content.decode()
    assert response.status_code == 200 and asks in page
    assert f"{str(generation.pk)[:8]} · ada@example.com" in page
    generation.refresh_from_db()
    assert generation.status == status
    assert (balance_of(user=generation.user), CreditEntry.objects.count()) == before


def test_a_retry_form_sent_again_after_the_retry_failed_does_not_charge_a_third_time(staff_client, user, fake_fal):
    """A double click, or the browser sending the retry form again, can land after the
    first retry already ended (a model that refuses at once fails it in a moment): the
    form's one-time key makes the second submit a no-op, not another run charged again."""
    fake_fal.fail_submit(FAST_SDXL_I2I, status=422)
    generation = run_worker(start_generation(user, PresetFactory(model_chain=[FAST_SDXL_I2I])))
    assert generation is not None and generation.status == S.FAILED
    form = staff_client.post(CHANGELIST, {"action": "retry_generations", "_selected_action": [str(generation.pk)]})
    hidden = re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', form.content.decode())
    submit = {**{name: value for name, value in hidden if name != "csrfmiddlewaretoken"}, "apply": "1"}
    submit["_selected_action"] = [str(generation.pk)]

    first = staff_client.post(CHANGELIST, submit, follow=True)
    assert [str(m) for m in first.context["messages"]] == ["Restarted 1 generation."]
    run_worker(generation)
    assert generation.status == S.FAILED  # the retry failed too, and was refunded
    again = staff_client.post(CHANGELIST, submit, follow=True)

    reservations = CreditEntry.objects.filter(generation=generation, reason="reserve").count()
    assert reservations == 2, "the same retry form charged the owner a third time"
    assert [(m.level_tag, str(m)) for m in again.context["messages"]] == [
        (
            "error",
            f"Generation {str(generation.pk)[:8]}: already retried (this form was sent before); nothing was done.",
        )
    ]
