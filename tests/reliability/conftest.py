"""Helpers for the fault-injection and crash tests: start a generation the way the API does,
run the worker's rounds in-process, and check the invariants every ending must keep."""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.conf import settings
from django.test import Client
from django.utils import timezone

from credits import ledger
from credits.models import CreditEntry
from credits.reconcile import find_ledger_problems
from credits.selectors import balance_of
from generation import services
from generation.images import validate_image
from generation.models import Attempt, Generation, Media
from generation.registry import FAST_SDXL_I2I, GHIBLIFY, REALISTIC_VISION
from presets.tests.factories import PresetFactory
from tests.databases import database_url
from tests.fakes.pytest_plugin import FAKE_FAL_KEY
from tests.images import make_jpeg

ROOT = Path(__file__).resolve().parents[2]
ONE_MODEL = [FAST_SDXL_I2I]
TWO_MODELS = [GHIBLIFY, REALISTIC_VISION]


@pytest.fixture
def funded(user):
    ledger.ensure_daily_allowance(user=user)
    return balance_of(user=user)


@pytest.fixture
def one_model_style(db):
    return PresetFactory(slug="fault-one", name="One model", prompt="{prompt}", model_chain=ONE_MODEL)


@pytest.fixture
def two_model_style(db):
    return PresetFactory(slug="fault-two", name="Two models", kind="ghibli_reaction", prompt="", model_chain=TWO_MODELS)


def start(user, style, *, prompt: str = "a lighthouse at dusk") -> Generation:
    image = validate_image(make_jpeg(160, 120))
    generation, created = services.generation_request(user=user, preset_slug=style.slug, image=image, prompt=prompt)
    assert created
    # What the worker's poller does with a queued generation, for this one only.
    services.generation_submit(generation_id=generation.pk)
    generation.refresh_from_db()
    return generation


def make_due() -> None:
    """Let time pass for the scheduler: every active job is due now (backoffs included)."""
    Generation.objects.filter(status__in=Generation.ACTIVE_STATUSES).update(next_check_at=timezone.now())


def age_attempts(seconds: float) -> None:
    """Let time pass for the time bounds: in-flight attempts started `seconds` earlier."""
    for attempt in Attempt.objects.filter(status__in=services.IN_FLIGHT):
        Attempt.objects.filter(pk=attempt.pk).update(started_at=attempt.started_at - dt.timedelta(seconds=seconds))


def run_worker(generation: Generation, *, rounds: int = 30, between=None) -> Generation:  # type: ignore[no-untyped-def]
    """The poller's rounds until the generation is final (time skipping over backoffs)."""
    for number in range(rounds):
        make_due()
        services.generation_poll_due(limit=100)
        generation.refresh_from_db()
        if generation.is_final:
            return generation
        if between is not None:
            between(number)
    return generation


def entries(generation: Generation, reason: str) -> int:
    return CreditEntry.objects.filter(generation=generation, reason=reason).count()


def api_view(user, generation: Generation) -> dict:
    client = Client()
    client.force_login(user)
    response = client.get(f"/api/generations/{generation.pk}")
    assert response.status_code == 200, response.content
    return response.json()


def assert_human_message(message: str) -> None:
    assert message and message.strip()
    assert "Traceback" not in message and "Exception" not in message
    assert len(message) < 1500
    assert "fake-key-secret" not in message


def assert_succeeded(user, generation: Generation, *, funded: int) -> list[Media]:
    """Succeeded: charged once (reserve + capture), images present, each viewable."""
    generation.refresh_from_db()
    assert generation.status == Generation.Status.SUCCEEDED, (generation.status, generation.error_message)
    assert find_ledger_problems(users=[user]) == []
    assert entries(generation, CreditEntry.Reason.RESERVE) == 1
    assert entries(generation, CreditEntry.Reason.CAPTURE) == 1
    assert entries(generation, CreditEntry.Reason.REFUND) == 0
    assert balance_of(user=user) == funded - generation.cost
    media = list(Media.objects.filter(generation=generation))
    assert media, "a succeeded generation has images"
    for item in media:
        assert item.url
        # Until persisted, the image is served from fal's own URL: never from nowhere.
        assert item.persisted or item.url == item.original_url
    body = api_view(user, generation)
    assert body["status"] == "succeeded" and body["error"] is None
    assert len(body["images"]) == len(media)
    return media


def assert_failed_and_refunded(user, generation: Generation, *, funded: int, status: str = "failed") -> dict:
    """Failed (or canceled): refunded exactly once, a clear message, nothing charged."""
    generation.refresh_from_db()
    assert generation.status == status, (generation.status, generation.error_message)
    assert find_ledger_problems(users=[user]) == []
    assert entries(generation, CreditEntry.Reason.RESERVE) == 1
    assert entries(generation, CreditEntry.Reason.REFUND) == 1
    assert entries(generation, CreditEntry.Reason.CAPTURE) == 0
    assert balance_of(user=user) == funded
    assert not Attempt.objects.filter(generation=generation, status__in=services.IN_FLIGHT).exists()
    body = api_view(user, generation)
    assert body["status"] == status
    assert body["error"] is not None
    assert_human_message(body["error"]["message"])
    return body


# --- Real worker processes ---------------------------------------------------------------


def child_env() -> dict[str, str]:
    """A production-like process on the test database, talking to the fake fal."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("PYTEST")}
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "stefna.settings",
            "DATABASE_URL": database_url(),
            "DEBUG": "0",
            "SECRET_KEY": "crash-test-secret-key",
            "FAL_KEY": FAKE_FAL_KEY,  # FAL_QUEUE_RUN_HOST and SSL_CERT_FILE point at the fake already
            "MEDIA_ROOT": str(settings.MEDIA_ROOT),
            "FAL_POLL_INTERVAL_SECONDS": "0.1",
            # A killed worker's claim must expire soon for the next one to take over, but
            # not before a slow fal call on a loaded machine returns (a shorter lease than
            # the longest call lets a second round claim the same job and submit it again).
            "PIPELINE_LEASE_SECONDS": "5",
            "LOG_LEVEL": "INFO",
        }
    )
    return env


class Worker:
    def __init__(self, log: Path) -> None:
        self.log = log
        self.process = subprocess.Popen(  # noqa: S603
            [sys.executable, "manage.py", "db_worker", "--interval", "0.1", "--no-startup-delay", "--no-reload"],
            cwd=ROOT,
            env=child_env(),
            stdout=log.open("ab"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def kill(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-3000:]


@pytest.fixture
def workers(tmp_path):
    started: list[Worker] = []

    def start() -> Worker:
        worker = Worker(tmp_path / f"worker-{len(started)}.log")
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.kill()


def wait_for(condition, *, timeout: float, what: str, worker: Worker | None = None):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        if worker is not None and worker.process.poll() is not None:
            raise AssertionError(f"the worker exited while waiting for {what}:\n{worker.output()}")
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}" + (f":\n{worker.output()}" if worker else ""))
