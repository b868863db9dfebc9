#!/usr/bin/env python
"""A crowd of users (issue 22): how many generations a minute, how soon each user sees
their result, what watching costs, and whether a light user waits behind a heavy one.

    .venv/bin/python bench/crowd.py                      # N = 20, 100, 300; L = 4 s; fairness
    .venv/bin/python bench/crowd.py --users 100 --seconds 30 --no-fairness
    .venv/bin/python bench/crowd.py --quick              # what `run_all.py --quick` runs
    .venv/bin/python bench/crowd.py --redis              # with REDIS_URL, as compose runs it
    .venv/bin/python bench/crowd.py --browser --users 100 --no-fairness   # users as browsers

Topology as production, on one machine:
- a fresh PostgreSQL database (`stefna_bench_crowd`), migrated;
- the web under the production ASGI command (`gunicorn -c gunicorn.conf.py`, uvicorn
  workers, WEB_CONCURRENCY=2) and `manage.py db_worker` (--workers, default 1), both
  restarted for each run with FAL_MAX_CONCURRENT set to that run's N (each user has at
  most one job in flight, so the cap never limits throughput), and to 4 for fairness;
- the fake fal (tests/fakes/fal.py) over HTTPS in its own process, every job in queue or
  in progress until L seconds after its submission; it reports each job's submission and
  completion time. Results are stored locally (no Cloudinary, ALLOW_PRIVATE_RESULT_URLS=1).
  Without --redis the cache (sessions' home, rate limits) is the database's; with it,
  Redis (flushed first), whose server CPU is then counted too.

Each simulated user (asyncio + httpx, all in this process) signs in once through the
browser's email-code flow (the code is read from the console mail the web processes
write; each user comes from its own address through X-Forwarded-For with
TRUSTED_PROXY_COUNT=1, since the sign-in limits count per address). Then, again and again,
it uploads a small photo (multipart POST /api/generations), watches the generation until
it is final, fetches the result image once and glances at GET /api/feed. Watching uses
Server-Sent Events when GET /api/generations/{id}/events answers 200 text/event-stream
(reconnecting with Last-Event-ID), else it polls GET /api/generations/{id} every second
as the browser's status card does (with If-None-Match once an ETag is given): the
channel is detected once at the start and printed.

With --browser each user does what a person in the browser makes the server do instead:
the studio form's POST and its redirect to the status page (and the photo it shows), the
page's live card (its event stream; with a page older than the stream that carries the
card, a fetch of the card after each event), the result image and the feed page (without
its thumbnails, which come from Cloudinary in production).

Per run, over the steady window after a warm-up: generations a minute against the ideal
N × 60 / L, fal-done-to-user-sees p50/p95 (the fake's completion time → the moment the
user holds `succeeded` with its images), CPU seconds per generation of the web processes
(gunicorn master and workers, less the /healthz probe's share, measured once with no user
active), the worker(s) and PostgreSQL (this database's backends, sampled from /proc every
20 ms: a lower bound, since a backend that lives less than a sample is missed; the
server-wide CPU of closed backends, other databases' included, is printed as an upper
bound, with the connections opened per generation), and /healthz p50/p95 from a probe in
its own process, a request every 50 ms after the last answer.

Fairness: with FAL_MAX_CONCURRENT=4, user A queues 40 jobs at once, then user B queues 1;
prints how long after B's request the fake fal received B's job (first in, first out
would be about 10 job-lengths) and the most jobs ever in flight at fal.

Targets (issue 22, this 2-core machine): 300 users ≥ 85 % of the ideal, /healthz p95
< 50 ms, web CPU per generation ≤ a third of today's (--web-cpu-baseline-ms, measured
on main at b0ec54b: see bench/README.md); 100 users ≥ 90 %; fal-done-to-user-sees p95
≤ 1 s; fairness ≤ one job-length + 1 s with the cap held. Exit 1 when one is missed.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import math
import os
import random
import re
import resource
import shutil
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx

from bench import support
from bench.crowd_stack import (
    DB_NAME,
    Stack,
    active_generations,
    analyze,
    cpu_of,
    database_sessions,
    fal_job_ids,
    pipeline_times,
    postmaster_pid,
    read_series,
    spent,
    value_at,
)

FINAL = {"succeeded", "failed", "canceled"}
FAL_KEY = "bench-crowd-key-id:bench-crowd-key-secret"  # noqa: S105 - the fake's key
# Web CPU per generation at 300 users on main at b0ec54b (bench/README.md, "crowd.py");
# the target is a third of it or less.
WEB_CPU_BASELINE_MS = 217.6
# --- Simulated users ---------------------------------------------------------------------------


class Problem(Exception):
    """Something a user ran into (counted, then the user carries on)."""


class Mailbox:
    """Sign-in codes from the console mail the web processes write to their log."""

    MESSAGE = re.compile(r"Subject: [^\n]*?(\d{6})\n(?:[^\n]+\n){0,6}?To: ([^\n]+)\n")

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0
        self.pending = ""
        self.codes: dict[str, str] = {}

    def refresh(self) -> None:
        with self.path.open("rb") as log:
            log.seek(self.offset)
            data = log.read()
        self.offset += len(data)
        self.pending += data.decode(errors="replace")
        for match in self.MESSAGE.finditer(self.pending):
            self.codes[match.group(2).strip().lower()] = match.group(1)
        cut = self.pending.rfind("-" * 79)
        if cut >= 0:
            self.pending = self.pending[cut:]

    async def code_for(self, email: str, *, timeout: float = 30) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.refresh()
            if email in self.codes:
                return self.codes.pop(email)
            await asyncio.sleep(0.05)
        raise Problem("no sign-in code arrived")


def small_jpeg(seed: int) -> bytes:
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (320, 240), (seed * 37 % 256, seed * 91 % 256, 160))
    ImageDraw.Draw(image).ellipse((80, 60, 240, 180), fill=(240, 200, (seed * 13) % 256))
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=85)
    return buffer.getvalue()


@dataclass
class Seen:
    user: int
    generation_id: str
    requested_at: float
    accepted_at: float  # the 202 arrived
    seen_at: float
    status: str
    fal_job_id: str | None


@dataclass
class Tally:
    """What the users of one run (or of the whole bench) did."""

    seen: list[Seen] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    requests: Counter[str] = field(default_factory=Counter)
    sse_reconnects: int = 0


class User:
    def __init__(self, number: int, base: str, photo: bytes) -> None:
        self.number = number
        self.email = f"crowd-{number}@bench.stefna.invalid"
        self.photo = photo
        # A distinct client address (TRUSTED_PROXY_COUNT=1): per-address limits see separate people.
        address = f"10.{22 + number // 62500}.{number // 250 % 250}.{number % 250 + 1}"
        self.client = httpx.AsyncClient(
            base_url=base,
            timeout=30,
            headers={"X-Forwarded-For": address, "Accept-Language": "en"},
        )

    async def send(self, method: str, url: str, tally: Tally | None = None, **options: Any) -> httpx.Response:
        """One request, sent again once when a kept-alive connection turned out to be closed
        (the server drops idle ones after a few seconds, or restarted between runs), as a
        browser does. A generation's POST carries an Idempotency-Key, so a resend is safe."""
        try:
            return await self.client.request(method, url, **options)
        except (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError, httpx.ConnectError):
            if tally is not None:
                tally.requests["resent on a closed connection"] += 1
            return await self.client.request(method, url, **options)

    def csrf(self) -> dict[str, str]:
        return {"X-CSRFToken": self.client.cookies.get("csrftoken") or ""}

    async def sign_in(self, mailbox: Mailbox) -> None:
        """The browser's flow: the sign-in page, the email, the emailed code (the page it
        redirects to is not loaded: setup, not the load under test)."""
        client = self.client
        await self.send("GET", "/accounts/sign-in/")
        token = client.cookies.get("csrftoken") or ""
        answer = await self.send(
            "POST", "/accounts/sign-in/", data={"email": self.email, "csrfmiddlewaretoken": token, "next": "/"}
        )
        if answer.status_code != 302:
            raise Problem(f"sign-in: email step answered HTTP {answer.status_code}")
        code = await mailbox.code_for(self.email)
        answer = await self.send(
            "POST", "/accounts/code/", data={"code": code, "csrfmiddlewaretoken": token, "next": "/"}
        )
        if answer.status_code != 302:
            raise Problem(f"sign-in: code step answered HTTP {answer.status_code}")
        if "sessionid" not in client.cookies:
            raise Problem("sign-in: no session after the code")

    async def start(self, preset: str, tally: Tally) -> dict[str, Any]:
        tally.requests["POST /api/generations"] += 1
        answer = await self.send(
            "POST",
            "/api/generations",
            tally,
            data={"preset": preset, "is_public": "true"},
            files={"image": ("photo.jpg", self.photo, "image/jpeg")},
            headers={**self.csrf(), "Idempotency-Key": uuid.uuid4().hex},
        )
        if answer.status_code != 202:
            raise Problem(f"POST /api/generations: HTTP {answer.status_code} {error_code(answer)}")
        return answer.json()

    async def get(self, generation_id: str, tally: Tally, etag: str | None = None) -> httpx.Response:
        headers = {"If-None-Match": etag} if etag else None
        answer = await self.send("GET", f"/api/generations/{generation_id}", tally, headers=headers)
        tally.requests["GET /api/generations/{id}" + (" 304" if answer.status_code == 304 else "")] += 1
        if answer.status_code not in (200, 304):
            raise Problem(f"GET /api/generations/{{id}}: HTTP {answer.status_code} {error_code(answer)}")
        return answer

    async def watch_by_polling(self, generation: dict[str, Any], tally: Tally) -> tuple[dict[str, Any], float]:
        """Every second from the answer, as the status card's `hx-trigger="every 1s"`."""
        etag: str | None = None
        tick = time.monotonic()
        while generation["status"] not in FINAL or (generation["status"] == "succeeded" and not generation["images"]):
            tick = max(tick + 1.0, time.monotonic())
            await asyncio.sleep(tick - time.monotonic())
            answer = await self.get(generation["id"], tally, etag)
            if answer.status_code == 200:
                generation = answer.json()
                etag = answer.headers.get("etag")
        return generation, time.monotonic()

    async def watch_by_events(self, generation: dict[str, Any], tally: Tally) -> tuple[dict[str, Any], float]:
        """Server-Sent Events until the generation is final; reconnects resume with Last-Event-ID."""
        last_id: str | None = None
        generation_id = generation["id"]
        for _attempt in range(20):
            headers = {"Accept": "text/event-stream"}
            if last_id:
                headers["Last-Event-ID"] = last_id
            tally.requests["GET /api/generations/{id}/events"] += 1
            try:
                async with self.client.stream(
                    "GET", f"/api/generations/{generation_id}/events", headers=headers,
                    timeout=httpx.Timeout(30, read=15),
                ) as answer:  # fmt: skip
                    if answer.status_code == 204:  # "nothing more to say": the final state was sent
                        generation = (await self.get(generation_id, tally)).json()
                        if generation["status"] in FINAL:
                            return generation, time.monotonic()
                    if answer.status_code != 200:
                        raise Problem(f"GET /api/generations/{{id}}/events: HTTP {answer.status_code}")
                    data: list[str] = []
                    async for line in answer.aiter_lines():
                        if line.startswith(":"):
                            continue
                        if line:
                            name, _, value = line.partition(":")
                            value = value.removeprefix(" ")
                            if name == "id":
                                last_id = value
                            elif name == "data":
                                data.append(value)
                            continue
                        if not data:
                            continue
                        payload, data = "\n".join(data), []
                        tally.requests["SSE events"] += 1
                        outcome = await self._read_event(payload, generation_id, tally)
                        if outcome is not None:
                            return outcome, time.monotonic()
            except httpx.ReadTimeout:
                # Quiet for a while: see where it stands (an event may have been missed).
                answer = await self.get(generation_id, tally)
                generation = answer.json()
                if generation["status"] in FINAL:
                    return generation, time.monotonic()
            tally.sse_reconnects += 1
        raise Problem("SSE: the stream kept ending before the generation was final")

    async def _read_event(self, payload: str, generation_id: str, tally: Tally) -> dict[str, Any] | None:
        """The final generation if this event says it is final, else None. An event that
        carries no status, or a success without its images, is followed by one GET."""
        try:
            event = json.loads(payload)
        except ValueError:
            event = None
        body = event.get("generation", event) if isinstance(event, dict) else None
        status = body.get("status") if isinstance(body, dict) else None
        # A status comes only from a dict body; the isinstance test says so again for mypy.
        if isinstance(body, dict) and status in FINAL and (status != "succeeded" or body.get("images")):
            return body
        if status is None or status == "succeeded":
            generation = (await self.get(generation_id, tally)).json()
            if generation["status"] in FINAL:
                return generation
        return None

    async def cycle(self, preset: str, channel: str, tally: Tally) -> None:
        if channel == "page":
            await self.cycle_as_browser(preset, tally)
            return
        requested_at = time.monotonic()
        generation = await self.start(preset, tally)
        accepted_at = time.monotonic()
        if channel == "sse":
            generation, seen_at = await self.watch_by_events(generation, tally)
        else:
            generation, seen_at = await self.watch_by_polling(generation, tally)
        images = generation.get("images") or []
        tally.seen.append(
            Seen(self.number, generation["id"], requested_at, accepted_at, seen_at, generation["status"],
                 images[0].get("fal_job_id") if images else None)
        )  # fmt: skip
        if generation["status"] != "succeeded":
            raise Problem(f"generation {generation['status']}: {(generation.get('error') or {}).get('code')}")
        await self.look(images[0]["url"], "/api/feed", tally)

    async def look(self, image_url: str, feed: str, tally: Tally) -> None:
        """The result image once, then a glance at the feed."""
        tally.requests["GET result image"] += 1
        image = await self.send("GET", image_url, tally, follow_redirects=True)
        if image.status_code != 200 or not image.content:
            raise Problem(f"result image: HTTP {image.status_code}")
        tally.requests[f"GET {feed}"] += 1
        answer = await self.send("GET", feed, tally)
        if answer.status_code != 200:
            raise Problem(f"GET {feed}: HTTP {answer.status_code}")

    async def cycle_as_browser(self, preset: str, tally: Tally) -> None:
        """What a person in the browser makes the server do (--browser): the studio form's
        POST and its redirect to the status page (and the photo it shows), then static/js's
        live status: the page's event stream, whose events carry the card (a page whose
        stream sends the API's JSON instead fetches the card after each event, with the ETag
        the browser kept), until the card is final. Then the result image and the feed page.
        The feed's thumbnails are left out, as they come from Cloudinary in production."""
        requested_at = time.monotonic()
        tally.requests["POST / (studio form)"] += 1
        answer = await self.send(
            "POST", "/", tally, data={"preset": preset, "is_public": "on", "prompt": ""},
            files={"image": ("photo.jpg", self.photo, "image/jpeg")}, headers=self.csrf(),
        )  # fmt: skip
        found = re.search(r"/g/([0-9a-f-]{36})/$", answer.headers.get("location", ""))
        if answer.status_code != 302 or not found:
            raise Problem(f"POST / (studio form): HTTP {answer.status_code}")
        generation_id = found.group(1)
        tally.requests["GET /g/{id}/"] += 1
        page = await self.send("GET", f"/g/{generation_id}/", tally)
        if page.status_code != 200:
            raise Problem(f"GET /g/{{id}}/: HTTP {page.status_code}")
        accepted_at = time.monotonic()
        html = page.text
        if source := re.search(r'class="status-source" src="([^"]+)"', html):
            tally.requests["GET source photo"] += 1
            await self.send("GET", source.group(1), tally)
        status = card_status(html)
        etag: str | None = None
        events_url = re.search(r'data-events-url="([^"]+)"', html)
        if status not in FINAL and events_url:
            async with self.client.stream(
                "GET", events_url.group(1).replace("&amp;", "&"), headers={"Accept": "text/event-stream"},
                timeout=httpx.Timeout(30, read=15),
            ) as stream:  # fmt: skip
                tally.requests["GET events (the page's stream)"] += 1
                event_id, data = "", []
                async for line in stream.aiter_lines():
                    if line.startswith("id:"):
                        event_id = line[3:].strip()
                    elif line.startswith("data:"):
                        data.append(line[5:].removeprefix(" "))
                    if line or not data:
                        continue
                    payload, data = "\n".join(data), []
                    tally.requests["SSE events"] += 1
                    if event_id == card_version(html):
                        continue  # the card already shows this version
                    if payload.lstrip().startswith("<"):
                        html = payload  # the card itself: stefna.js swaps it in
                    else:  # the API's JSON (an older page): stefna.js fetches the card
                        headers = {"HX-Request": "true", **({"If-None-Match": etag} if etag else {})}
                        tally.requests["GET /g/{id}/card/"] += 1
                        card = await self.send("GET", f"/g/{generation_id}/card/", tally, headers=headers)
                        if card.status_code == 200:
                            html, etag = card.text, card.headers.get("etag")
                    status = card_status(html)
                    if status in FINAL:
                        break
        seen_at = time.monotonic()
        tally.seen.append(Seen(self.number, generation_id, requested_at, accepted_at, seen_at, status, None))
        if status != "succeeded":
            raise Problem(f"generation {status} (the card after the stream)")
        image = re.search(r'class="(?:compare-after|result-image)" src="([^"]+)"', html)
        if not image:
            raise Problem("the succeeded card shows no image")
        await self.look(image.group(1).replace("&amp;", "&"), "/feed/", tally)

    async def loop(self, preset: str, channel: str, tally: Tally, *, stagger: float, stop_at: float) -> None:
        await asyncio.sleep(stagger)
        while time.monotonic() < stop_at:
            try:
                await self.cycle(preset, channel, tally)
            except (Problem, httpx.HTTPError, ValueError, KeyError) as exc:
                tally.errors[str(exc) if isinstance(exc, Problem) else type(exc).__name__] += 1
                await asyncio.sleep(1)


def error_code(answer: httpx.Response) -> str:
    try:
        return str(answer.json().get("code", ""))
    except ValueError:
        return answer.text[:80].replace("\n", " ")


def card_version(html: str) -> str:
    found = re.search(r'data-version="(\d+)"', html)
    return found.group(1) if found else ""


def card_status(html: str) -> str:
    found = re.search(r'data-testid="status-card" data-status="(\w+)"', html)
    return found.group(1) if found else ""


async def sign_in_all(users: list[User], mailbox: Mailbox) -> Counter[str]:
    failures: Counter[str] = Counter()
    gate = asyncio.Semaphore(16)

    async def one(user: User) -> None:
        async with gate:
            try:
                await user.sign_in(mailbox)
            except (Problem, httpx.HTTPError) as exc:
                failures[str(exc) if isinstance(exc, Problem) else type(exc).__name__] += 1

    await asyncio.gather(*(one(user) for user in users))
    return failures


async def detect_channel(user: User, preset: str) -> tuple[str, bool]:
    """("sse" or "poll", whether the status answers carry an ETag), from one generation."""
    tally = Tally()
    generation = await user.start(preset, tally)
    try:
        async with user.client.stream(
            "GET", f"/api/generations/{generation['id']}/events", headers={"Accept": "text/event-stream"}, timeout=5
        ) as answer:
            sse = answer.status_code == 200 and answer.headers.get("content-type", "").startswith("text/event-stream")
    except httpx.HTTPError:
        sse = False
    first = await user.get(generation["id"], tally)
    has_etag = "etag" in first.headers
    await user.watch_by_polling(first.json(), tally)
    return ("sse" if sse else "poll"), has_etag


async def fal_jobs(fal_base: str, ca: str) -> dict[str, list[Any]]:
    """Request id → [submitted, completed, webhook sent (None without webhooks)]."""
    async with httpx.AsyncClient(verify=ca, timeout=30) as client:
        return (await client.get(f"{fal_base}/_fake/jobs")).json()


# --- One crowd run -----------------------------------------------------------------------------


@dataclass
class Verdicts:
    rows: list[tuple[str, str, str, str]] = field(default_factory=list)  # (figure, value, target, verdict)

    def add(self, figure: str, value: str, target: str, met: bool | None) -> str:
        verdict = "" if met is None else "MET" if met else "MISSED"
        self.rows.append((figure, value, target, verdict))
        return verdict

    @property
    def missed(self) -> int:
        return sum(1 for row in self.rows if row[3] == "MISSED")


def share_target(users: int) -> float | None:
    if users >= 300:
        return 0.85
    if users >= 100:
        return 0.90
    return None


async def healthz_probe_cost(stack: Stack, probes: Path, *, seconds: float = 4.0) -> float:
    """Web CPU seconds one /healthz probe costs, measured while no user is active. Runs
    subtract the probe's share: back to back, the probe comes more often the faster
    /healthz answers, and would otherwise charge a faster server more per generation."""
    await asyncio.sleep(1)
    before, began = cpu_of(stack.web_pids()), time.monotonic()
    await asyncio.sleep(seconds)
    after, ended = cpu_of(stack.web_pids()), time.monotonic()
    count = sum(1 for row in read_series(probes) if began <= row[0] < ended)
    return spent(before, after) / count if count else 0.0


async def crowd_run(
    stack: Stack, users: list[User], *, preset: str, channel: str, args: argparse.Namespace,
    fal_base: str, ca: str, samples: Path, probes: Path, probe_cost: float, verdicts: Verdicts,
) -> None:  # fmt: skip
    count = len(users)
    stack.start_app(max_concurrent=count)
    tally = Tally()
    log_sizes = stack.log_sizes()
    began = time.monotonic()
    measure_from = began + args.warmup
    stop_at = measure_from + args.seconds
    tasks = [
        asyncio.create_task(
            user.loop(preset, channel, tally, stagger=random.uniform(0, args.latency), stop_at=stop_at)  # noqa: S311
        )
        for user in users
    ]
    await asyncio.sleep(measure_from - time.monotonic() - 1)
    await asyncio.to_thread(analyze)  # the end of the warm-up: statistics, as in production
    await asyncio.sleep(max(0.0, measure_from - time.monotonic()))
    web_before, worker_before = cpu_of(stack.web_pids()), cpu_of(stack.worker_pids())
    redis_pids = {args.redis_pid} if args.redis_pid else set()
    redis_before = cpu_of(redis_pids)
    client_before = resource.getrusage(resource.RUSAGE_SELF)
    sessions_before = database_sessions()
    load_before = os.getloadavg()[0]
    await asyncio.sleep(stop_at - time.monotonic())
    web_after, worker_after = cpu_of(stack.web_pids()), cpu_of(stack.worker_pids())
    redis_after = cpu_of(redis_pids)
    client_after = resource.getrusage(resource.RUSAGE_SELF)
    sessions = database_sessions() - sessions_before
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await asyncio.sleep(0.3)  # the sampler's next line covers stop_at
    jobs = await fal_jobs(fal_base, ca)
    logged = stack.exceptions_since(log_sizes)

    window = [seen for seen in tally.seen if measure_from <= seen.seen_at < stop_at]
    succeeded = [seen for seen in window if seen.status == "succeeded"]
    per_minute = len(succeeded) * 60 / args.seconds
    ideal = count * 60 / args.latency
    # A browser's card does not name fal's request id: read it from the database.
    unknown = [seen.generation_id for seen in succeeded if seen.fal_job_id is None]
    known = await asyncio.to_thread(fal_job_ids, unknown)
    for seen in succeeded:
        seen.fal_job_id = seen.fal_job_id or known.get(seen.generation_id)
    lags = [seen.seen_at - jobs[seen.fal_job_id][1] for seen in succeeded if seen.fal_job_id in jobs]
    callbacks = [
        seen.seen_at - posted for seen in succeeded
        if seen.fal_job_id in jobs and (posted := jobs[seen.fal_job_id][2]) is not None
    ]  # fmt: skip
    whole = [seen.seen_at - seen.requested_at for seen in succeeded]
    upload = [seen.accepted_at - seen.requested_at for seen in succeeded]
    # Where the time from fal's completion to the user goes: the worker's clock and ours
    # are the same machine's, and CLOCK_MONOTONIC is system-wide.
    to_unix = time.time() - time.monotonic()
    times = await asyncio.to_thread(pipeline_times, [seen.generation_id for seen in succeeded])
    legs = [
        (times[seen.generation_id][0] - (jobs[seen.fal_job_id][1] + to_unix),
         times[seen.generation_id][1] - times[seen.generation_id][0],
         seen.seen_at + to_unix - times[seen.generation_id][1])
        for seen in succeeded if seen.fal_job_id in jobs and seen.generation_id in times
    ]  # fmt: skip
    worker_saw, recorded, user_sees = ([leg[part] for leg in legs] for part in range(3))
    to_fal = [jobs[seen.fal_job_id][0] - seen.requested_at for seen in succeeded if seen.fal_job_id in jobs]
    series = read_series(samples)
    database_cpu = value_at(series, stop_at, 1) - value_at(series, measure_from, 1)
    reaped_cpu = value_at(series, stop_at, 2) - value_at(series, measure_from, 2)
    health = [row for row in read_series(probes) if measure_from <= row[0] < stop_at]
    health_ms = [row[1] for row in health if row[2] == 1]
    health_failed = sum(1 for row in health if row[2] != 1)
    client_cpu = (client_after.ru_utime + client_after.ru_stime) - (client_before.ru_utime + client_before.ru_stime)

    def per_generation(seconds: float) -> float:
        return 1000 * seconds / len(succeeded) if succeeded else float("nan")

    web_seconds = spent(web_before, web_after)
    web_ms = per_generation(max(0.0, web_seconds - len(health) * probe_cost))
    print(
        f"\nN = {count} users, L = {args.latency:g} s, {args.seconds:g} s steady after {args.warmup:g} s warm-up, "
        f"channel {channel}, {'webhooks' if args.webhooks else 'no webhooks'}, FAL_MAX_CONCURRENT={count}, cache {'Redis' if args.redis else 'the database'}, "
        f"load average {load_before:.1f} → {os.getloadavg()[0]:.1f}"
    )
    support.print_table(
        [
            ["generations a minute", f"{per_minute:.0f} ({len(succeeded)} in the window)",
             f"{100 * per_minute / ideal:.1f} % of the ideal {ideal:.0f}"],
            ["fal done → user sees", f"p50 {fmt_s(lags, 0.5)} p95 {fmt_s(lags, 0.95)}",
             f"max {fmt_s(lags, 1.0)}, {len(lags)} generations"],
            *(
                [["fal's callback → user sees", f"p50 {fmt_s(callbacks, 0.5)} p95 {fmt_s(callbacks, 0.95)}",
                  f"max {fmt_s(callbacks, 1.0)}, {len(callbacks)} webhooks"]]
                if args.webhooks else []
            ),
            ["of which", f"fal done → worker saw p50 {fmt_s(worker_saw, 0.5)} p95 {fmt_s(worker_saw, 0.95)}",
             f"saw → recorded p50 {fmt_s(recorded, 0.5)} p95 {fmt_s(recorded, 0.95)}, "
             f"recorded → user sees p50 {fmt_s(user_sees, 0.5)} p95 {fmt_s(user_sees, 0.95)}"],
            ["request → user sees", f"p50 {fmt_s(whole, 0.5)} p95 {fmt_s(whole, 0.95)}",
             f"of which upload answered p50 {fmt_s(upload, 0.5)} p95 {fmt_s(upload, 0.95)}, "
             f"job reached fal p50 {fmt_s(to_fal, 0.5)} p95 {fmt_s(to_fal, 0.95)}"],
            ["CPU per generation: web", f"{web_ms:.1f} ms",
             f"{web_seconds:.1f} s in all, less {len(health)} /healthz probes at {1000 * probe_cost:.1f} ms; "
             f"{per_generation(web_seconds):.1f} ms with them"],
            ["CPU per generation: worker", f"{per_generation(spent(worker_before, worker_after)):.1f} ms",
             f"{spent(worker_before, worker_after):.1f} s in all"],
            ["CPU per generation: PostgreSQL", f"≥ {per_generation(database_cpu):.1f} ms",
             f"≤ {per_generation(database_cpu + reaped_cpu):.1f} ms with every database's closed backends; "
             f"{sessions / max(1, len(succeeded)):.1f} connections opened per generation"],
            *(
                [["CPU per generation: Redis", f"{per_generation(spent(redis_before, redis_after)):.1f} ms",
                  f"{spent(redis_before, redis_after):.1f} s in all (the whole server)"]]
                if redis_pids else []
            ),
            ["CPU per generation: this client", f"{per_generation(client_cpu):.1f} ms", f"{client_cpu:.1f} s in all"],
            ["/healthz", f"p50 {fmt_ms(health_ms, 0.5)} p95 {fmt_ms(health_ms, 0.95)}",
             f"{len(health_ms)} probes, {health_failed} failed"],
            ["requests in the run", ", ".join(f"{name} {n}" for name, n in sorted(tally.requests.items())), ""],
            ["errors in the run", ", ".join(f"{name} ×{n}" for name, n in tally.errors.most_common()) or "none",
             f"SSE reconnects {tally.sse_reconnects}" if channel == "sse" else ""],
            ["exceptions logged (whole run)",
             ", ".join(f"{line} ×{n}" for line, n in logged.most_common(5)) or "none", ""],
        ],
        ["figure", "value", "detail"],
    )  # fmt: skip

    target = share_target(count)
    share = per_minute / ideal
    verdicts.add(
        f"N={count} generations/min", f"{per_minute:.0f} = {100 * share:.1f} % of ideal",
        f"≥ {100 * target:.0f} %" if target else "(no target)", share >= target if target else None,
    )  # fmt: skip
    p95 = support.percentile(lags, 0.95) if lags else math.inf
    if args.webhooks:
        callback_p95 = support.percentile(callbacks, 0.95) if callbacks else math.inf
        verdicts.add(
            f"N={count} fal's callback → user sees p95", fmt_s(callbacks, 0.95), "≤ 0.5 s", callback_p95 <= 0.5
        )
    else:
        verdicts.add(f"N={count} fal done → user sees p95", fmt_s(lags, 0.95), "≤ 1 s", p95 <= 1.0)
    if count >= 300:
        health_p95 = support.percentile(health_ms, 0.95) if health_ms else math.inf
        verdicts.add(
            f"N={count} /healthz p95", fmt_ms(health_ms, 0.95), "< 50 ms", health_p95 < 50 and not health_failed
        )
        baseline = args.web_cpu_baseline_ms
        verdicts.add(
            f"N={count} web CPU per generation", f"{web_ms:.1f} ms",
            f"≤ {baseline / 3:.1f} ms (a third of {baseline:.1f})" if baseline else "(no baseline given)",
            web_ms <= baseline / 3 if baseline else None,
        )  # fmt: skip
    if tally.errors:
        verdicts.add(f"N={count} errors", str(sum(tally.errors.values())), "(counted, not a target)", None)


def fmt_s(values: list[float], fraction: float) -> str:
    return f"{support.percentile(values, fraction):.2f} s" if values else "–"


def fmt_ms(values: list[float], fraction: float) -> str:
    return f"{support.percentile(values, fraction):.1f} ms" if values else "–"


# --- Fairness ------------------------------------------------------------------------------------


async def fairness(
    stack: Stack, heavy: User, light: User, *, preset: str, args: argparse.Namespace, fal_base: str, ca: str,
    verdicts: Verdicts,
) -> None:  # fmt: skip
    cap = 4
    deadline = time.monotonic() + 60
    while active_generations() and time.monotonic() < deadline:  # the last run's tail
        await asyncio.sleep(0.5)
    stack.start_app(max_concurrent=cap)
    tally = Tally()
    began = time.monotonic()
    queued = await asyncio.gather(*(heavy.start(preset, tally) for _ in range(args.heavy_jobs)), return_exceptions=True)
    refused = [item for item in queued if isinstance(item, BaseException)]
    requested_at = time.monotonic()
    mine = await light.start(preset, tally)
    bound = requested_at + (math.ceil(args.heavy_jobs / cap) + 2) * args.latency + 10
    fal_job_id = None
    while time.monotonic() < bound and fal_job_id is None:
        generation = (await light.get(mine["id"], tally)).json()
        fal_job_id = next((a["fal_job_id"] for a in generation["attempts"] if a.get("fal_job_id")), None)
        if fal_job_id is None:
            await asyncio.sleep(0.2)
    jobs = await fal_jobs(fal_base, ca)
    # The most jobs in flight at fal at once since the scenario began (submission → completion).
    edges = sorted(
        [(start, 1) for start, *_ in jobs.values() if start >= began]
        + [(end, -1) for start, end, *_ in jobs.values() if start >= began]
    )
    in_flight = peak = 0
    for _, step in edges:
        in_flight += step
        peak = max(peak, in_flight)
    fifo = math.ceil(args.heavy_jobs / cap) * args.latency
    print(
        f"\nFairness: FAL_MAX_CONCURRENT={cap}, user A queued {args.heavy_jobs} at once "
        f"({len(refused)} refused), then user B queued 1; L = {args.latency:g} s, load average {os.getloadavg()[0]:.1f}"
    )
    target = args.latency + 1
    cap_held = peak <= cap
    if fal_job_id is None or fal_job_id not in jobs:
        print(f"  B's job had not reached fal {bound - requested_at:.0f} s after B's request (first in, first out: "
              f"about {fifo:.0f} s)")  # fmt: skip
        verdicts.add("fairness: B's job starts at fal", f"> {bound - requested_at:.0f} s", f"≤ {target:g} s", False)
    else:
        waited = jobs[fal_job_id][0] - requested_at
        print(f"  B's job reached fal {waited:.2f} s after B's request (first in, first out: about {fifo:.0f} s); "
              f"most jobs in flight at fal at once: {peak} (cap {cap}: {'held' if cap_held else 'NOT held'})")  # fmt: skip
        verdicts.add(
            "fairness: B's job starts at fal", f"{waited:.2f} s (peak in flight {peak})",
            f"≤ {target:g} s, cap {cap} held", waited <= target and cap_held,
        )  # fmt: skip
    if refused:
        print(f"  refused: {Counter(str(item) for item in refused).most_common()}")


# --- Main ----------------------------------------------------------------------------------------


async def crowd(args: argparse.Namespace, stack: Stack, fal_base: str, ca: str, samples: Path, probes: Path) -> int:
    verdicts = Verdicts()
    counts = [int(part) for part in args.users.split(",") if part.strip()]
    needed = max([*counts, 2 if args.fairness else 0])
    stack.start_app(max_concurrent=counts[0] if counts else 4)
    presets = httpx.get(f"{stack.base}/api/presets", timeout=10).json()
    preset = next(p["slug"] for p in presets if not p["requires_prompt"] and p["num_images"] == 1)
    users = [User(number, stack.base, small_jpeg(number)) for number in range(needed)]
    began = time.monotonic()
    failures = await sign_in_all(users, Mailbox(stack.workdir / "web.log"))
    print(
        f"{needed} users signed in through the email-code flow in {time.monotonic() - began:.1f} s"
        + (f"; failures: {dict(failures)}" if failures else ""),
        flush=True,
    )
    # A user whose sign-in failed still runs (its 401s are counted); these two must work.
    signed_in = [user for user in users if "sessionid" in user.client.cookies]
    if len(signed_in) < 2:
        raise RuntimeError(f"only {len(signed_in)} of {needed} users could sign in: {dict(failures)}")
    channel, has_etag = await detect_channel(signed_in[0], preset)
    if args.browser:
        channel = "page"
    print(
        "Watching channel: "
        + ("the browser's: the studio form, the status page and its event stream" if channel == "page" else
           "Server-Sent Events (GET /api/generations/{id}/events)" if channel == "sse" else
           "polling GET /api/generations/{id} every 1 s" + (" with If-None-Match (ETag given)" if has_etag else
                                                               " (no ETag given)"))
        + f"; preset {preset}",
        flush=True,
    )  # fmt: skip
    probe_cost = await healthz_probe_cost(stack, probes)
    print(f"One /healthz probe costs the web {1000 * probe_cost:.1f} ms of CPU (measured with no user active)")
    try:
        for count in counts:
            await crowd_run(stack, users[:count], preset=preset, channel=channel, args=args, fal_base=fal_base, ca=ca,
                            samples=samples, probes=probes, probe_cost=probe_cost, verdicts=verdicts)  # fmt: skip
        if args.fairness:
            await fairness(stack, signed_in[0], signed_in[1], preset=preset, args=args, fal_base=fal_base, ca=ca,
                           verdicts=verdicts)  # fmt: skip
    finally:
        await asyncio.gather(*(user.client.aclose() for user in users), return_exceptions=True)

    print(f"\nSummary (channel {channel}, L = {args.latency:g} s, load average now {os.getloadavg()[0]:.1f})")
    support.print_table(verdicts.rows, ["figure", "value", "target", "result"])
    met = sum(1 for row in verdicts.rows if row[3] == "MET")
    print(f"crowd: {met} targets met, {verdicts.missed} missed")
    return 1 if verdicts.missed else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", default="20,100,300", help="comma-separated crowd sizes, one run each")
    parser.add_argument("--latency", type=float, default=4.0, help="seconds the fake fal takes per job (L)")
    parser.add_argument("--seconds", type=float, default=45.0, help="steady-state window of each run")
    parser.add_argument("--warmup", type=float, default=8.0, help="seconds before the window (not counted)")
    parser.add_argument("--workers", type=int, default=1, help="db_worker processes")
    parser.add_argument("--web-processes", type=int, default=2, help="WEB_CONCURRENCY")
    parser.add_argument("--heavy-jobs", type=int, default=40, help="fairness: jobs user A queues at once")
    parser.add_argument("--no-fairness", dest="fairness", action="store_false")
    parser.add_argument("--web-cpu-baseline-ms", type=float, default=WEB_CPU_BASELINE_MS,
                        help="today's web CPU per generation at 300 users (the target is a third of it)")  # fmt: skip
    parser.add_argument("--quick", action="store_true", help="10 and 30 users, 15 s windows, 12 heavy jobs")
    parser.add_argument("--keep-db", action="store_true")
    parser.add_argument(
        "--browser", action="store_true",
        help="users act as the browser does: the studio form, the status page and its live card",
    )  # fmt: skip
    parser.add_argument(
        "--webhooks", action="store_true",
        help="fal calls back (FAL_WEBHOOK_BASE_URL set): adds fal's callback → user sees (target p95 ≤ 0.5 s)",
    )  # fmt: skip
    parser.add_argument(
        "--redis", nargs="?", const="redis://127.0.0.1:6379/14", default="", metavar="URL",
        help="REDIS_URL for the web and worker, as compose runs them (flushed first; default db 14)",
    )  # fmt: skip
    args = parser.parse_args()
    if args.quick:
        args.users, args.seconds, args.warmup, args.heavy_jobs = "10,30", 15.0, 6.0, 12

    niceness = support.raise_priority()
    work = Path(tempfile.mkdtemp(prefix="stefna-bench-crowd-"))
    port = support.free_port()
    stack = Stack(workdir=work, env={}, base=f"http://127.0.0.1:{port}", web_processes=args.web_processes,
                  workers=args.workers)  # fmt: skip
    helper = [support.PYTHON, str(Path(__file__).resolve().parent / "crowd_stack.py")]
    print(f"Crowd bench: niceness {niceness}, load average {os.getloadavg()[0]:.1f}, work in {work}", flush=True)
    try:
        fal = stack.spawn("fake-fal", [*helper, "--latency", str(args.latency), "--serve-fake-fal", str(work / "certs"),
                                       *(["--webhooks"] if args.webhooks else [])], env=support.bench_env())  # fmt: skip
        deadline = time.monotonic() + 30
        while not (found := re.search(r"port=(\d+) ca=(\S+)", (work / "fake-fal.log").read_text(errors="replace"))):
            if fal.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the fake fal did not start:\n" + stack.tail("fake-fal"))
            time.sleep(0.05)
        fal_port, ca = found.group(1), found.group(2)
        url = support.create_database(DB_NAME)
        stack.env = support.bench_env(
            DATABASE_URL=url,
            DB_CONN_MAX_AGE="0",  # as compose runs the ASGI server (README: Django's advice for ASGI)
            # Without --redis the cache is the database's (sessions, rate limits and all).
            REDIS_URL=args.redis,
            FAL_KEY=FAL_KEY,
            FAL_QUEUE_RUN_HOST=f"127.0.0.1:{fal_port}",
            FAL_RUN_HOST=f"127.0.0.1:{fal_port}",
            FAL_WEBHOOK_JWKS_URL=f"https://127.0.0.1:{fal_port}/.well-known/jwks.json",
            # With --webhooks fal calls back (every submission carries the URL); else the worker asks.
            FAL_WEBHOOK_BASE_URL=f"http://127.0.0.1:{port}" if args.webhooks else "",
            SSL_CERT_FILE=ca,
            ALLOW_PRIVATE_RESULT_URLS="1",
            MEDIA_ROOT=str(work / "media"),
            MEDIA_ROOT_SHARED="1",
            WEB_CONCURRENCY=str(args.web_processes),
            GUNICORN_BIND=f"127.0.0.1:{port}",
            # Each user from its own address, as behind a proxy: the sign-in limits count per address.
            TRUSTED_PROXY_COUNT="1",
            # Plain http on loopback: cookies without the Secure flag, or the client would not send them.
            SESSION_COOKIE_SECURE="0",
            CSRF_COOKIE_SECURE="0",
            DAILY_CREDITS="1000000",
            RATE_LIMIT_GENERATIONS_PER_MINUTE="1000",
            EMAIL_BACKEND="django.core.mail.backends.console.EmailBackend",
            PYTHONUNBUFFERED="1",
            # A restart between runs need not wait for the crowd's idle keep-alive connections.
            GUNICORN_GRACEFUL_TIMEOUT="5",
        )
        args.redis_pid = None
        if args.redis:
            import redis

            server = redis.Redis.from_url(args.redis)
            server.flushdb()  # sessions and limits of an earlier run
            args.redis_pid = int(server.info("server")["process_id"])  # its CPU is counted like PostgreSQL's
        began = time.monotonic()
        stack.manage("migrate", "--no-input")
        # DEBUG=0 serves hashed static names from the manifest, as a deployment does (pages need it).
        stack.manage("collectstatic", "--no-input", "--verbosity", "0")
        print(f"Database {DB_NAME} migrated, static files collected in {time.monotonic() - began:.1f} s", flush=True)
        samples, probes = work / "postgres-cpu.txt", work / "healthz.txt"
        stack.spawn("sampler", [*helper, "--sample-postgres", DB_NAME, str(postmaster_pid()), str(samples)],
                    env=support.bench_env())  # fmt: skip
        stack.spawn(
            "probe", [*helper, "--probe-healthz", f"{stack.base}/healthz", str(probes)], env=support.bench_env()
        )
        return asyncio.run(crowd(args, stack, f"https://127.0.0.1:{fal_port}", ca, samples, probes))
    finally:
        stack.stop_all()
        if not args.keep_db:
            support.drop_database(DB_NAME)
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
