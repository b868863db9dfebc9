"""The web process stopped the way deploys stop it (SIGTERM to gunicorn) while a browser
watches a generation live: the event stream ends cleanly at once, so the process exits
without waiting out gunicorn's graceful timeout, and the client reconnects elsewhere with
`Last-Event-ID` (an ended stream is one it resumes; a killed one is an error).

Before stefna/asgi_worker.py, one open status page held the stopping process for the whole
graceful timeout (70 s by default), and the stream was then cut by a kill.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import threading

import httpx
import pytest

from stefna.accounts.services import api_token_create
from tests.ports import free_port, wait_until_serving

from .conftest import ROOT, child_env, start

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

# Far longer than the test waits for the exit: a process that waited it out fails the test.
GRACEFUL_TIMEOUT = 120


def test_sigterm_ends_live_streams_cleanly_and_the_process_exits_without_waiting(
    user, funded, fake_fal, one_model_style, tmp_path
):
    fake_fal.manual = True  # the job stays in fal's queue: the stream has nothing to end it
    generation = start(user, one_model_style)
    _, token = api_token_create(user=user, name="sigterm")
    port = free_port()
    env = {
        **child_env(),
        "ALLOWED_HOSTS": "127.0.0.1",
        "GUNICORN_BIND": f"127.0.0.1:{port}",
        "WEB_CONCURRENCY": "1",
        "GUNICORN_GRACEFUL_TIMEOUT": str(GRACEFUL_TIMEOUT),
    }
    log = tmp_path / "gunicorn.log"
    with log.open("wb") as log_file:
        web = subprocess.Popen(  # noqa: S603 - our own command
            [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py"],
            cwd=ROOT,
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    received: list[str] = []
    outcome: dict[str, object] = {}
    first_event = threading.Event()

    def watch() -> None:
        headers = {"Authorization": f"Bearer {token}", "Accept": "text/event-stream"}
        try:
            with httpx.stream(
                "GET", f"{base}/api/generations/{generation.pk}/events", headers=headers, timeout=60
            ) as answer:
                outcome["status"] = answer.status_code
                for line in answer.iter_lines():
                    received.append(line)
                    if line.startswith("data:"):
                        first_event.set()
            outcome["ended"] = "cleanly"
        except Exception as exc:  # noqa: BLE001 - the test reports what the client saw
            outcome["ended"] = repr(exc)
        finally:
            first_event.set()

    try:
        wait_until_serving(base, web, log)
        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        assert first_event.wait(30), log.read_text()
        assert outcome.get("status") == 200 and "ended" not in outcome, (outcome, received)
        event_ids = [line for line in received if line.startswith("id:")]
        assert event_ids, received  # what the client resumes from

        web.send_signal(signal.SIGTERM)
        try:
            code = web.wait(timeout=45)
        except subprocess.TimeoutExpired:
            pytest.fail(f"the web process waited for its open stream after SIGTERM:\n{log.read_text()}")
        watcher.join(10)
    finally:
        if web.poll() is None:
            web.kill()
            web.wait(10)

    assert code == 0, log.read_text()
    assert outcome["ended"] == "cleanly", outcome
    assert "timeout graceful shutdown exceeded" not in log.read_text()
    generation.refresh_from_db()
    assert generation.status in ("queued", "running")  # only the stream ended, not the job
