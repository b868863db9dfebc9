"""Structured logs (LOG_FORMAT=json) and the request id every response carries."""

from __future__ import annotations

import datetime as dt
import io
import json
import logging
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest

from stefna.logging_json import JsonFormatter, RequestContextFilter
from tests.ports import free_port, wait_until_serving

BASE_DIR = Path(__file__).resolve().parents[2]


@pytest.fixture
def json_lines():
    """Records from every logger, formatted as production formats them with LOG_FORMAT=json."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RequestContextFilter())
    # The root logger and "django", which does not propagate (settings.LOGGING).
    loggers = [logging.getLogger(), logging.getLogger("django")]
    for logger in loggers:
        logger.addHandler(handler)
    previous = logging.getLogger("stefna").level
    logging.getLogger("stefna").setLevel(logging.INFO)

    def lines() -> list[dict]:
        return [json.loads(line) for line in stream.getvalue().splitlines()]

    yield lines
    for logger in loggers:
        logger.removeHandler(handler)
    logging.getLogger("stefna").setLevel(previous)


def test_every_response_carries_a_request_id(client, db):
    first = client.get("/healthz")["X-Request-ID"]
    second = client.get("/api/presets")["X-Request-ID"]
    assert len(first) == 32 and first != second


def test_a_client_cannot_choose_its_request_id_without_a_trusted_proxy(client, db, settings):
    settings.TRUSTED_PROXY_COUNT = 0
    assert client.get("/healthz", HTTP_X_REQUEST_ID="forged-id")["X-Request-ID"] != "forged-id"


def test_a_trusted_proxy_passes_its_request_id_through(client, db, settings):
    settings.TRUSTED_PROXY_COUNT = 1
    assert client.get("/healthz", HTTP_X_REQUEST_ID="nginx-4f2a9c")["X-Request-ID"] == "nginx-4f2a9c"
    # A value that could break a log line or a header is replaced.
    replaced = client.get("/healthz", HTTP_X_REQUEST_ID="a b\tc" + "x" * 200)["X-Request-ID"]
    assert replaced != "a b\tc" + "x" * 200 and len(replaced) == 32


def test_json_log_lines_carry_request_id_user_id_and_extra_fields(client, user, json_lines):
    client.force_login(user)
    response = client.get("/api/quota")
    request_id = response["X-Request-ID"]
    line = next(entry for entry in json_lines() if entry["logger"] == "stefna.request")
    assert line["request_id"] == request_id
    assert line["user_id"] == str(user.pk)
    assert line["level"] == "INFO" and line["message"] == "GET /api/quota 200"
    assert dt.datetime.fromisoformat(line["time"]).tzinfo is not None
    # The extra fields the middleware attached, each a key of its own.
    assert line["status"] == 200 and line["path"] == "/api/quota" and line["route"] == "api/quota"
    assert isinstance(line["duration_ms"], float)


def test_django_error_lines_for_a_request_carry_its_id(client, db, json_lines):
    response = client.get("/no-such-page/")  # a 404: django.request logs it
    errors = [entry for entry in json_lines() if entry["logger"] == "django.request"]
    assert errors and errors[0]["request_id"] == response["X-Request-ID"]


def test_extra_fields_of_any_log_call_are_kept_and_encoded(json_lines):
    generation_id = uuid.uuid4()
    logging.getLogger("generation.worker").warning(
        "persisting failed", extra={"generation_id": generation_id, "attempt": 3, "model": "fal-ai/flux/dev"}
    )
    line = json_lines()[-1]
    assert line["generation_id"] == str(generation_id) and line["attempt"] == 3
    assert line["model"] == "fal-ai/flux/dev" and line["request_id"] is None and line["user_id"] is None


def test_exceptions_stay_inside_one_json_line(json_lines):
    try:
        raise ValueError("broken\nacross lines")
    except ValueError:
        logging.getLogger("stefna").exception("it failed")
    line = json_lines()[-1]
    assert "ValueError" in line["exc_info"] and line["message"] == "it failed"


def test_log_format_json_configures_every_logger_in_a_real_process():
    env = {**os.environ, "LOG_FORMAT": "json", "DEBUG": "1", "LOG_LEVEL": "INFO"}
    code = (
        "import logging; logging.getLogger('generation.worker').info('claimed', extra={'claimed': 7}); "
        "logging.getLogger('django').warning('plain warning')"
    )
    result = subprocess.run(
        [sys.executable, "manage.py", "shell", "--verbosity", "0", "-c", code],
        cwd=BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]
    claimed = next(line for line in lines if line["message"] == "claimed")
    assert claimed["claimed"] == 7 and claimed["logger"] == "generation.worker" and claimed["level"] == "INFO"
    assert any(line["message"] == "plain warning" for line in lines)
    # Nothing else on stderr: every line is one JSON object.
    assert all(line.startswith("{") for line in result.stderr.splitlines() if line.strip())


def test_an_unknown_log_format_refuses_to_start():
    env = {**os.environ, "LOG_FORMAT": "xml", "DEBUG": "1"}
    result = subprocess.run(
        [sys.executable, "manage.py", "check"], cwd=BASE_DIR, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode != 0 and "LOG_FORMAT must be text or json" in result.stderr


@pytest.mark.slow
def test_log_format_json_makes_gunicorns_and_uvicorns_own_lines_json_too(tmp_path):
    """The production command with LOG_FORMAT=json: from boot to stop, every line it
    writes (gunicorn's "Booting worker", uvicorn's "Started server process", the access
    log when asked for, the app's request lines) is one JSON object."""
    port = free_port()
    env = {
        **os.environ,
        "LOG_FORMAT": "json",
        "DEBUG": "1",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'logs.sqlite3'}",
        "GUNICORN_BIND": f"127.0.0.1:{port}",
        "WEB_CONCURRENCY": "1",
        "GUNICORN_ACCESS_LOG": "-",
    }
    out, err = tmp_path / "out.log", tmp_path / "err.log"
    with out.open("wb") as stdout, err.open("wb") as stderr:
        web = subprocess.Popen(  # noqa: S603 - our own command
            [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py"],
            cwd=BASE_DIR,
            env=env,
            stdout=stdout,
            stderr=stderr,
        )
    try:
        wait_until_serving(f"http://127.0.0.1:{port}", web, err)
        with pytest.raises(urllib.error.HTTPError) as answer:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/no-such-page/", timeout=10)  # noqa: S310
        assert answer.value.code == 404
        web.send_signal(signal.SIGTERM)
        assert web.wait(timeout=30) == 0
    finally:
        if web.poll() is None:
            web.kill()
            web.wait(10)

    lines = [line for line in (out.read_text() + err.read_text()).splitlines() if line.strip()]
    records = [json.loads(line) for line in lines]  # fails on the first line that is not JSON
    messages = " ".join(record["message"] for record in records)
    assert "Booting worker" in messages and "Started server process" in messages
    assert "GET /no-such-page/" in messages  # the access log, asked for, in JSON as well
    assert "Shutting down" in messages


def test_log_format_json_makes_the_workers_start_up_warnings_json_too(transactional_db, tmp_path):
    """`manage.py db_worker` runs the system checks as it starts, and Django prints their
    warnings as a block of text on stderr: with LOG_FORMAT=json (compose's default, where
    the preview's stefna.W001 is always there) a log shipper got five lines that are not
    JSON at every start. They are log records, one JSON object each."""
    from tests.databases import database_url

    env = {
        **os.environ,
        "LOG_FORMAT": "json",
        "DEBUG": "0",
        "SECRET_KEY": "worker-logging-test-secret-key",
        "FAL_KEY": "",  # stefna.W001: the offline preview renderer with DEBUG off
        "DATABASE_URL": database_url(),
        "MEDIA_ROOT": str(tmp_path / "media"),
    }
    err = tmp_path / "err.log"
    with err.open("wb") as stderr:
        worker = subprocess.Popen(  # noqa: S603 - our own command
            [sys.executable, "manage.py", "db_worker", "--worker-id", "logging-test"],
            cwd=BASE_DIR,
            env=env,
            stdout=stderr,
            stderr=stderr,
        )
    try:
        deadline = time.monotonic() + 60
        while "Starting worker" not in err.read_text() and worker.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=30) == 0, err.read_text()
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait(10)
    records = [json.loads(line) for line in err.read_text().splitlines() if line.strip()]  # each line JSON
    [warning] = [record for record in records if record.get("check_id") == "stefna.W001"]
    assert warning["level"] == "WARNING" and "FAL_KEY" in warning["message"]
