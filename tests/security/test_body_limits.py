"""Over-limit bodies: 413 with the JSON error before anything is read, then drained
within a bound so clients that send first and read later (urllib) get the answer;
anonymous callers are never read past a small bound. Against a real gunicorn."""

from __future__ import annotations

import http.client
import json
import os
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from django.test import Client

from credits import ledger
from generation.models import Generation
from presets.tests.factories import PresetFactory
from tests.databases import database_url
from tests.images import make_jpeg
from tests.ports import free_port, wait_until_serving

ROOT = Path(__file__).resolve().parents[2]


def _start_gunicorn(kind: str, folder: Path) -> tuple[subprocess.Popen[bytes], str]:
    """The production command (gunicorn.conf.py: ASGI under uvicorn workers), or plain
    sync gunicorn on stefna.wsgi, which the README says still works."""
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": database_url(),
        "ALLOWED_HOSTS": "127.0.0.1",
        "MEDIA_ROOT": str(folder / "media"),
        "DRAIN_MAX_SECONDS": "5",
        "GUNICORN_BIND": f"127.0.0.1:{port}",
        "WEB_CONCURRENCY": "1",
        "MEDIA_ROOT_SHARED": "1",
    }
    if kind == "asgi":
        command = [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py"]
    else:
        command = [
            sys.executable,
            "-m",
            "gunicorn",
            "-c",
            "/dev/null",
            "stefna.wsgi",
            "-b",
            f"127.0.0.1:{port}",
            "-w",
            "1",
        ]
    log = folder / f"gunicorn-{kind}.log"
    with log.open("wb") as log_file:
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log_file, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_serving(base, process, log)
    except BaseException:
        process.kill()
        process.wait(timeout=20)
        raise
    return process, base


@pytest.fixture(scope="module")
def _gunicorns(django_db_setup, tmp_path_factory):
    """Each kind of server started once for this module, on first use, rather than once a
    test: a start costs a few seconds of CPU (two Python processes importing the project),
    and nothing a test here does changes the server. The tests' rows are still their own:
    each test's transactional_db empties the tables the server reads after it."""
    started: dict[str, tuple[subprocess.Popen[bytes], str]] = {}

    def serving(kind: str) -> str:
        if kind not in started or started[kind][0].poll() is not None:
            started[kind] = _start_gunicorn(kind, tmp_path_factory.mktemp(f"gunicorn-{kind}"))
        return started[kind][1]

    yield serving
    for process, _ in started.values():
        process.terminate()
    for process, _ in started.values():
        process.wait(timeout=20)


@pytest.fixture(params=["asgi", "wsgi"])
def gunicorn_server(request, transactional_db, _gunicorns):
    """(base URL, kind) of a real gunicorn pointed at the test database."""
    return _gunicorns(request.param), request.param


def _multipart(size: int) -> tuple[bytes, str]:
    boundary = "stefna-boundary"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="preset"\r\n\r\noil\r\n'
        f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="big.jpg"\r\n'
        "Content-Type: image/jpeg\r\n\r\n"
    ).encode()
    tail = f"\r\n--{boundary}--\r\n".encode()
    return head + b"\xff" * (size - len(head) - len(tail)) + tail, f"multipart/form-data; boundary={boundary}"


def test_urllib_reads_the_413_json_for_a_40_mb_upload(gunicorn_server, user, api_token):
    body, content_type = _multipart(40 * 1024 * 1024)
    request = urllib.request.Request(  # noqa: S310 - our own server
        f"{gunicorn_server[0]}/api/generations",
        data=body,
        method="POST",
        headers={"Content-Type": content_type, "Authorization": f"Bearer {api_token}"},
    )
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=60)  # noqa: S310
    assert refused.value.code == 413
    answer = json.loads(refused.value.read())
    assert answer["code"] == "image_too_large"
    assert "20 MB" in answer["message"]
    assert answer["detail"]["max_bytes"] > 15 * 1024 * 1024


def test_an_anonymous_200_mb_post_is_refused_without_being_read(gunicorn_server):
    """A raw socket keeps sending until the server stops reading and hangs up; what it
    managed to send is an upper bound of what the server accepted (the app's 1 MB drain
    plus the two kernels' socket buffers), far below the 200 MB declared."""
    host, port = gunicorn_server[0].removeprefix("http://").split(":")
    declared = 200 * 1024 * 1024
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(
            (
                "POST /api/generations HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                f"Content-Type: application/json\r\nContent-Length: {declared}\r\n\r\n"
            ).encode()
        )
        sent = 0
        chunk = b"a" * (64 * 1024)
        try:
            while sent < declared:
                sent += sock.send(chunk)
        except OSError:
            pass  # the server stopped reading and closed: what we want
        answer = b""
        try:
            while data := sock.recv(65536):
                answer += data
        except OSError:
            pass
    # Both servers hang up after the bounded drain: uvicorn because the 413 says
    # `Connection: close`, sync gunicorn because it closes after any answer it did not
    # read the whole request for.
    assert sent < 32 * 1024 * 1024, f"the server kept reading ({sent} bytes accepted)"
    if answer:  # the answer may be lost to the reset; when it arrives it is the 413
        assert answer.startswith(b"HTTP/1.1 413")
        if gunicorn_server[1] == "asgi":
            assert b"connection: close" in answer.lower()


def test_a_client_that_declares_a_body_and_sends_nothing_still_gets_its_413(gunicorn_server):
    host, port = gunicorn_server[0].removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(
            b"POST /api/feed HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Content-Length: 50000000\r\n\r\n"
        )
        answer = b""
        while data := sock.recv(65536):  # the server closes after its drain bound
            answer += data
    assert answer.startswith(b"HTTP/1.1 413")
    assert b'"code": "image_too_large"' in answer or b'"code":"image_too_large"' in answer


@pytest.mark.django_db
def test_signed_in_callers_may_send_a_photos_worth_but_strangers_only_a_small_bound(settings, api_client):
    settings.ANONYMOUS_MAX_BODY_BYTES = 1000
    payload = json.dumps({"image_base64": "A" * 5000, "preset": "nope"})
    stranger = Client().post("/api/generations", data=payload, content_type="application/json")
    assert stranger.status_code == 413
    assert stranger.json()["code"] == "image_too_large"
    signed_in = api_client.post("/api/generations", data=payload, content_type="application/json")
    assert signed_in.status_code != 413
    page = Client().post("/accounts/sign-in/", {"email": "x" * 2000 + "@example.com"})
    assert page.status_code == 413
    assert b"at most" in page.content


def _refused_before_django(path: str, headers: dict[str, str], *, size: int = 50 * 1024 * 1024) -> tuple[int, bytes]:
    """A POST declaring `size` bytes through the ASGI front (stefna.body_limits.BoundedBodyASGI),
    which answers 413 before Django; (200, b"passed") when it let the request through."""
    import asyncio
    from concurrent.futures import ThreadPoolExecutor

    from stefna.body_limits import BoundedBodyASGI
    from tests.asgi import http_scope

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"passed"})

    async def scenario() -> tuple[int, bytes]:
        sent: list[dict[str, Any]] = []
        scope = {**http_scope(path, headers={**headers, "Content-Length": str(size)}), "method": "POST"}

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": b"x" * 1024, "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        await BoundedBodyASGI(app)(scope, receive, send)
        return sent[0]["status"], b"".join(message.get("body", b"") for message in sent[1:])

    # On a thread of its own: a browser test's Playwright may hold an event loop running on
    # this one (same xdist worker), and asyncio.run refuses to start a second.
    with ThreadPoolExecutor(max_workers=1) as thread:
        return thread.submit(asyncio.run, scenario()).result()


def test_the_413_sent_before_django_speaks_the_visitors_language():
    status, body = _refused_before_django("/api/generations", {"Accept-Language": "id-ID,id;q=0.9"})
    answer = json.loads(body)
    assert status == 413 and answer["code"] == "image_too_large"
    assert answer["message"].startswith("Permintaannya terlalu besar: tanpa masuk")
    # Pages: the language cookie (the switcher's choice) wins over Accept-Language.
    status, body = _refused_before_django(
        "/accounts/sign-in/", {"Accept-Language": "en", "Cookie": "stefna_language=id"}
    )
    assert status == 413 and body.decode().startswith("Permintaannya terlalu besar")
    # The API follows Accept-Language alone; English when it names nothing we ship.
    _, body = _refused_before_django("/api/generations", {"Accept-Language": "fr", "Cookie": "stefna_language=id"})
    assert json.loads(body)["message"].startswith("The request is too large: without signing in")


@pytest.mark.django_db(transaction=True)  # the check runs on a thread with its own connection
def test_only_a_real_token_or_session_buys_the_signed_in_bound_before_django(settings, user, api_token):
    from django.contrib.auth import SESSION_KEY
    from django.contrib.sessions.backends.db import SessionStore

    settings.SESSION_ENGINE = "django.contrib.sessions.backends.db"
    photo = 5 * 1024 * 1024  # over the anonymous bound, under the signed-in one
    session = SessionStore()
    session[SESSION_KEY] = str(user.pk)
    session.create()
    anonymous_session = SessionStore()
    anonymous_session["seen"] = True
    anonymous_session.create()

    assert _refused_before_django("/api/generations", {"Authorization": f"Bearer {api_token}"}, size=photo)[0] == 200
    assert _refused_before_django("/", {"Cookie": f"sessionid={session.session_key}"}, size=photo)[0] == 200
    for made_up in (
        {"Authorization": "Bearer stf_made-up-token"},
        {"Authorization": "Basic YWRhOnNlY3JldA=="},
        {"Cookie": "sessionid=made-up"},
        {"Cookie": f"sessionid={anonymous_session.session_key}"},  # a session, but no one signed in
    ):
        status, body = _refused_before_django("/api/generations", made_up, size=photo)
        assert status == 413, made_up
        assert "without signing in" in json.loads(body)["message"]


def _post_chunked(base: str, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
    """POST with `Transfer-Encoding: chunked` (no Content-Length), as streaming clients do."""
    host, port = base.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=60)
    blocks = (body[start : start + 64 * 1024] for start in range(0, len(body), 64 * 1024))
    try:
        connection.request("POST", path, body=blocks, headers=headers, encode_chunked=True)
        answer = connection.getresponse()
        return answer.status, answer.read()
    except (BrokenPipeError, ConnectionResetError):
        return 0, b""  # hung up before reading all of it: also a refusal
    finally:
        connection.close()


# The production server (ASGI) only: sync gunicorn is the README's fallback.
@pytest.mark.parametrize("gunicorn_server", ["asgi"], indirect=True)
def test_a_chunked_upload_is_read_with_its_fields(gunicorn_server, user, api_token):
    # Django's form parser needs a length, which a chunked body does not declare: it saw
    # no fields at all ("preset: Field required") before the bound learnt the length.
    PresetFactory(slug="oil", name="Oil", prompt="{prompt}")
    ledger.ensure_daily_allowance(user=user)
    boundary = "stefna-chunked"
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="preset"\r\n\r\noil\r\n'
            f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="p.jpg"\r\n'
            "Content-Type: image/jpeg\r\n\r\n"
        ).encode()
        + make_jpeg(640, 480)
        + f"\r\n--{boundary}--\r\n".encode()
    )
    headers = {"Content-Type": f"multipart/form-data; boundary={boundary}", "Authorization": f"Bearer {api_token}"}

    status, answer = _post_chunked(gunicorn_server[0], "/api/generations", body, headers)

    assert status == 202, answer
    assert json.loads(answer)["preset"] == "oil"
    assert Generation.objects.filter(user=user).count() == 1


@pytest.mark.parametrize("gunicorn_server", ["asgi"], indirect=True)
@pytest.mark.parametrize("signed_in", [False, True], ids=["stranger", "signed-in"])
def test_a_chunked_body_over_the_bound_is_refused_413(gunicorn_server, user, api_token, signed_in):
    # No declared length to refuse at once: the body is counted as it comes, and refused
    # past the same bound (a stranger's 1 MB, a signed-in caller's 20 MB).
    size = 30 * 1024 * 1024 if signed_in else 2 * 1024 * 1024
    body, content_type = _multipart(size)
    headers = {"Content-Type": content_type, **({"Authorization": f"Bearer {api_token}"} if signed_in else {})}

    status, answer = _post_chunked(gunicorn_server[0], "/api/generations", body, headers)

    assert status in (413, 0), (status, answer[:200])
    if status == 413:
        assert json.loads(answer)["code"] == "image_too_large"
    assert Generation.objects.count() == 0
