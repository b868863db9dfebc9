"""Error reporting: with SENTRY_DSN set, errors reach Sentry (a fake of its envelope
endpoint, at the wire) tagged with the release and environment, with no personal data;
without it, sentry-sdk is not even started."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
import threading
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = """
import logging, sentry_sdk
client = sentry_sdk.get_client()
print("active", client.is_active(), "pii", client.options.get("send_default_pii"))
logging.getLogger("generation.worker").error("persisting failed for good", extra={"attempt": 5})
sentry_sdk.flush(timeout=10)
"""


@pytest.fixture
def fake_sentry():
    envelopes: list[bytes] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            encoding = self.headers.get("Content-Encoding", "")
            if encoding == "gzip":
                body = gzip.decompress(body)
            elif encoding == "deflate":
                body = zlib.decompress(body)
            envelopes.append(body)
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, format: str, *args: object) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://publickey@127.0.0.1:{server.server_address[1]}/42", envelopes
    server.shutdown()


def run_shell(script: str = SCRIPT, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "manage.py", "shell", "--verbosity", "0", "-c", script],
        cwd=ROOT,
        env={**os.environ, "DEBUG": "1", "SENTRY_ENVIRONMENT": "", "SENTRY_RELEASE": "", **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def events(envelopes: list[bytes]) -> list[dict]:
    found = []
    for envelope in envelopes:
        for line in envelope.splitlines()[1:]:
            try:
                item = json.loads(line)
            except ValueError:
                continue
            if isinstance(item, dict) and ("level" in item or "exception" in item or "logentry" in item):
                found.append(item)
    return found


def test_errors_reach_sentry_tagged_with_release_and_environment_and_no_personal_data(fake_sentry):
    dsn, envelopes = fake_sentry
    result = run_shell(SENTRY_DSN=dsn, SENTRY_RELEASE="abc1234", SENTRY_ENVIRONMENT="staging")
    assert result.returncode == 0, result.stderr
    assert "active True pii False" in result.stdout
    sent = events(envelopes)
    assert sent, f"no event reached the fake Sentry: {envelopes!r}"
    event = sent[0]
    assert event["release"] == "abc1234" and event["environment"] == "staging"
    assert "persisting failed for good" in json.dumps(event)
    assert "user" not in event or not event["user"].get("ip_address")


def test_an_error_is_tagged_with_the_request_id_of_its_log_lines(fake_sentry):
    """The worker, on a generation a web request asked for, binds that request's id
    (generation/services/log.py, `working_on`): its errors in Sentry carry it as a tag,
    like its log lines, and an error after the job carries none."""
    dsn, envelopes = fake_sentry
    script = (
        "import logging, sentry_sdk\n"
        "from stefna.logging_json import request_id_bound\n"
        "with request_id_bound('web-7f3a'):\n"
        "    logging.getLogger('generation').error('copy failed')\n"
        "logging.getLogger('generation').error('after the job')\n"
        "sentry_sdk.flush(timeout=10)\n"
    )
    result = run_shell(script, SENTRY_DSN=dsn)
    assert result.returncode == 0, result.stderr
    by_message = {json.dumps(event.get("logentry", {})): event for event in events(envelopes)}
    [during] = [event for key, event in by_message.items() if "copy failed" in key]
    [after] = [event for key, event in by_message.items() if "after the job" in key]
    assert during["tags"]["request_id"] == "web-7f3a"
    assert "request_id" not in after.get("tags", {})


def test_the_image_release_is_used_when_sentry_release_is_unset(fake_sentry):
    dsn, envelopes = fake_sentry
    assert run_shell(SENTRY_DSN=dsn, STEFNA_RELEASE="image-9f8e7d").returncode == 0
    assert events(envelopes)[0]["release"] == "image-9f8e7d"
    assert events(envelopes)[0]["environment"] == "development"  # DEBUG is on in run_shell


def test_without_a_dsn_sentry_is_off():
    result = run_shell(SENTRY_DSN="")
    assert result.returncode == 0, result.stderr
    assert "active False" in result.stdout
