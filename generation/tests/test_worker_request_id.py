"""The worker's log lines about a generation carry the id of the web request that asked
for it, so an operator can follow one user action from the web's log line to the
worker's (stefna/logging_json.py, `log.working_on`)."""

from __future__ import annotations

import json
import logging
from contextlib import contextmanager

import pytest
from django.db import connection

from credits import ledger
from generation.models import Attempt, Generation
from generation.registry import FAST_SDXL_I2I
from generation.tests.pipeline_helpers import Inline, staff_retry_form, start_generation
from generation.worker import Poller
from presets.tests.factories import PresetFactory
from stefna.logging_json import JsonFormatter, RequestContextFilter

from .api_support import photo
from .test_admin_actions import CHANGELIST, job

pytestmark = pytest.mark.django_db


@pytest.fixture
def style(db):
    return PresetFactory(slug="oil", model_chain=[FAST_SDXL_I2I], requires_prompt=False)


class Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.INFO)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def records():
    """Every log record, stamped as production's handler stamps them (request_id, user_id)."""
    handler = Collect()
    handler.addFilter(RequestContextFilter())
    root, generation = logging.getLogger(), logging.getLogger("generation")
    previous = generation.level
    root.addHandler(handler)
    generation.setLevel(logging.INFO)
    yield handler.records
    root.removeHandler(handler)
    generation.setLevel(previous)


def requested(client, user, *, request_id: str) -> Generation:
    """A generation asked for over the API, through a trusted proxy that sent `request_id`."""
    ledger.ensure_daily_allowance(user=user)
    client.force_login(user)
    response = client.post("/api/generations", {"image": photo(), "preset": "oil"}, HTTP_X_REQUEST_ID=request_id)
    assert response.status_code == 202, response.content
    assert response["X-Request-ID"] == request_id
    # An operator's field, not the API's.
    assert request_id not in response.content.decode()
    return Generation.objects.get(pk=response.json()["id"])


@pytest.fixture
def worker_round():
    """One round of the worker's poller, each job run at once in the test's thread (so
    the jobs of a round follow each other on one thread, as on a busy pool thread)."""
    poller = Poller(worker_id="trace", threads=2)
    return lambda: poller._round(Inline())


def lines_about(records, generation: Generation) -> list[logging.LogRecord]:
    return [record for record in records if str(generation.pk) in record.getMessage()]


def test_the_workers_lines_about_a_generation_carry_the_id_of_the_request_that_asked_for_it(
    client, user, style, fake_fal, records, settings, worker_round
):
    settings.TRUSTED_PROXY_COUNT = 1
    generation = requested(client, user, request_id="web-7f3a")
    records.clear()  # from here on, only the worker

    for _ in range(10):
        worker_round()
        generation.refresh_from_db()
        if generation.is_final:
            break
    worker_round()  # records what the last round finished

    generation.refresh_from_db()
    assert generation.status == Generation.Status.SUCCEEDED
    about = lines_about(records, generation)
    messages = " | ".join(record.getMessage() for record in about)
    # From its start to its success, and in between fal's acceptance of it.
    assert "-> running (generations_start)" in messages and "-> succeeded (generations_finish)" in messages
    assert "accepted it as" in messages
    assert {record.request_id for record in about} == {"web-7f3a"}
    # Lines written while it is worked on carry the id even when they do not name it.
    [copied] = [record for record in records if "persisted at" in record.getMessage()]
    assert copied.request_id == "web-7f3a"
    assert {record.request_id for record in records} <= {"web-7f3a", None}


def test_two_generations_handled_in_one_round_keep_their_own_ids(
    client, user, other_user, style, fake_fal, records, settings, worker_round
):
    settings.TRUSTED_PROXY_COUNT = 1
    first = requested(client, user, request_id="web-first")
    client.logout()
    second = requested(client, other_user, request_id="web-second")
    records.clear()

    worker_round()  # both are started in this round, one after the other on one thread

    for generation in (first, second):
        generation.refresh_from_db()
        assert generation.status == Generation.Status.RUNNING
    first_lines, second_lines = lines_about(records, first), lines_about(records, second)
    assert len(first_lines) >= 2 and len(second_lines) >= 2  # started and sent to fal
    assert {record.request_id for record in first_lines} == {"web-first"}
    assert {record.request_id for record in second_lines} == {"web-second"}

    records.clear()
    worker_round()  # both checked (finished at fal) in one round
    worker_round()  # and recorded together
    for generation in (first, second):
        generation.refresh_from_db()
        assert generation.status == Generation.Status.SUCCEEDED
    assert {record.request_id for record in lines_about(records, first)} == {"web-first"}
    assert {record.request_id for record in lines_about(records, second)} == {"web-second"}
    assert any("succeeded" in record.getMessage() for record in lines_about(records, second))


def test_a_generation_no_request_asked_for_leaves_its_lines_without_one(user, style, fake_fal, records, worker_round):
    generation = start_generation(user, style)  # a shell or a command: no request
    worker_round()

    about = lines_about(records, generation)
    assert about and {record.request_id for record in about} == {None}


def test_after_a_staff_retry_the_workers_lines_carry_the_staff_requests_id(
    staff_client, fake_fal, records, settings, worker_round
):
    settings.TRUSTED_PROXY_COUNT = 1
    generation = job(Generation.Status.FAILED, settle="refund")
    Generation.objects.filter(pk=generation.pk).update(origin_request_id="web-long-ago")
    response = staff_client.post(
        CHANGELIST,
        staff_retry_form(generation),
        HTTP_X_REQUEST_ID="staff-9c",
    )
    assert response.status_code == 302
    records.clear()

    worker_round()

    about = lines_about(records, generation)
    assert any("-> running" in record.getMessage() for record in about)
    assert {record.request_id for record in about} == {"staff-9c"}


def test_the_done_email_tasks_line_carries_the_id_of_the_request_that_asked(user, records):
    from generation.notify import generation_notify_send
    from generation.tests.factories import GenerationFactory

    generation = GenerationFactory(
        user=user, status=Generation.Status.SUCCEEDED, notify=True, origin_request_id="web-mail-1"
    )

    assert generation_notify_send(generation_id=str(generation.pk))

    [line] = [record for record in records if record.getMessage().endswith("owner notified")]
    assert line.request_id == "web-mail-1"
    later = logging.getLogger("generation")
    later.info("after the email")
    assert records[-1].request_id is None, "the id is the task's only while it works on that job"


@contextmanager
def attempts_refused_for(generation: Generation):
    """The database refuses to record an attempt for `generation` (a trigger): a fault in
    the middle of a batch's transaction, as a constraint or a hiccup would be."""
    table = Attempt._meta.db_table
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(
                "CREATE FUNCTION refuse_attempt() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                f"IF NEW.generation_id = '{generation.pk}' THEN RAISE EXCEPTION 'refused for the test'; END IF; "
                "RETURN NEW; END $$"
            )
            cursor.execute(
                f"CREATE TRIGGER refuse_attempt BEFORE INSERT ON {table} FOR EACH ROW EXECUTE FUNCTION refuse_attempt()"
            )
        else:
            cursor.execute(
                f"CREATE TRIGGER refuse_attempt BEFORE INSERT ON {table} "
                f"WHEN NEW.generation_id = '{generation.pk.hex}' BEGIN SELECT RAISE(ABORT, 'refused for the test'); END"
            )
    yield
    with connection.cursor() as cursor:
        cursor.execute(f"DROP TRIGGER refuse_attempt{' ON ' + table if connection.vendor == 'postgresql' else ''}")
        if connection.vendor == "postgresql":
            cursor.execute("DROP FUNCTION refuse_attempt()")


def test_a_batch_that_failed_names_every_generation_and_request_in_its_line(
    client, user, other_user, style, fake_fal, records, settings, worker_round
):
    """No one request id can be bound around a line about a whole batch, so the line names
    each generation and the id of each request: grepping one request's id finds it too."""
    settings.TRUSTED_PROXY_COUNT = 1
    first = requested(client, user, request_id="web-batch-1")
    client.logout()
    second = requested(client, other_user, request_id="web-batch-2")
    records.clear()

    with attempts_refused_for(second):
        worker_round()

    [batch] = [record for record in records if "together failed" in record.getMessage()]
    assert sorted(batch.generation_ids) == sorted([str(first.pk), str(second.pk)])  # type: ignore[attr-defined]
    assert batch.request_ids == ["web-batch-1", "web-batch-2"]  # type: ignore[attr-defined]
    assert batch.exc_info is not None  # the traceback, once
    # ...and in the JSON log, as fields of the line.
    written = json.loads(JsonFormatter().format(batch))
    assert written["request_ids"] == ["web-batch-1", "web-batch-2"]
    assert sorted(written["generation_ids"]) == sorted([str(first.pk), str(second.pk)])
    # One by one, the generation the fault is not about starts.
    first.refresh_from_db()
    assert first.status == Generation.Status.RUNNING
    assert {record.request_id for record in lines_about(records, first)} == {"web-batch-1"}
    # The one the fault is about fails again on its own: one line, under its own request's
    # id, and it waits to be looked at again (nothing charged twice, nothing lost).
    [alone] = [record for record in records if "advancing failed" in record.getMessage()]
    assert alone.request_id == "web-batch-2" and str(second.pk) in alone.getMessage()
    assert len([record for record in records if "together failed" in record.getMessage()]) == 1
    second.refresh_from_db()
    assert second.status == Generation.Status.QUEUED
