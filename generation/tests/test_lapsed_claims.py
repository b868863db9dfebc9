"""A worker whose claim on a generation ran out (fal was slow to answer it) must not
move the job on: by then another round holds it.

Each test holds one of fake fal's answers (`after_answer`) while the claim lapses and
another round claims the job and works on it, then lets the stale answer through.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from typing import Any

import pytest
from django.utils import timezone

from generation import services
from generation.models import Attempt, Generation
from generation.registry import FAST_SDXL_I2I, REALISTIC_VISION
from generation.tests.pipeline_helpers import run_worker, start_generation
from presets.tests.factories import PresetFactory
from tests.databases import thread_recording

pytestmark = pytest.mark.django_db(transaction=True)

WAIT = 10


class Held:
    """Holds fal's first answer to a request matching (method, path suffix) until released."""

    def __init__(self, method: str, suffix: str) -> None:
        self.method, self.suffix = method, suffix
        self.held = threading.Event()
        self.release = threading.Event()
        self._taken = False
        self._lock = threading.Lock()

    def matches(self, method: str, path: str) -> bool:
        with self._lock:
            if self._taken or method != self.method or not path.endswith(self.suffix):
                return False
            self._taken = True
            return True

    def hold(self) -> None:
        self.held.set()
        assert self.release.wait(WAIT)


def hold_answers(fake_fal: Any, *holds: Held) -> None:
    def after_answer(method: str, path: str) -> None:
        for held in holds:
            if held.matches(method, path):
                held.hold()
                return

    fake_fal.after_answer = after_answer


@pytest.mark.parametrize("stale_answer", ["still in the queue", "now running", "a server error"])
def test_a_lapsed_status_check_does_not_cut_short_the_claim_of_the_round_that_falls_over(user, fake_fal, stale_answer):
    """fal slow twice: worker A's status call outlives its claim; meanwhile round B claims
    the job, times the attempt out and sends the next model (slow at fal too). A's stale
    answer ("still in the queue", "now running", or an error to retry shortly) must not make the
    job due again while B submits: a third round would send the next model a second
    time (paid at fal, then canceled)."""
    fake_fal.manual = True
    preset = PresetFactory(model_chain=[FAST_SDXL_I2I, REALISTIC_VISION])
    generation = start_generation(user, preset)
    run_worker(rounds=1)
    first = generation.attempts.get()
    assert first.fal_job_id and first.status == Attempt.Status.QUEUED
    if stale_answer == "now running":  # news to record: the attempt's state and a log line
        fake_fal.advance(first.fal_job_id, steps=2)
    if stale_answer == "a server error":
        fake_fal.fail_status("fal-ai/fast-sdxl", status=500, times=1)  # A's call only
    status_of_first = Held("GET", f"/requests/{first.fal_job_id}/status")
    submit_of_next = Held("POST", f"/{REALISTIC_VISION}")
    hold_answers(fake_fal, status_of_first, submit_of_next)

    Generation.objects.filter(pk=generation.pk).update(next_check_at=timezone.now())
    a: list[Any] = []
    worker_a = thread_recording(lambda: services.generation_poll_due(limit=10), a)
    worker_a.start()
    assert status_of_first.held.wait(WAIT)
    # A's claim runs out while fal keeps it waiting; by now its attempt has timed out.
    Generation.objects.filter(pk=generation.pk).update(next_check_at=timezone.now())
    Attempt.objects.filter(pk=first.pk).update(started_at=timezone.now() - dt.timedelta(hours=1))
    b: list[Any] = []
    worker_b = thread_recording(lambda: services.generation_poll_due(limit=10), b)
    worker_b.start()
    assert submit_of_next.held.wait(WAIT)
    leased_until = Generation.objects.get(pk=generation.pk).next_check_at
    assert leased_until > timezone.now() + dt.timedelta(seconds=30)  # B's claim

    status_of_first.release.set()  # A's stale answer: still in the queue
    worker_a.join(WAIT)
    assert a == [1]
    # Any time before B's claim runs out, no other round may take the job.
    taken = services.generation_claim_due(limit=10, now=leased_until - dt.timedelta(seconds=1))
    for future in services.generation_poll_batch(generation_ids=taken):
        future.result()
    submit_of_next.release.set()
    worker_b.join(WAIT)
    assert b == [1]

    assert len(fake_fal.submissions(REALISTIC_VISION)) == 1
    assert [job.canceled for job in fake_fal.jobs.values() if job.endpoint == REALISTIC_VISION] == [False]
    assert taken == []


def test_a_failure_fal_reports_after_the_claim_ran_out_sends_the_next_model_once(user, fake_fal, settings):
    """fal slow to answer a status check: worker A's claim runs out before fal's (real,
    final) error reaches it, and nobody has taken the job yet. A records the error and
    sends the next model, and fal is slow to accept that too; the job is due all the
    while (A's lease is in the past), so round B claims it, finds the next model's
    attempt not sent yet and sends it a second time (paid at fal, then canceled)."""
    fake_fal.manual = True
    fake_fal.error_on_completion(FAST_SDXL_I2I)
    preset = PresetFactory(model_chain=[FAST_SDXL_I2I, REALISTIC_VISION])
    generation = start_generation(user, preset)
    run_worker(rounds=1)
    first = generation.attempts.get()
    fake_fal.advance(first.fal_job_id, steps=3)  # done at fal, with an error
    status_of_first = Held("GET", f"/requests/{first.fal_job_id}/status")
    submit_of_next = Held("POST", f"/{REALISTIC_VISION}")
    hold_answers(fake_fal, status_of_first, submit_of_next)

    settings.PIPELINE_LEASE_SECONDS = 1  # A's claim, run out for real while fal holds its answer
    Generation.objects.filter(pk=generation.pk).update(next_check_at=timezone.now())
    a: list[Any] = []
    worker_a = thread_recording(lambda: services.generation_poll_due(limit=10), a)
    worker_a.start()
    assert status_of_first.held.wait(WAIT)
    leased_until = Generation.objects.get(pk=generation.pk).next_check_at
    while timezone.now() <= leased_until:
        time.sleep(0.05)
    settings.PIPELINE_LEASE_SECONDS = 90
    status_of_first.release.set()  # fal's error reaches A, its claim run out
    deadline = time.monotonic() + WAIT
    while not submit_of_next.held.is_set() and worker_a.is_alive() and time.monotonic() < deadline:
        time.sleep(0.01)
    if not submit_of_next.held.is_set():
        submit_of_next.release.set()  # A sent nothing: nothing of it to hold
    assert services.generation_poll_due(limit=10) <= 1  # round B
    submit_of_next.release.set()
    worker_a.join(WAIT)
    assert a == [1]

    assert len(fake_fal.submissions(REALISTIC_VISION)) == 1, "the next model was sent twice"
    assert [job.canceled for job in fake_fal.jobs.values() if job.endpoint == REALISTIC_VISION] == [False]
    attempts = list(generation.attempts.order_by("position").values_list("model", "status"))
    assert attempts == [(FAST_SDXL_I2I, Attempt.Status.FAILED), (REALISTIC_VISION, Attempt.Status.QUEUED)]
