""" "Email me when it's done" and staff actions: a retry's end is told, an email queued for
the end before it never describes the run that followed, and a staff refund that fails a
running generation is told like any failure."""

from __future__ import annotations

import pytest
from django.urls import reverse

from generation.models import Generation
from generation.registry import FAST_SDXL_I2I
from generation.tests.pipeline_helpers import failed_with_its_email_owed, run_worker, staff_retry_form, start_generation
from presets.tests.factories import PresetFactory
from tests.tasks import run_tasks

pytestmark = pytest.mark.django_db

CHANGELIST = reverse("admin:generation_generation_changelist")


def staff_retry(staff_client, generation: Generation) -> None:
    response = staff_client.post(
        CHANGELIST,
        staff_retry_form(generation),
        follow=True,
    )
    assert [str(m) for m in response.context["messages"]] == ["Restarted 1 generation."]


def test_a_staff_retry_that_succeeds_emails_the_owner_again(
    fake_fal, fake_cloudinary, staff_client, user, mailoutbox, django_capture_on_commit_callbacks
):
    generation = failed_with_its_email_owed(fake_fal, user, django_capture_on_commit_callbacks)
    run_tasks()
    assert [m.subject for m in mailoutbox] == [f"We couldn't make your {generation.preset_name} image"]

    staff_retry(staff_client, generation)  # charged again: the owner still wants to hear how it ends
    fake_fal.reset()
    with django_capture_on_commit_callbacks(execute=True):
        run_worker(generation)
    assert generation.status == Generation.Status.SUCCEEDED
    run_tasks()

    assert len(mailoutbox) == 2
    assert "ready" in mailoutbox[1].subject


def test_an_email_queued_before_a_retry_does_not_report_the_retry_as_failed(
    fake_fal, fake_cloudinary, staff_client, user, mailoutbox, django_capture_on_commit_callbacks
):
    generation = failed_with_its_email_owed(fake_fal, user, django_capture_on_commit_callbacks)
    # Staff retry it before the worker got to the email about its failure.
    staff_retry(staff_client, generation)
    run_tasks()
    assert mailoutbox == [], "the generation is queued again and charged: not 'refunded'"

    fake_fal.reset()
    with django_capture_on_commit_callbacks(execute=True):
        run_worker(generation)
    assert generation.status == Generation.Status.SUCCEEDED
    run_tasks()
    assert [("ready" in m.subject) for m in mailoutbox] == [True]


def test_a_running_generation_staff_refund_emails_the_owner_that_it_failed(
    fake_fal, fake_cloudinary, staff_client, user, mailoutbox, django_capture_on_commit_callbacks
):
    generation, messages = _staff_act_on_a_running_generation(
        "refund_generations", fake_fal, staff_client, user, django_capture_on_commit_callbacks
    )
    assert messages == ["Refunded 1 generation."]
    assert generation.status == Generation.Status.FAILED
    run_tasks()

    # It failed (stopped by staff, refunded): the owner who asked is told, as for any failure.
    assert [m.subject for m in mailoutbox] == [f"We couldn't make your {generation.preset_name} image"]


def test_a_staff_cancel_emails_the_owner_in_their_language_that_our_team_stopped_it(
    fake_fal, fake_cloudinary, staff_client, user, mailoutbox, django_capture_on_commit_callbacks
):
    """The owner did not stop it: without an email they would wait for one that never comes."""
    user.language = "id"
    user.save(update_fields=["language"])
    generation, messages = _staff_act_on_a_running_generation(
        "cancel_generations", fake_fal, staff_client, user, django_capture_on_commit_callbacks
    )
    assert messages == ["Canceled 1 generation."]
    assert generation.status == Generation.Status.CANCELED
    run_tasks()

    assert len(mailoutbox) == 1, "the owner asked to be told how it ends"
    assert mailoutbox[0].subject == f"Tim kami menghentikan gambar {generation.preset_name} kamu"
    assert "kreditmu sudah dikembalikan" in mailoutbox[0].body


def test_the_owners_own_cancel_sends_no_email(
    api_client, fake_fal, user, mailoutbox, django_capture_on_commit_callbacks
):
    fake_fal.stick_in_queue(FAST_SDXL_I2I)
    generation = start_generation(user, PresetFactory(model_chain=[FAST_SDXL_I2I]), notify=True)
    run_worker(generation, rounds=3)

    with django_capture_on_commit_callbacks(execute=True):
        assert api_client.post(f"/api/generations/{generation.pk}/cancel").status_code == 200
    run_tasks()

    assert mailoutbox == [], "they stopped it themselves"


def _staff_act_on_a_running_generation(action, fake_fal, staff_client, user, capture_on_commit):
    """A generation of an owner who asked to be emailed, still at fal, then staff's admin
    `action` on it: the generation as it is after, and the messages staff saw."""
    fake_fal.stick_in_queue(FAST_SDXL_I2I)
    generation = start_generation(user, PresetFactory(model_chain=[FAST_SDXL_I2I]), notify=True)
    run_worker(generation, rounds=3)
    assert generation.status == Generation.Status.RUNNING

    with capture_on_commit(execute=True):
        response = staff_client.post(
            CHANGELIST,
            {"action": action, "index": "0", "_selected_action": [str(generation.pk)], "apply": "1"},
            follow=True,
        )
    generation.refresh_from_db()
    return generation, [str(m) for m in response.context["messages"]]
