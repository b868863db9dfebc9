"""Each state transition of a Generation has one writer, and every path goes through it.

Two kinds of proof. The source: only one function in generation/ writes each status
(a conditional UPDATE with `status=`), and only those settle money. The behaviour: each
writer logs one `generation.transitions` line naming itself, and every path (poller,
webhook, cancel from the API and the page, admin actions, the sweeper) shows exactly that
line, once.
"""

from __future__ import annotations

import ast
import datetime as dt
from pathlib import Path

import pytest
from django.urls import reverse
from django.utils import timezone

from generation import services
from generation.models import Attempt, Generation
from generation.registry import FAST_SDXL_I2I, GHIBLIFY
from generation.tests.pipeline_helpers import run_worker, staff_retry_form, start_generation
from presets.tests.factories import PresetFactory

pytestmark = pytest.mark.django_db

GENERATION_APP = Path(__file__).resolve().parent.parent
S = Generation.Status


# --- The source -----------------------------------------------------------------------------


def _functions_calling(predicate) -> set[str]:  # type: ignore[no-untyped-def]
    """`module.function` of every function in generation/ (no tests, no migrations) with a call matching `predicate`."""
    found = set()
    for path in GENERATION_APP.rglob("*.py"):
        relative = path.relative_to(GENERATION_APP)
        if relative.parts[0] in ("tests", "migrations"):
            continue
        tree = ast.parse(path.read_text())
        for function in ast.walk(tree):
            if not isinstance(function, ast.FunctionDef):
                continue
            if any(isinstance(node, ast.Call) and predicate(node) for node in ast.walk(function)):
                found.add(f"{'.'.join(relative.with_suffix('').parts)}.{function.name}")
    return found


def _writes_generation_status(call: ast.Call) -> bool:
    """`Generation.objects….update(status=…)`"""
    if not (isinstance(call.func, ast.Attribute) and call.func.attr == "update"):
        return False
    if not any(keyword.arg == "status" for keyword in call.keywords):
        return False
    return "Generation.objects" in ast.unparse(call.func.value)


def _calls_ledger(*names: str):  # type: ignore[no-untyped-def]
    def predicate(call: ast.Call) -> bool:
        return ast.unparse(call.func) in {f"ledger.{name}" for name in names}

    return predicate


def test_each_generation_status_is_written_by_one_function():
    assert _functions_calling(_writes_generation_status) == {
        "services.submit.generations_start",  # queued → running
        "services.finish._record",  # running → succeeded (generations_finish)
        "services.stop.generation_stop",  # → failed / → canceled
        "services.request.generation_retry",  # failed / canceled → queued (staff)
        "services.schedule.generation_requeue",  # running → queued (fal's 429: waits for a slot again)
    }


def _fails_an_attempt(call: ast.Call) -> bool:
    """`Attempt.objects….update(status=Attempt.Status.FAILED …)` (or `status=attempts_end_as`)"""
    if not (isinstance(call.func, ast.Attribute) and call.func.attr in ("update", "create")):
        return False
    if "Attempt.objects" not in ast.unparse(call.func.value):
        return False
    status = next((keyword.value for keyword in call.keywords if keyword.arg == "status"), None)
    return status is not None and "FAILED" in ast.unparse(status)


def test_an_attempt_is_failed_by_one_function():
    assert _functions_calling(_fails_an_attempt) == {
        "services.stop.fail_attempt",  # in flight (or unusable after success) → failed
        "services.submit.submit_model",  # recorded failed at once: its request could not be built
    }
    # A stop ends its in-flight attempts with the generation (`attempts_end_as`), in its own writer.


def test_money_moves_only_with_its_transition():
    # The ledger's refund, with what refunded purchases are owed of it (credits/payments/refunds.py).
    assert _functions_calling(lambda call: ast.unparse(call.func) == "generation_charge_refund") == {
        "services.stop.generation_stop"
    }
    assert _functions_calling(_calls_ledger("refund")) == set()
    assert _functions_calling(_calls_ledger("capture", "capture_many")) == {"services.finish._record"}
    # Images lost at fal after the capture (which is final) come back as a grant, once.
    assert _functions_calling(_calls_ledger("grant")) == {"services.media._image_lost"}
    assert _functions_calling(_calls_ledger("reserve")) == {
        "services.request.generation_request",
        "services.request.generation_retry",
    }


# --- The paths --------------------------------------------------------------------------------


@pytest.fixture
def transitions(caplog):
    caplog.set_level("INFO", logger="generation.transitions")

    def read(generation: Generation) -> list[tuple[str, str]]:
        return [
            (record.to, record.writer)
            for record in caplog.records
            if record.name == "generation.transitions" and record.generation_id == str(generation.pk)
        ]

    return read


def _one_model(user):  # type: ignore[no-untyped-def]
    return start_generation(user, PresetFactory(model_chain=[FAST_SDXL_I2I]))


def test_the_poller_starts_and_finishes_through_the_writers(user, fake_fal, transitions):
    generation = _one_model(user)

    run_worker(generation)

    assert generation.status == S.SUCCEEDED
    assert transitions(generation) == [("running", "generations_start"), ("succeeded", "generations_finish")]


def test_a_webhook_hands_its_answer_to_the_same_finish(client, user, fake_fal, transitions):
    fake_fal.manual = True
    generation = _one_model(user)
    run_worker(rounds=1)
    attempt = generation.attempts.get()
    fake_fal.advance(attempt.fal_job_id, steps=3)
    body, headers = fake_fal.webhook_request(attempt.fal_job_id)
    extra = {f"HTTP_{k.upper().replace('-', '_')}": v for k, v in headers.items() if k != "Content-Type"}

    response = client.post("/api/fal/webhook", data=body, content_type="application/json", **extra)

    assert response.json() == {"status": "completed"}
    generation.refresh_from_db()
    assert generation.status == S.RUNNING  # the webhook stored the answer; it finished nothing
    assert transitions(generation) == [("running", "generations_start")]
    run_worker(generation)
    assert generation.status == S.SUCCEEDED and generation.media.get().persisted
    assert transitions(generation) == [("running", "generations_start"), ("succeeded", "generations_finish")]


def test_every_model_failing_stops_through_the_writer(user, fake_fal, transitions):
    fake_fal.fail_submit(FAST_SDXL_I2I, status=422)
    generation = _one_model(user)

    run_worker(generation)

    assert generation.status == S.FAILED and generation.error_code == "all_models_failed"
    assert transitions(generation)[-1] == ("failed", "generation_stop")


def test_a_cancel_from_the_api_stops_through_the_writer(api_client, user, fake_fal, transitions):
    generation = _one_model(user)

    response = api_client.post(f"/api/generations/{generation.pk}/cancel")

    assert response.status_code == 200 and response.json()["status"] == "canceled"
    assert transitions(generation) == [("canceled", "generation_stop")]


def test_a_cancel_from_the_page_stops_through_the_writer(client, user, fake_fal, transitions):
    generation = _one_model(user)
    run_worker(rounds=1)  # running at fal
    client.force_login(user)

    response = client.post(reverse("generation_cancel", kwargs={"generation_id": generation.pk}))

    assert response.status_code == 302
    generation.refresh_from_db()
    assert generation.status == S.CANCELED
    assert transitions(generation) == [("running", "generations_start"), ("canceled", "generation_stop")]


@pytest.mark.parametrize(("action", "to"), [("cancel_generations", "canceled"), ("refund_generations", "failed")])
def test_the_admin_actions_stop_through_the_writer(staff_client, user, fake_fal, transitions, action, to):
    generation = _one_model(user)

    response = staff_client.post(
        reverse("admin:generation_generation_changelist"),
        {"action": action, "index": "0", "_selected_action": [str(generation.pk)], "apply": "1"},
    )

    assert response.status_code == 302
    generation.refresh_from_db()
    assert generation.status == to
    assert transitions(generation) == [(to, "generation_stop")]


def test_the_admin_retry_requeues_through_its_writer(staff_client, user, fake_fal, transitions):
    generation = _one_model(user)
    services.generation_cancel(generation_id=generation.pk, user=user)

    staff_client.post(
        reverse("admin:generation_generation_changelist"),
        staff_retry_form(generation),
    )
    run_worker(generation)

    assert generation.status == S.SUCCEEDED
    assert transitions(generation) == [
        ("canceled", "generation_stop"),
        ("queued", "generation_retry"),
        ("running", "generations_start"),
        ("succeeded", "generations_finish"),
    ]


def test_the_sweeper_stops_a_stuck_job_through_the_writer(user, fake_fal, settings, transitions):
    fake_fal.manual = True
    generation = start_generation(user, PresetFactory(model_chain=[GHIBLIFY]))
    run_worker(rounds=1)
    long_ago = timezone.now() - dt.timedelta(hours=3)
    Generation.objects.filter(pk=generation.pk).update(created_at=long_ago, started_at=long_ago)

    assert services.generation_sweep()["expired"] == 1

    generation.refresh_from_db()
    assert generation.status == S.FAILED and generation.error_code == "timeout"
    assert generation.attempts.get().status == Attempt.Status.FAILED
    assert transitions(generation) == [("running", "generations_start"), ("failed", "generation_stop")]
