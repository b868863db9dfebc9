""" "Email me when it's done" when the worker sending the email is killed mid-send
(SIGKILL as the mail server is given the message): the email is still owed, and the next
try sends it. At least once: see stefna/mail.py."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest
from django_tasks_db.models import DBTaskResult

from generation.models import Generation
from generation.registry import FAST_SDXL_I2I
from generation.tests.pipeline_helpers import run_worker, start_generation
from presets.tests.factories import PresetFactory
from tests.tasks import run_tasks, time_passes

from .conftest import ROOT, child_env

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def test_a_worker_killed_while_sending_the_owner_email_leaves_it_to_the_next_try(
    fake_fal, fake_smtp, user, django_capture_on_commit_callbacks
):
    fake_fal.fail_submit(FAST_SDXL_I2I, status=422)
    generation = start_generation(user, PresetFactory(model_chain=[FAST_SDXL_I2I]), notify=True)
    with django_capture_on_commit_callbacks(execute=True):
        run_worker(generation)
    assert generation.status == Generation.Status.FAILED

    worker: subprocess.Popen[bytes]
    fake_smtp.on_data = lambda: os.kill(worker.pid, signal.SIGKILL)
    env = child_env() | {"EMAIL_HOST": fake_smtp.host, "EMAIL_PORT": str(fake_smtp.port), "EMAIL_USE_TLS": "0"}
    worker = subprocess.Popen(  # noqa: S603
        [sys.executable, "manage.py", "db_worker", "--batch", "--no-startup-delay", "--no-reload"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    output, _ = worker.communicate(timeout=60)
    fake_smtp.on_data = None
    assert worker.returncode == -signal.SIGKILL, output.decode()
    assert fake_smtp.messages == []

    time_passes()  # the next try's backoff
    run_tasks()
    (sent,) = fake_smtp.messages
    assert sent.recipients == [user.email]
    time_passes()
    run_tasks()
    assert len(fake_smtp.messages) == 1, "once"
    assert DBTaskResult.objects.filter(status="READY").count() == 0
