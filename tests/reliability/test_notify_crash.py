""" "Email me when it's done" when the process that ended the generation dies right after
the end committed (SIGKILL, no clean-up code runs): the email is still owed.

The sweeper fails a generation that ran past its time bound and then asks fal to cancel
its job, a network call after the commit. The fake fal kills the sweeping process as that
call arrives; the worker that runs next must still send the owner their email.
"""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import threading

import pytest
from django.utils import timezone
from django_tasks_db.models import DBTaskResult

from generation import services
from generation.images import validate_image
from generation.models import Attempt, Generation
from tests.images import make_jpeg

from .conftest import ROOT, child_env

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

SWEEP = "import django; django.setup(); from generation.services import generation_sweep; generation_sweep()"


def test_a_sweeper_killed_while_canceling_at_fal_still_leaves_the_owner_email_owed(
    user, funded, fake_fal, one_model_style
):
    fake_fal.manual = True  # the job waits at fal: still running when the bound passes
    generation, _ = services.generation_request(
        user=user,
        preset_slug=one_model_style.slug,
        image=validate_image(make_jpeg(160, 120)),
        prompt="crash",
        notify=True,
    )
    services.generation_submit(generation_id=generation.pk)
    attempt = Attempt.objects.get(generation=generation)
    assert attempt.fal_job_id
    long_ago = timezone.now() - dt.timedelta(days=1)
    Generation.objects.filter(pk=generation.pk).update(started_at=long_ago, created_at=long_ago)

    started = threading.Event()
    sweeper: subprocess.Popen[bytes]

    def kill_the_sweeper(request_id: str) -> None:
        # The failure has committed by the time the sweeper asks fal to cancel the job.
        started.wait(timeout=30)
        os.kill(sweeper.pid, signal.SIGKILL)

    fake_fal.on_cancel = kill_the_sweeper
    sweeper = subprocess.Popen(  # noqa: S603
        [sys.executable, "-c", SWEEP], cwd=ROOT, env=child_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    started.set()
    output, _ = sweeper.communicate(timeout=60)
    assert sweeper.returncode == -signal.SIGKILL, output.decode()

    generation.refresh_from_db()
    assert generation.status == Generation.Status.FAILED
    owed = DBTaskResult.objects.filter(task_path="generation.notify.generation_notify_task")
    assert [row.args_kwargs["kwargs"] for row in owed] == [{"generation_id": str(generation.pk)}]
