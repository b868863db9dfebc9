"""A fake of fal.ai's queue API, over HTTPS, for tests and benches.

It speaks the wire protocol fal-client 1.0.3 uses, so the code under test is the code
that ships (the real `fal_client.SyncClient`, pointed here by `FAL_QUEUE_RUN_HOST`):

    POST /{owner}/{alias}[/{path}][?fal_webhook=URL]  → {request_id, response_url, status_url, cancel_url}
    GET  /{owner}/{alias}/requests/{id}/status?logs=1 → IN_QUEUE (queue_position) | IN_PROGRESS (logs)
                                                        | COMPLETED (logs, metrics, error?)
    GET  /{owner}/{alias}/requests/{id}               → the result ({"image": …} for ghiblify, else {"images": […]})
    PUT  /{owner}/{alias}/requests/{id}/cancel        → 202 {"status": "CANCELLATION_REQUESTED"}
    GET  /files/{id}/{n}.png                          → a real PNG (the URLs results hand out)
    GET  /.well-known/jwks.json                       → the webhook signing key (Ed25519, JWKS)
    POST /_fake/configure {knob: value}               → set knobs from another process (benches)
    GET  /_fake/requests                              → what was recorded (method, path, json)

Every request is recorded (`fake.requests`: method, path, query, headers, body, json)
so tests assert on exactly what reached "fal", including the Authorization header.

Knobs (methods on `FakeFal`; `reset()` clears them all):
    latency = 0.0                 seconds from submission to COMPLETED (per endpoint: `set_latency(s, endpoint=)`)
    queue_fraction = 0.4          share of the latency spent IN_QUEUE (positions count down), the rest IN_PROGRESS
    manual = False                jobs move only when the test calls `advance()` (IN_QUEUE 2 → 1 → IN_PROGRESS
                                  → COMPLETED), so tests await states without sleeping
    fail_submit(endpoint, status=500, times=None, detail=…)   submit answers `status` (5xx, 429, 422 …);
                                  `times` failures then success, None = always
    fail_status(endpoint, status=500, times=None)             the status endpoint answers an error
    fail_result(endpoint, status=500, times=None)             the result endpoint answers an error
    error_on_completion(endpoint, message=…)                  COMPLETED with `error` (an ERROR webhook)
    stick_in_queue(endpoint)      the job stays IN_QUEUE forever (timeouts, sweeper)
    set_result(endpoint, payload) the result body, e.g. {"images": []} for "no image"
    flag_images(endpoint, flags)  the safety checker's verdict: `has_nsfw_concepts` is `flags` (any
                                  value, so malformed ones can be sent too), flagged slots hold a black image
    expire_files()                result image URLs answer 404 (fal deletes results after about an hour)
    refuse_connections() / accept_connections()   close the listening socket: connection refused
    deliver_webhooks = False      POST signed webhooks to the submission's `fal_webhook` URL on completion
    webhook_copies = 1            deliver each webhook this many times (duplicates)
    webhook_out_of_order = False  deliver an ERROR copy after the OK one (out of order, must change nothing)
    after_answer(method, path)    called once an answer is made, before it is sent (off the event loop,
                                  so holding it delays that one answer only); also `on_cancel(request_id)`

Inspection: `submissions(endpoint=None)` (recorded POSTs to models), `calls(method, contains)`,
`requests` (everything), `jobs` (request id → Job: endpoint, payload, webhook_url, canceled …),
`webhook_deliveries` ((request id, HTTP status our app answered) for auto-delivered webhooks).

Webhooks for the Django test client (no network): `webhook_request(request_id, status=None,
timestamp=None, forge=False)` returns `(body_bytes, headers)` signed like fal does
(message = request id, user id, timestamp, hex SHA-256 of the body, joined by "\\n");
`sign(body, request_id=…, timestamp=…)` signs any body; `jwks_url` serves the public key.

Fixtures (tests/fakes/pytest_plugin.py): `fake_fal` configures settings (FAL_KEY, JWKS URL) and resets
knobs; the server itself starts once per test process on the port chosen in
`pytest_configure`, because fal-client reads its host names at import time.

Standalone: `python -m tests.fakes.fal --port 8443 --latency 10` writes the CA path to
stdout; set SSL_CERT_FILE to it and FAL_QUEUE_RUN_HOST=127.0.0.1:8443 for the client.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import functools
import hashlib
import io
import json
import logging
import socket
import ssl
import sys
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tests.fakes.certs import CertFiles, make_certificates

logger = logging.getLogger("tests.fakes.fal")

SINGLE_IMAGE_ENDPOINTS = {"fal-ai/ghiblify"}
FAKE_USER_ID = "fake-fal-user"
IMAGE_SIZE = (64, 48)


@dataclass
class Recorded:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes
    at: float

    @property
    def json(self) -> Any:
        try:
            return json.loads(self.body) if self.body else None
        except ValueError:
            return None


@dataclass
class Failure:
    status: int
    remaining: int | None  # None: forever
    detail: Any = None


@dataclass
class Job:
    request_id: str
    endpoint: str
    app: str  # owner/alias: the part of the endpoint request URLs use
    payload: dict[str, Any]
    webhook_url: str | None
    submitted_at: float
    latency: float
    stuck: bool = False
    error: str | None = None
    result: dict[str, Any] | None = None
    canceled: bool = False
    manual_step: int = 0  # manual mode: 0,1 queued (positions 2,1), 2 in progress, 3 completed
    submitted_at_wall: float = field(default_factory=time.time)


def _app_of(endpoint: str) -> str:
    return "/".join(endpoint.split("/")[:2])


@functools.lru_cache(maxsize=64)
def _png(colour: tuple[int, int, int], size: tuple[int, int]) -> bytes:
    from PIL import Image, ImageDraw

    image = Image.new("RGB", size, colour)
    ImageDraw.Draw(image).rectangle((size[0] // 4, size[1] // 4, size[0] // 2, size[1] // 2), fill=(250, 240, 220))
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def png_bytes(seed: str, size: tuple[int, int] = IMAGE_SIZE) -> bytes:
    """A small real PNG whose colour depends on `seed` (one of 64 colours, cached)."""
    digest = hashlib.sha256(seed.encode()).digest()
    return _png((digest[0] & 0xFC, digest[1] & 0xF0, digest[2] & 0xF0), size)


class FakeFal:
    def __init__(
        self,
        *,
        port: int = 0,
        host: str = "127.0.0.1",
        certs: CertFiles | None = None,
        cert_dir: Path | None = None,
        record_limit: int | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.certs = certs or make_certificates(cert_dir or Path("/tmp/stefna-fake-certs"))
        self.signing_key = Ed25519PrivateKey.generate()
        self.key_id = uuid.uuid4().hex[:12]
        self._lock = threading.RLock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._ticker: threading.Thread | None = None
        self._stopping = threading.Event()
        self.record_limit = record_limit
        self.requests: deque[Recorded] = deque(maxlen=record_limit)
        self.jobs: dict[str, Job] = {}
        self.webhook_deliveries: list[tuple[str, int]] = []  # (request id, HTTP status answered)
        self._webhook_client: Any = None  # one httpx.Client for every delivery (made on first use)
        self.reset()

    # --- knobs ---------------------------------------------------------------------------------

    def reset(self) -> None:
        with self._lock:
            self.requests.clear()
            self.jobs.clear()
            self._owed_webhook: dict[str, Job] = {}  # jobs with a webhook URL whose webhook is not sent yet
            self.webhook_deliveries.clear()
            self.latency = 0.0
            self.queue_fraction = 0.4
            self.manual = False
            self.deliver_webhooks = False
            self.webhook_copies = 1
            self.webhook_out_of_order = False
            self.files_expired = False
            self._endpoint_latency: dict[str, float] = {}
            self._submit_failures: dict[str, Failure] = {}
            self._status_failures: dict[str, Failure] = {}
            self._result_failures: dict[str, Failure] = {}
            self._completion_errors: dict[str, str] = {}
            self._stuck: set[str] = set()
            self._results: dict[str, dict[str, Any]] = {}
            self._flags: dict[str, Any] = {}
            # Called with the request id when a cancellation arrives, before it is answered
            # (a crash test kills the process that asked, mid-call).
            self.on_cancel: Callable[[str], None] | None = None
            # Called with (method, path) once an answer is made, before it is sent, on a
            # thread of its own: a test holding it delays that one answer (fal slow to
            # reply, its answer already stale when it arrives) while others are served.
            self.after_answer: Callable[[str, str], None] | None = None

    def set_latency(self, seconds: float, *, endpoint: str | None = None) -> None:
        with self._lock:
            if endpoint is None:
                self.latency = seconds
            else:
                self._endpoint_latency[endpoint] = seconds

    def fail_submit(self, endpoint: str, *, status: int = 500, times: int | None = None, detail: Any = None) -> None:
        self._submit_failures[endpoint] = Failure(status, times, detail)

    def fail_status(self, endpoint: str, *, status: int = 500, times: int | None = None) -> None:
        self._status_failures[_app_of(endpoint)] = Failure(status, times)

    def fail_result(self, endpoint: str, *, status: int = 500, times: int | None = None) -> None:
        self._result_failures[_app_of(endpoint)] = Failure(status, times)

    def error_on_completion(self, endpoint: str, *, message: str = "Internal error while running the model") -> None:
        self._completion_errors[endpoint] = message

    def stick_in_queue(self, endpoint: str) -> None:
        self._stuck.add(endpoint)

    def set_result(self, endpoint: str, payload: dict[str, Any]) -> None:
        self._results[endpoint] = payload

    def flag_images(self, endpoint: str, flags: Any) -> None:
        self._flags[endpoint] = flags

    def expire_files(self) -> None:
        self.files_expired = True

    def configure(self, **knobs: Any) -> None:
        """Set knobs by name (what `POST /_fake/configure` calls)."""
        for name, value in knobs.items():
            if name in {"latency", "queue_fraction", "manual", "deliver_webhooks", "webhook_copies"}:
                setattr(self, name, value)
            elif name == "fail_submit":
                self.fail_submit(**value)
            elif name == "error_on_completion":
                self.error_on_completion(**value)
            elif name == "stick_in_queue":
                self.stick_in_queue(value)
            elif name == "flag_images":
                self.flag_images(**value)
            elif name == "expire_files":
                self.expire_files()
            elif name == "reset":
                self.reset()
            else:
                raise ValueError(f"unknown knob {name!r}")

    # --- inspection ----------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        return f"https://{self.host}:{self.port}"

    @property
    def jwks_url(self) -> str:
        return f"{self.base_url}/.well-known/jwks.json"

    def submissions(self, endpoint: str | None = None) -> list[Recorded]:
        """Recorded submissions (POSTs to a model), optionally for one endpoint."""
        found = []
        for recorded in list(self.requests):
            if recorded.method != "POST" or recorded.path.startswith(("/_fake", "/files")):
                continue
            if endpoint is None or recorded.path.strip("/") == endpoint:
                found.append(recorded)
        return found

    def calls(self, method: str, contains: str = "") -> list[Recorded]:
        return [r for r in list(self.requests) if r.method == method and contains in r.path]

    def job_for(self, request_id: str) -> Job:
        return self.jobs[request_id]

    # --- job progress ----------------------------------------------------------------------------

    def advance(self, request_id: str | None = None, *, steps: int = 1) -> None:
        """Manual mode: move one job (or every job) `steps` states forward."""
        with self._lock:
            jobs = [self.jobs[request_id]] if request_id else list(self.jobs.values())
            for job in jobs:
                if job.stuck or job.canceled:
                    continue
                job.manual_step = min(3, job.manual_step + steps)
        self._deliver_due_webhooks()

    def complete_all(self) -> None:
        self.advance(steps=3)

    def _phase(self, job: Job, now: float) -> tuple[str, int]:
        """(state, queue position) of a job at `now`."""
        if job.canceled:
            return "COMPLETED", 0
        if job.stuck:
            return "IN_QUEUE", 3
        if self.manual:
            step = job.manual_step
            if step < 2:
                return "IN_QUEUE", 2 - step
            return ("IN_PROGRESS", 0) if step == 2 else ("COMPLETED", 0)
        elapsed = now - job.submitted_at
        queued_for = job.latency * self.queue_fraction
        if elapsed >= job.latency:
            return "COMPLETED", 0
        if elapsed < queued_for:
            remaining = (queued_for - elapsed) / queued_for if queued_for else 0
            return "IN_QUEUE", int(remaining * 3)
        return "IN_PROGRESS", 0

    def _logs(self, job: Job, state: str) -> list[dict[str, str]]:
        if state == "IN_QUEUE":
            return []
        lines = [
            {"message": "Loading model weights", "level": "INFO"},
            {"message": "Running inference: 50%", "level": "INFO"},
        ]
        if state == "COMPLETED":
            lines.append({"message": "Inference finished", "level": "INFO"})
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(job.submitted_at_wall))
        return [{**line, "source": "stdout", "timestamp": f"{stamp}.{n:06d}"} for n, line in enumerate(lines)]

    def _result_for(self, job: Job) -> dict[str, Any]:
        if job.endpoint in self._results:
            return self._results[job.endpoint]
        count = 1 if job.endpoint in SINGLE_IMAGE_ENDPOINTS else int(job.payload.get("num_images") or 1)
        images: list[dict[str, Any]] = [
            {
                "url": f"{self.base_url}/files/{job.request_id}/{n}.png",
                "width": IMAGE_SIZE[0],
                "height": IMAGE_SIZE[1],
                "content_type": "image/png",
            }
            for n in range(count)
        ]
        flags = self._flags.get(job.endpoint)
        if isinstance(flags, list):
            for image, flagged in zip(images, flags, strict=False):
                if flagged is True:  # fal puts a black square where it withheld an image
                    image["url"] = image["url"].replace(".png", "-black.png")
        if job.endpoint in SINGLE_IMAGE_ENDPOINTS:
            result: dict[str, Any] = {"image": images[0]}
            if job.endpoint in self._flags:
                result["has_nsfw_concepts"] = flags
            return result
        verdict = flags if job.endpoint in self._flags else [False] * count
        return {"images": images, "seed": 42, "has_nsfw_concepts": verdict, "prompt": job.payload.get("prompt")}

    # --- webhooks ----------------------------------------------------------------------------------

    def jwks(self) -> dict[str, Any]:
        raw = self.signing_key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        x = base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
        return {"keys": [{"kty": "OKP", "crv": "Ed25519", "x": x, "kid": self.key_id, "use": "sig", "alg": "EdDSA"}]}

    def webhook_body(self, request_id: str, *, status: str | None = None) -> dict[str, Any]:
        job = self.jobs[request_id]
        error = job.error or (self._completion_errors.get(job.endpoint))
        if status is None:
            status = "ERROR" if error or job.canceled else "OK"
        body: dict[str, Any] = {"request_id": request_id, "gateway_request_id": request_id, "status": status}
        if status == "OK":
            body["payload"] = self._result_for(job)
        else:
            body["error"] = error or "Request failed"
            body["payload"] = {"detail": [{"msg": error or "Request failed", "type": "runtime_error"}]}
        return body

    def sign(self, body: bytes, *, request_id: str, timestamp: int | None = None, user_id: str = FAKE_USER_ID) -> dict:
        stamp = str(int(time.time()) if timestamp is None else timestamp)
        message = "\n".join([request_id, user_id, stamp, hashlib.sha256(body).hexdigest()]).encode()
        return {
            "X-Fal-Webhook-Request-Id": request_id,
            "X-Fal-Webhook-User-Id": user_id,
            "X-Fal-Webhook-Timestamp": stamp,
            "X-Fal-Webhook-Signature": self.signing_key.sign(message).hex(),
            "Content-Type": "application/json",
        }

    def webhook_request(
        self,
        request_id: str,
        *,
        status: str | None = None,
        timestamp: int | None = None,
        forge: bool = False,
    ) -> tuple[bytes, dict[str, str]]:
        """A signed webhook delivery for `request_id`: (raw body, headers).

        `forge=True` signs with a different key (a forged call); `timestamp` lets a test
        send a stale one.
        """
        body = json.dumps(self.webhook_body(request_id, status=status)).encode()
        headers = self.sign(body, request_id=request_id, timestamp=timestamp)
        if forge:
            other = Ed25519PrivateKey.generate()
            stamp = headers["X-Fal-Webhook-Timestamp"]
            message = "\n".join([request_id, FAKE_USER_ID, stamp, hashlib.sha256(body).hexdigest()]).encode()
            headers["X-Fal-Webhook-Signature"] = other.sign(message).hex()
        return body, headers

    def _deliver_due_webhooks(self) -> None:
        if not self.deliver_webhooks:
            return
        now = time.monotonic()
        due = []
        with self._lock:
            # Only the jobs still owed a webhook: scanning every job ever made, 20 times a
            # second under the lock, slowed the fake itself down in the crowd bench.
            for job in list(self._owed_webhook.values()):
                if self._phase(job, now)[0] == "COMPLETED":
                    del self._owed_webhook[job.request_id]
                    due.append(job)
        for job in due:
            threading.Thread(target=self._post_webhooks, args=(job,), daemon=True).start()

    def _webhook_http(self) -> Any:
        """One client for every delivery: a new one per webhook (an SSL context each) cost
        the fake tens of milliseconds of CPU a delivery in the crowd bench."""
        import httpx

        with self._lock:
            if self._webhook_client is None:
                self._webhook_client = httpx.Client(timeout=10)
            return self._webhook_client

    def _post_webhooks(self, job: Job) -> None:
        import httpx

        client = self._webhook_http()
        deliveries: list[str | None] = [None] * max(1, self.webhook_copies)
        if self.webhook_out_of_order:
            deliveries.append("ERROR")
        for status in deliveries:
            body, headers = self.webhook_request(job.request_id, status=status)
            try:
                answer = client.post(job.webhook_url or "", content=body, headers=headers).status_code
            except httpx.HTTPError:
                answer = 0
            with self._lock:
                self.webhook_deliveries.append((job.request_id, answer))

    def _tick(self) -> None:
        while not self._stopping.wait(0.05):
            try:
                self._deliver_due_webhooks()
            except Exception:  # a fake must keep serving
                logger.exception("webhook delivery failed")

    # --- server ------------------------------------------------------------------------------------

    def start(self) -> FakeFal:
        """Listen (again) on `port`. An asyncio server in a background thread: cheap per
        request, so benches measure our code rather than the fake."""
        if self._loop is None:
            self._loop = asyncio.new_event_loop()
            threading.Thread(target=self._loop.run_forever, name="fake-fal", daemon=True).start()
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.certs.cert_path, self.certs.key_path)
        opening = asyncio.start_server(
            self._serve_connection, self.host, self.port, ssl=context, reuse_address=True, backlog=2048
        )
        self._server = asyncio.run_coroutine_threadsafe(opening, self._loop).result(10)
        self.port = self._server.sockets[0].getsockname()[1]
        if self._ticker is None:
            self._stopping.clear()
            self._ticker = threading.Thread(target=self._tick, daemon=True)
            self._ticker.start()
        return self

    def _close_listener(self) -> None:
        if self._server is None or self._loop is None:
            return
        server, self._server = self._server, None

        async def close() -> None:
            server.close()
            for writer in list(self._writers):
                writer.transport.abort()
            self._writers.clear()

        asyncio.run_coroutine_threadsafe(close(), self._loop).result(10)

    def refuse_connections(self) -> None:
        """Close the listening socket and open connections: clients get 'connection refused'."""
        self._close_listener()

    def accept_connections(self) -> None:
        if self._server is None:
            self.start()

    def stop(self) -> None:
        self._stopping.set()
        self._close_listener()
        self._ticker = None
        with self._lock:
            client, self._webhook_client = self._webhook_client, None
        if client is not None:
            client.close()
        if self._loop is not None:
            loop, self._loop = self._loop, None

            async def cancel_connections() -> None:
                tasks = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)

            asyncio.run_coroutine_threadsafe(cancel_connections(), loop).result(10)
            loop.call_soon_threadsafe(loop.stop)

    async def _serve_connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        sock = writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                request_line, *header_lines = head.decode("latin-1").split("\r\n")
                method, target, _ = request_line.split(" ", 2)
                headers = {}
                for line in header_lines:
                    if line:
                        name, _, value = line.partition(":")
                        headers[name.strip().lower()] = value.strip()
                length = int(headers.get("content-length") or 0)
                body = await reader.readexactly(length) if length else b""
                try:
                    status, answer, content_type = self.handle(method, target, headers, body)
                except Exception as exc:  # a broken fake should answer, not hang the client
                    logger.exception("fake fal crashed")
                    status, answer, content_type = 500, {"detail": repr(exc)}, "application/json"
                data = answer if isinstance(answer, bytes) else json.dumps(answer).encode()
                if self.after_answer is not None:
                    await asyncio.to_thread(self.after_answer, method, urlsplit(target).path)
                phrase = HTTPStatus(status).phrase
                writer.write(
                    f"HTTP/1.1 {status} {phrase}\r\nContent-Type: {content_type}\r\n"
                    f"Content-Length: {len(data)}\r\nx-fal-request-id: fake\r\n\r\n".encode()
                    + data
                )
                await writer.drain()
                if headers.get("connection", "").lower() == "close":
                    break
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError, ssl.SSLError, ValueError):
            pass
        finally:
            self._writers.discard(writer)
            writer.close()

    # --- request handling ---------------------------------------------------------------------------

    def handle(self, method: str, raw_path: str, headers: dict[str, str], body: bytes) -> tuple[int, Any, str]:
        """(status, body, content type) for one request."""
        parts = urlsplit(raw_path)
        path, query = parts.path, parse_qs(parts.query)
        with self._lock:
            self.requests.append(Recorded(method, path, query, headers, body, time.time()))
        if path == "/.well-known/jwks.json":
            return 200, self.jwks(), "application/json"
        if path.startswith("/files/"):
            if self.files_expired:
                return 404, {"detail": "File not found"}, "application/json"
            return 200, png_bytes(path), "image/png"
        if path == "/_fake/configure" and method == "POST":
            self.configure(**json.loads(body or b"{}"))
            return 200, {"ok": True}, "application/json"
        if path == "/_fake/requests":
            listing = [{"method": r.method, "path": r.path, "json": r.json} for r in list(self.requests)]
            return 200, listing, "application/json"
        segments = path.strip("/").split("/")
        if len(segments) >= 4 and segments[2] == "requests":
            app, request_id, action = "/".join(segments[:2]), segments[3], "/".join(segments[4:])
            return self._handle_request_op(method, app, request_id, action, query)
        if method == "POST" and len(segments) >= 2:
            return self._handle_submit("/".join(segments), query, body)
        return 404, {"detail": "Not found"}, "application/json"

    def _take_failure(self, table: dict[str, Failure], key: str) -> Failure | None:
        with self._lock:
            failure = table.get(key)
            if failure is None:
                return None
            if failure.remaining is not None:
                if failure.remaining <= 0:
                    del table[key]
                    return None
                failure.remaining -= 1
            return failure

    def _handle_submit(self, endpoint: str, query: dict[str, list[str]], body: bytes) -> tuple[int, Any, str]:
        failure = self._take_failure(self._submit_failures, endpoint)
        if failure:
            detail = failure.detail or (
                [{"loc": ["body", "prompt"], "msg": "field required", "type": "value_error.missing"}]
                if failure.status == 422
                else f"fake fal: HTTP {failure.status}"
            )
            return failure.status, {"detail": detail}, "application/json"
        try:
            payload = json.loads(body or b"{}")
        except ValueError:
            return 422, {"detail": "Body is not JSON"}, "application/json"
        request_id = str(uuid.uuid4())
        app = _app_of(endpoint)
        with self._lock:
            job = Job(
                request_id=request_id,
                endpoint=endpoint,
                app=app,
                payload=payload,
                webhook_url=query["fal_webhook"][0] if query.get("fal_webhook") else None,
                submitted_at=time.monotonic(),
                latency=self._endpoint_latency.get(endpoint, self.latency),
                stuck=endpoint in self._stuck,
                error=self._completion_errors.get(endpoint),
            )
            self.jobs[request_id] = job
            if job.webhook_url:
                self._owed_webhook[request_id] = job
        base = f"{self.base_url}/{app}/requests/{request_id}"
        answer = {
            "request_id": request_id,
            "response_url": base,
            "status_url": f"{base}/status",
            "cancel_url": f"{base}/cancel",
            "queue_position": 0,
        }
        return 200, answer, "application/json"

    def _handle_request_op(
        self, method: str, app: str, request_id: str, action: str, query: dict[str, list[str]]
    ) -> tuple[int, Any, str]:
        job = self.jobs.get(request_id)
        if job is None or job.app != app:
            return 404, {"detail": "Request not found"}, "application/json"
        state, position = self._phase(job, time.monotonic())
        base = f"{self.base_url}/{app}/requests/{request_id}"
        if action == "status" and method == "GET":
            failure = self._take_failure(self._status_failures, app)
            if failure:
                return failure.status, {"detail": f"fake fal: HTTP {failure.status}"}, "application/json"
            with_logs = (query.get("logs") or ["0"])[0].lower() in {"1", "true"}
            answer: dict[str, Any] = {
                "status": state,
                "request_id": request_id,
                "response_url": base,
                "status_url": f"{base}/status",
                "cancel_url": f"{base}/cancel",
                "logs": self._logs(job, state) if with_logs else None,
            }
            if state == "IN_QUEUE":
                answer["queue_position"] = position
            if state == "COMPLETED":
                answer["metrics"] = {"inference_time": job.latency}
                if job.canceled:
                    answer["error"] = "Request was cancelled"
                    answer["error_type"] = "request_cancelled"
                elif job.error:
                    answer["error"] = job.error
                    answer["error_type"] = "runtime_error"
            return 200, answer, "application/json"
        if action == "cancel" and method == "PUT":
            if self.on_cancel is not None:
                self.on_cancel(request_id)
            if state == "COMPLETED":
                return 400, {"status": "ALREADY_COMPLETED"}, "application/json"
            job.canceled = True
            return 202, {"status": "CANCELLATION_REQUESTED"}, "application/json"
        if action == "" and method == "GET":
            failure = self._take_failure(self._result_failures, app)
            if failure:
                return failure.status, {"detail": f"fake fal: HTTP {failure.status}"}, "application/json"
            if state != "COMPLETED":
                return 400, {"detail": "Request is still in progress"}, "application/json"
            if job.canceled:
                return 400, {"detail": "Request was cancelled"}, "application/json"
            if job.error:
                return 500, {"detail": job.error}, "application/json"
            return 200, self._result_for(job), "application/json"
        return 405, {"detail": "Method not allowed"}, "application/json"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Run the fake fal queue API (HTTPS).")
    parser.add_argument("--port", type=int, default=8443)
    parser.add_argument("--latency", type=float, default=10.0)
    parser.add_argument("--cert-dir", default="/tmp/stefna-fake-certs")
    parser.add_argument("--record-limit", type=int, default=2000)
    parser.add_argument("--deliver-webhooks", action="store_true")
    args = parser.parse_args(argv)
    fake = FakeFal(port=args.port, cert_dir=Path(args.cert_dir), record_limit=args.record_limit)
    fake.latency = args.latency
    fake.deliver_webhooks = args.deliver_webhooks
    fake.start()
    print(f"fake fal listening on {fake.base_url} ca={fake.certs.ca_path}", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        fake.stop()
        sys.exit(0)


if __name__ == "__main__":
    main()
