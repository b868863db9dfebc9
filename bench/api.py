#!/usr/bin/env python
"""API and page latency on a realistic data set.

Fills a throwaway PostgreSQL database (`stefna_bench`) with 1,000 users, 100,000
generations, 200,000 images, their provider attempts and ledger entries (COPY, about
15 to 40 seconds), serves the app with gunicorn (DEBUG=0) and measures each route with a
concurrent keep-alive client: p50/p95/p99, requests per second and the target.

First it EXPLAINs, on the same data, every query the hot routes, the poller and the fal
webhook make, and prints the index each one uses, so a missing index shows up as a
sequential scan in the output rather than as a slow page in production.

    .venv/bin/python bench/api.py [--seconds 3] [--concurrency 1,4,16] [--workers 4] [--keep-db] [--only REGEX]

Targets are judged at the first concurrency (1: service latency, the server not saturated);
4 and 16 show throughput and queueing. Why 4 gunicorn sync workers on 2 cores: a Django
request is CPU-bound Python with short waits on PostgreSQL; two workers per core keep
both cores busy while one waits, and more only add memory and context switches, on
cores that PostgreSQL and this load generator share. Measured at concurrency 16: quota
65 / 86 / 86 req/s and the history page 13 / 25 / 19 req/s with 2 / 4 / 8 workers.
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import json
import os
import random
import re
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import support

DB_NAME = "stefna_bench"
USERS = 1_000
GENERATIONS = 100_000
MEDIA = 200_000
PER_USER = GENERATIONS // USERS
SESSIONS = 64
SEED = 20261122
# Targets from issue 10 (milliseconds).
STATUS_P50 = 10.0
PAGE_P95 = 50.0
START_P50 = 80.0
# A route measured as a yardstick (the framework's own cost), not against a target.
REFERENCE = "GET /api/no-such-route"


# --- The data set ---------------------------------------------------------------------------


@dataclass
class DataSet:
    tokens: list[str]  # plain API tokens, one per user (index = user number)
    user_ids: list[uuid.UUID]
    generations_of: dict[uuid.UUID, list[uuid.UUID]]  # newest first
    sessions: list[tuple[uuid.UUID, str]]  # (user id, session key)
    seconds: float
    counts: dict[str, int]


def _copy(cursor, model, columns: list[str], rows: Iterable[tuple]) -> int:  # type: ignore[no-untyped-def]
    """COPY `rows` (values for `columns`, by attname) into `model`'s table; every other
    column gets the field's default, so a column added later does not break the bench
    unless it is NOT NULL without a default (then this says which)."""
    from django.db.models import AutoField, BigAutoField, SmallAutoField

    fields = {
        field.attname: field
        for field in model._meta.concrete_fields
        if not isinstance(field, AutoField | BigAutoField | SmallAutoField)
    }
    unknown = set(columns) - set(fields)
    if unknown:
        raise RuntimeError(f"bench seed: {model.__name__} has no field(s) {sorted(unknown)}")
    missing = [name for name in fields if name not in columns]
    defaults = []
    # A callable default (a share id, say) is drawn for each row, as Django would.
    per_row = [name for name in missing if callable(fields[name].default)]
    for name in missing:
        if name in per_row:
            continue
        value = fields[name].get_default()
        if value is None and not fields[name].null:
            raise RuntimeError(
                f"bench seed: {model.__name__}.{name} is NOT NULL without a default: add it to bench/api.py"
            )
        defaults.append(_db_value(value))
    constant = [name for name in missing if name not in per_row]
    names = ", ".join(f'"{fields[name].column}"' for name in [*columns, *constant, *per_row])
    count = 0
    began = time.perf_counter()
    with cursor.copy(f'COPY "{model._meta.db_table}" ({names}) FROM STDIN') as copy:
        for row in rows:
            drawn = [_db_value(fields[name].get_default()) for name in per_row]
            copy.write_row((*row, *defaults, *drawn))
            count += 1
    if os.environ.get("BENCH_VERBOSE"):
        print(f"  COPY {model._meta.db_table}: {count:,} rows in {time.perf_counter() - began:.1f} s")
    return count


def _db_value(value: object) -> object:
    return json.dumps(value) if isinstance(value, dict | list) else value


def seed(now: dt.datetime) -> DataSet:
    """Insert the data set in one transaction with COPY. Deterministic (seeded RNG)."""
    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
    from django.contrib.sessions.backends.db import SessionStore
    from django.db import connection, transaction

    from credits.models import CreditEntry, Wallet
    from generation.models import Attempt, Generation, Media
    from presets.models import Preset
    from stefna.accounts.models import ApiToken, User
    from stefna.accounts.services import TOKEN_PREFIX, hash_token

    started = time.perf_counter()
    rng = random.Random(SEED)

    new_id = uuid.uuid4

    presets = list(Preset.objects.filter(is_active=True).values("id", "slug", "name", "kind", "prompt", "model_chain"))
    today = now.date()
    user_ids = [new_id() for _ in range(USERS)]
    tokens = [f"{TOKEN_PREFIX}bench{number:04d}_{rng.getrandbits(128):032x}" for number in range(USERS)]

    generation_rows: list[tuple] = []
    attempt_rows: list[tuple] = []
    media_plan: list[tuple] = []  # (generation row, user id, count)
    ledger_rows: list[tuple] = []
    wallet_rows: list[tuple] = []
    generations_of: dict[uuid.UUID, list[tuple[dt.datetime, uuid.UUID]]] = {}
    statuses = {"succeeded": 0, "failed": 0, "canceled": 0, "running": 0, "queued": 0}

    for user_id in user_ids:
        events: list[tuple[dt.datetime, int, str, uuid.UUID | None]] = []
        mine = []
        for _ in range(PER_USER):
            preset = rng.choice(presets)
            roll = rng.random()
            if roll < 0.004:
                status, created = "queued", now - dt.timedelta(seconds=rng.uniform(1, 60))
            elif roll < 0.01:
                status, created = "running", now - dt.timedelta(seconds=rng.uniform(5, 120))
            else:
                status = "failed" if roll < 0.07 else "canceled" if roll < 0.09 else "succeeded"
                created = now - dt.timedelta(seconds=rng.uniform(300, 60 * 86400))
            statuses[status] += 1
            generation_id = new_id()
            final = status in ("succeeded", "failed", "canceled")
            completed = created + dt.timedelta(seconds=rng.uniform(6, 40)) if final else None
            chain = list(preset["model_chain"])
            tried = len(chain) if status == "failed" else 1
            prompt = "a quiet harbour at dawn" if rng.random() < 0.3 else ""
            generation_rows.append(
                (
                    generation_id,
                    user_id,
                    preset["id"],
                    preset["slug"],
                    preset["name"],
                    preset["kind"],
                    prompt,
                    preset["prompt"],
                    preset["prompt"].replace("{prompt}", prompt),
                    json.dumps(chain),
                    status,
                    chain[tried - 1],
                    json.dumps([{"message": "Queued", "level": "info", "timestamp": created.isoformat()}]),
                    "all_models_failed" if status == "failed" else "",
                    2,
                    1,
                    rng.random() < 0.4,
                    created,
                    created + dt.timedelta(seconds=1),
                    completed,
                    completed or created,
                    None if final else now + dt.timedelta(seconds=rng.uniform(0, 5)),
                    now if (final and rng.random() < 0.01) else None,
                    f"{user_id}/{preset['kind']}/{generation_id}.jpg",
                )
            )
            job_ids = []
            for position in range(tried):
                job_id = str(new_id())
                job_ids.append(job_id)
                last = position == tried - 1
                attempt_status = (
                    ("succeeded" if status == "succeeded" else status if status in ("failed", "canceled") else "queued")
                    if last
                    else "failed"
                )
                attempt_rows.append(
                    (
                        new_id(),
                        generation_id,
                        position,
                        chain[position],
                        job_id,
                        attempt_status,
                        "HTTP 500 from fal" if attempt_status == "failed" else "",
                        created + dt.timedelta(seconds=1 + position * 10),
                        completed if last else created + dt.timedelta(seconds=10 + position * 10),
                    )
                )
            if status == "succeeded":
                media_plan.append((generation_rows[-1], job_ids[-1], chain[-1] if tried > 1 else chain[0]))
            mine.append((created, generation_id))
            events.append((created, -2, "reserve", generation_id))
            if completed is not None:
                settlement = (0, "capture") if status == "succeeded" else (2, "refund")
                events.append((completed, *settlement, generation_id))
        generations_of[user_id] = mine
        # A large grant first, so the POST bench never runs a wallet dry; then every
        # reservation and settlement in time order with its running balance.
        balance = 1_000_000
        first = min(event[0] for event in events) - dt.timedelta(days=1)
        ledger_rows.append((user_id, balance, "grant", balance, None, None, "bench", first))
        for at, amount, reason, charged in sorted(events, key=lambda event: event[0]):
            balance += amount
            ledger_rows.append((user_id, amount, reason, balance, charged, 1, "", at))
        wallet_rows.append((user_id, balance, today))

    # Exactly MEDIA images: two per delivered generation, a third for some (the studio
    # makes two; Ghibli reactions one), newest generations' images first in the feed.
    extra = MEDIA - 2 * len(media_plan)
    if extra < 0 or extra > len(media_plan):
        raise RuntimeError("bench seed: the status mix cannot produce the media count")
    media_rows: list[tuple] = []
    for number, (generation, job_id, model) in enumerate(media_plan):
        generation_id, user_id, kind, is_public, completed = (
            generation[0],
            generation[1],
            generation[5],
            generation[16],
            generation[19],
        )
        for index in range(3 if number < extra else 2):
            media_rows.append(
                (
                    new_id(),
                    generation_id,
                    user_id,
                    index,
                    job_id,
                    model,
                    f"https://res.cloudinary.com/bench/image/upload/stefna/generated/{kind}_{generation_id}_{index}.jpg",
                    f"https://v3.fal.media/files/bench/{job_id}_{index}.png",
                    f"stefna/generated/{kind}_{generation_id}_{index}",
                    1024,
                    1024,
                    "image/jpeg",
                    True,
                    is_public,
                    rng.random() < 0.005,
                    completed,
                )
            )

    built = time.perf_counter()
    if os.environ.get("BENCH_VERBOSE"):
        print(f"  rows built in {built - started:.1f} s")
    with transaction.atomic(), connection.cursor() as django_cursor:
        cursor = django_cursor.cursor  # the psycopg cursor, for COPY
        # The rows are consistent by construction; skipping the per-row foreign-key
        # triggers while loading (superuser only, this transaction only) makes the
        # load several times faster. Constraints and indexes are all still in place.
        cursor.execute("SET LOCAL session_replication_role = replica")
        cursor.execute("SET LOCAL maintenance_work_mem = '256MB'")
        # Plain indexes are dropped and rebuilt after the load (a sorted build is much
        # faster than 500,000 index insertions); indexes that back a constraint stay.
        tables = [model._meta.db_table for model in (Generation, Attempt, Media, CreditEntry)]
        cursor.execute(
            "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = ANY(%s) AND indexname NOT IN "
            "(SELECT conname FROM pg_constraint WHERE contype IN ('p', 'u', 'x'))",
            [tables],
        )
        rebuild = cursor.fetchall()
        for name, _ in rebuild:
            cursor.execute(f'DROP INDEX "{name}"')
        counts = {
            "users": _copy(
                cursor,
                User,
                ["id", "email", "password", "is_active", "is_staff", "is_superuser", "date_joined", "display_name"],
                (
                    (user_id, f"bench{number:04d}@example.com", "!bench", True, False, False, now, f"Bench {number}")
                    for number, user_id in enumerate(user_ids)
                ),
            ),
            "api tokens": _copy(
                cursor,
                ApiToken,
                ["id", "user_id", "name", "prefix", "token_hash", "created_at", "last_used_at"],
                (
                    # last_used_at = now: the once-a-minute touch stays out of the numbers.
                    (new_id(), user_id, "bench", token[:10], hash_token(token), now, now + dt.timedelta(hours=1))
                    for user_id, token in zip(user_ids, tokens, strict=True)
                ),
            ),
            "generations": _copy(
                cursor,
                Generation,
                [
                    "id",
                    "user_id",
                    "preset_id",
                    "preset_slug",
                    "preset_name",
                    "kind",
                    "prompt",
                    "prompt_template",
                    "prompt_sent",
                    "model_chain",
                    "status",
                    "current_model",
                    "logs",
                    "error_code",
                    "cost",
                    "num_images",
                    "is_public",
                    "created_at",
                    "started_at",
                    "completed_at",
                    "updated_at",
                    "next_check_at",
                    "deleted_at",
                    "source_image",
                ],
                generation_rows,
            ),
            "attempts": _copy(
                cursor,
                Attempt,
                [
                    "id",
                    "generation_id",
                    "position",
                    "model",
                    "fal_job_id",
                    "status",
                    "error",
                    "started_at",
                    "finished_at",
                ],
                attempt_rows,
            ),
            "media": _copy(
                cursor,
                Media,
                [
                    "id",
                    "generation_id",
                    "user_id",
                    "index",
                    "fal_job_id",
                    "model",
                    "url",
                    "original_url",
                    "storage_key",
                    "width",
                    "height",
                    "content_type",
                    "persisted",
                    "is_public",
                    "hidden",
                    "created_at",
                ],
                media_rows,
            ),
            "ledger entries": _copy(
                cursor,
                CreditEntry,
                [
                    "user_id",
                    "amount",
                    "reason",
                    "balance_after",
                    "generation_id",
                    "charge_number",
                    "note",
                    "created_at",
                ],
                ledger_rows,
            ),
            "wallets": _copy(cursor, Wallet, ["user_id", "balance", "allowance_day"], wallet_rows),
        }
        copied = time.perf_counter()
        for _, definition in rebuild:
            cursor.execute(definition)
        if os.environ.get("BENCH_VERBOSE"):
            print(f"  {len(rebuild)} indexes rebuilt in {time.perf_counter() - copied:.1f} s")
    loaded = time.perf_counter()
    with connection.cursor() as django_cursor:
        django_cursor.execute(f"ANALYZE {', '.join(['accounts_user', 'accounts_apitoken', 'credits_wallet', *tables])}")
    if os.environ.get("BENCH_VERBOSE"):
        print(f"  COPY total {loaded - built:.1f} s, ANALYZE {time.perf_counter() - loaded:.1f} s")

    sessions = []
    users = {user.pk: user for user in User.objects.filter(pk__in=user_ids[:SESSIONS])}
    for user_id in user_ids[:SESSIONS]:
        store = SessionStore()
        store[SESSION_KEY] = str(user_id)
        store[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
        store[HASH_SESSION_KEY] = users[user_id].get_session_auth_hash()
        store.create()
        sessions.append((user_id, store.session_key))

    newest_first = {
        user_id: [pk for _, pk in sorted(rows, key=lambda row: row[0], reverse=True)]
        for user_id, rows in generations_of.items()
    }
    counts["generations by status"] = statuses  # type: ignore[assignment]
    return DataSet(
        tokens=tokens,
        user_ids=user_ids,
        generations_of=newest_first,
        sessions=sessions,  # type: ignore[arg-type]
        seconds=time.perf_counter() - started,
        counts=counts,
    )


def one_megabyte_jpeg() -> bytes:
    """A photo-like 1920×1440 JPEG of about 1 MB (gradient plus sensor-like noise)."""
    from PIL import Image

    width, height = 1920, 1440
    gradient = Image.linear_gradient("L").resize((width, height))
    base = Image.merge(
        "RGB",
        (gradient, gradient.rotate(90).resize((width, height)), gradient.transpose(Image.Transpose.FLIP_LEFT_RIGHT)),
    )
    noise = Image.effect_noise((width, height), 40).convert("RGB")
    image = Image.blend(base, noise, 0.25)
    best = b""
    for quality in range(95, 40, -5):
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=quality)
        best = buffer.getvalue()
        if len(best) <= 1_100_000:
            break
    return best


# --- EXPLAIN ----------------------------------------------------------------------------------


def explain_all(data: DataSet) -> list[tuple[str, str, int, int, float, str]]:
    """EXPLAIN ANALYZE the SQL the app really runs: each selector is called and its
    queries captured, so a change in a selector shows up here without editing the bench.
    Rows: (query, indexes used, rows read, rows returned, execution ms, verdict)."""
    from django.db import connection, transaction
    from django.db.models import Q
    from django.test.utils import CaptureQueriesContext
    from django.utils import timezone

    from credits.selectors import quota_for
    from generation import dashboard, selectors, services
    from generation.models import Attempt, Generation, Media
    from stefna import pagination
    from stefna.accounts.models import User

    user = User.objects.get(pk=data.user_ids[0])
    generation_id = data.generations_of[user.pk][0]
    feed = selectors.feed_queryset().order_by("-created_at", "-id")
    deep_created, deep_id = feed.values_list("created_at", "id")[60_000]
    deep_feed = pagination.encode_cursor(deep_created, deep_id)
    history = Generation.objects.filter(user=user, deleted_at__isnull=True).order_by("-created_at", "-id")
    deep_history = pagination.encode_cursor(*history.values_list("created_at", "id")[79])
    job_id = Attempt.objects.filter(generation_id=generation_id).values_list("fal_job_id", flat=True).first()

    failures: list[tuple[str, str, int, int, float, str]] = []

    def captured(label: str, call, keep=lambda sql: True) -> list[tuple[str, str]]:  # type: ignore[no-untyped-def]
        """(label: table, SQL) for each query `call` makes."""
        try:
            with transaction.atomic(), CaptureQueriesContext(connection) as queries:
                call()
        except Exception as exc:  # a broken selector is reported, not fatal to the bench
            failures.append((label, "-", 0, 0, 0.0, f"ERROR {exc!r}"[:120]))
            return []
        sqls = [query["sql"] for query in queries.captured_queries if keep(query["sql"])]
        return [(f"{label}: {_what(sql)}", sql) for sql in sqls]

    class Rollback(Exception):
        pass

    def claim_due() -> None:
        # The poller's claim writes a lease: run it, keep its SQL, undo it.
        try:
            with transaction.atomic():
                services.generation_claim_due(limit=100)
                raise Rollback
        except Rollback:
            pass

    plans: list[tuple[str, Any]] = []  # (name, SQL text or a queryset)
    plans += captured("feed page 1", lambda: selectors.generation_feed(limit=20))
    plans += captured("feed, cursor at row 60,000", lambda: selectors.generation_feed(cursor=deep_feed, limit=20))
    plans += captured("history page 1", lambda: selectors.generation_history(user=user, limit=20))
    plans += captured(
        "history, cursor at row 80", lambda: selectors.generation_history(user=user, cursor=deep_history, limit=20)
    )[:1]
    plans += captured("status", lambda: selectors.generation_get_with_balance(user=user, generation_id=generation_id))
    plans += captured("quota", lambda: quota_for(user=user))
    plans += captured("poller claim", claim_due, keep=lambda sql: "FOR UPDATE" in sql.upper())
    # Staff only, but it aggregates over the whole window of generations and ledger entries.
    plans += captured("admin dashboard", lambda: dashboard.dashboard())
    # The keyset filter with the range PostgreSQL can seek on (`created_at <= c` beside the
    # OR), for comparison with the selector's own query above.
    plans.append(
        (
            "feed, cursor at row 60,000, with created_at <= c (proposed)",
            feed.filter(created_at__lte=deep_created).filter(Q(created_at__lt=deep_created) | Q(id__lt=deep_id))[:21],
        )
    )
    # The admin's changelists open newest first over every row.
    plans.append(("admin: newest 100 generations", Generation.objects.order_by("-created_at", "-id")[:100]))
    plans.append(("admin: newest 100 images", Media.objects.order_by("-created_at", "-id")[:100]))
    # Read-only equivalents of what the webhook and the sweeper look up (running those
    # services here would change the data).
    plans.append(
        (
            "webhook: attempt by fal request id",
            Attempt.objects.select_related("generation").filter(fal_job_id=job_id).order_by("started_at")[:1],
        )
    )
    plans.append(
        (
            "sweeper: active jobs with no next check",
            Generation.objects.filter(status__in=Generation.ACTIVE_STATUSES, next_check_at__isnull=True),
        )
    )
    plans.append(
        (
            "sweeper: active jobs older than the bound",
            Generation.objects.filter(
                status__in=Generation.ACTIVE_STATUSES, created_at__lt=timezone.now() - dt.timedelta(minutes=20)
            ),
        )
    )
    rows = []
    with transaction.atomic():
        for name, query in plans:
            sql, params = (query, ()) if isinstance(query, str) else query.query.sql_with_params()
            with connection.cursor() as cursor:
                cursor.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + sql, params or None)
                value = cursor.fetchone()[0]
            plan = json.loads(value) if isinstance(value, str) else value
            rows.append((name, *_summarise(plan)))
    return rows + failures


def _what(sql: str) -> str:
    """A short name for a captured query: its main table."""
    match = re.search(r'FROM "(\w+)"', sql)
    return match.group(1) if match else sql[:40]


def _summarise(plan: Any) -> tuple[str, int, int, float, str]:
    """(indexes / scans, rows read by scans, rows returned, ms, verdict)."""
    root: dict[str, Any] = plan[0] if isinstance(plan, list) else plan
    scans: list[str] = []
    read = 0

    def walk(node: dict) -> None:
        nonlocal read
        kind = node.get("Node Type", "")
        loops = int(node.get("Actual Loops", 1))
        if kind.endswith("Scan") and kind != "Bitmap Heap Scan":
            if kind == "Seq Scan":
                scans.append(f"SEQ SCAN {node.get('Relation Name')}")
            elif node.get("Index Name"):
                scans.append(node["Index Name"])
        if kind.endswith("Scan") and kind != "Bitmap Index Scan":
            read += (int(node.get("Actual Rows", 0)) + int(node.get("Rows Removed by Filter", 0))) * loops
        for child in node.get("Plans", []):
            walk(child)

    walk(root["Plan"])
    returned = int(root["Plan"].get("Actual Rows", 0))
    # A page reads about what it returns (plus the join partners); reading far more
    # means the index does not seek to the cursor, or there is no index at all.
    verdict = "ok" if read <= max(200, 5 * returned) else f"READS {read:,} ROWS"
    if any(scan.startswith("SEQ SCAN") for scan in scans) and read > 1000:
        verdict = "SEQ SCAN"
    return ", ".join(dict.fromkeys(scans)) or "-", read, returned, float(root.get("Execution Time", 0.0)), verdict


# --- The load ---------------------------------------------------------------------------------


def routes(data: DataSet, jpeg: bytes) -> list[tuple[str, str, support.Request, float, tuple[int, ...]]]:
    """(name, target label, request, target ms, expected statuses) for every measured route."""
    from generation import selectors
    from generation.models import Generation
    from stefna.pagination import encode_cursor

    feed = selectors.feed_queryset().order_by("-created_at", "-id")
    public_count = feed.count()
    deep_media = feed.values_list("created_at", "id")[int(public_count * 0.9)]
    deep_feed_cursor = encode_cursor(*deep_media)
    tokens = data.tokens
    sessions = data.sessions

    def bearer(counter: int) -> tuple[str, dict[str, str]]:
        number = counter % len(tokens)
        return tokens[number], {"Authorization": f"Bearer {tokens[number]}"}

    history_cursor: dict[uuid.UUID, str] = {}
    for user_id in data.user_ids[: max(SESSIONS, 64)]:
        generations = Generation.objects.filter(user_id=user_id, deleted_at__isnull=True).order_by("-created_at", "-id")
        row = generations.values_list("created_at", "id")[79]
        history_cursor[user_id] = encode_cursor(*row)

    def quota(client, counter):  # type: ignore[no-untyped-def]
        return client.get(f"{base}/api/quota", headers=bearer(counter)[1])

    def status(client, counter):  # type: ignore[no-untyped-def]
        number = counter % len(tokens)
        user_id = data.user_ids[number]
        generation_id = data.generations_of[user_id][counter % 20]
        return client.get(f"{base}/api/generations/{generation_id}", headers=bearer(number)[1])

    def feed_first(client, counter):  # type: ignore[no-untyped-def]
        return client.get(f"{base}/api/feed")

    def feed_deep(client, counter):  # type: ignore[no-untyped-def]
        return client.get(f"{base}/api/feed", params={"cursor": deep_feed_cursor})

    def history_first(client, counter):  # type: ignore[no-untyped-def]
        return client.get(f"{base}/api/generations", headers=bearer(counter % 64)[1])

    def history_deep(client, counter):  # type: ignore[no-untyped-def]
        number = counter % 64
        cursor = history_cursor[data.user_ids[number]]
        return client.get(f"{base}/api/generations", params={"cursor": cursor}, headers=bearer(number)[1])

    def session(counter: int) -> tuple[uuid.UUID, dict[str, str]]:
        user_id, key = sessions[counter % len(sessions)]
        return user_id, {"Cookie": f"sessionid={key}"}

    def feed_page(client, counter):  # type: ignore[no-untyped-def]
        return client.get(f"{base}/feed/", headers=session(counter)[1])

    def feed_page_deep(client, counter):  # type: ignore[no-untyped-def]
        return client.get(f"{base}/feed/", params={"cursor": deep_feed_cursor}, headers=session(counter)[1])

    def history_page(client, counter):  # type: ignore[no-untyped-def]
        return client.get(f"{base}/history/", headers=session(counter)[1])

    def history_page_deep(client, counter):  # type: ignore[no-untyped-def]
        user_id, headers = session(counter)
        return client.get(f"{base}/history/", params={"cursor": history_cursor[user_id]}, headers=headers)

    def card(client, counter):  # type: ignore[no-untyped-def]
        user_id, headers = session(counter)
        generation_id = data.generations_of[user_id][counter % 20]
        return client.get(f"{base}/g/{generation_id}/card/", headers=headers)

    def start(client, counter):  # type: ignore[no-untyped-def]
        # Spread over every user: one user's starts queue on their wallet's row lock.
        return client.post(
            f"{base}/api/generations",
            headers=bearer(counter)[1],
            data={"preset": "oil_painting", "is_public": "false"},
            files={"image": ("photo.jpg", jpeg, "image/jpeg")},
        )

    def floor(client, counter):  # type: ignore[no-untyped-def]
        # Middleware, URL routing and a JSON answer, no database: what any request costs here.
        return client.get(f"{base}/api/no-such-route")

    return [
        ("GET /api/no-such-route (floor: no DB)", "p50", floor, STATUS_P50, (404,)),
        ("GET /api/quota", "p50", quota, STATUS_P50, (200,)),
        ("GET /api/generations/{id}", "p50", status, STATUS_P50, (200,)),
        ("GET /g/{id}/card/ (polled status card)", "p50", card, STATUS_P50, (200,)),
        ("GET /api/feed (first page)", "p95", feed_first, PAGE_P95, (200,)),
        ("GET /api/feed (deep cursor, 90%)", "p95", feed_deep, PAGE_P95, (200,)),
        ("GET /api/generations (history, first)", "p95", history_first, PAGE_P95, (200,)),
        ("GET /api/generations (history, row 80)", "p95", history_deep, PAGE_P95, (200,)),
        ("GET /feed/ (HTML, signed in)", "p95", feed_page, PAGE_P95, (200,)),
        ("GET /feed/?cursor= (HTML, deep)", "p95", feed_page_deep, PAGE_P95, (200,)),
        ("GET /history/ (HTML)", "p95", history_page, PAGE_P95, (200,)),
        ("GET /history/?cursor= (HTML, row 80)", "p95", history_page_deep, PAGE_P95, (200,)),
        ("POST /api/generations (1 MB JPEG)", "p50", start, START_P50, (202,)),
    ]


base = ""


def main() -> int:
    global base
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=3.0, help="measured seconds per route and concurrency")
    parser.add_argument(
        "--concurrency",
        default="1,4,16",
        help="comma-separated client concurrencies; the first is the one the targets are judged at",
    )
    parser.add_argument("--workers", type=int, default=4, help="gunicorn sync workers")
    parser.add_argument("--keep-db", action="store_true", help=f"leave the {DB_NAME} database for inspection")
    parser.add_argument("--only", default="", help="regex: measure only the routes whose name matches")
    args = parser.parse_args()
    levels = [int(level) for level in args.concurrency.split(",") if level.strip()]

    media_root = Path(tempfile.mkdtemp(prefix="stefna-bench-media-"))
    url = support.create_database(DB_NAME)
    env = support.bench_env(
        DATABASE_URL=url,
        MEDIA_ROOT=str(media_root),
        # The bench starts thousands of generations a minute from 1,000 accounts and
        # reads the feed from one IP: lift the limits that exist to stop exactly that.
        RATE_LIMIT_GENERATIONS_PER_MINUTE="100000000",
        RATE_LIMIT_ANON_PER_MINUTE="100000000",
    )
    os.environ.update({key: value for key, value in env.items() if key != "PYTHONPATH"})
    os.environ["DJANGO_SETTINGS_MODULE"] = "stefna.settings"
    try:
        import django

        django.setup()
        from django.core.management import call_command
        from django.utils import timezone

        print(f"== bench/api.py: {USERS:,} users, {GENERATIONS:,} generations, {MEDIA:,} images on PostgreSQL")
        load, cores = os.getloadavg()[0], os.cpu_count() or 1
        if load > cores:
            print(
                f"WARNING: this machine is busy (load average {load:.1f} on {cores} CPUs): wall-clock latencies "
                "below include waiting for a CPU. The cpu ms/req columns do not: they are what a request costs."
            )
        began = time.perf_counter()
        call_command("migrate", verbosity=0)
        # DEBUG=0 serves hashed static names from the manifest, as a deployment does.
        call_command("collectstatic", interactive=False, verbosity=0)
        migrate_seconds = time.perf_counter() - began
        data = seed(timezone.now())
        counts = ", ".join(f"{value:,} {key}" for key, value in data.counts.items() if isinstance(value, int))
        print(f"migrate + collectstatic {migrate_seconds:.1f} s; seed (COPY + ANALYZE) {data.seconds:.1f} s: {counts}")
        print(f"generations by status: {data.counts['generations by status']}")

        print("\n-- EXPLAIN ANALYZE of the hot queries on this data set")
        explained = explain_all(data)
        support.print_table(
            [
                [name, scans, f"{read:,}", f"{returned:,}", f"{ms:.2f}", verdict]
                for name, scans, read, returned, ms, verdict in explained
            ],
            ["query", "index / scan", "rows read", "returned", "exec ms", "verdict"],
        )

        jpeg = one_megabyte_jpeg()
        measured = routes(data, jpeg)
        if args.only:
            measured = [route for route in measured if re.search(args.only, route[0])]
        from django.db import connections

        connections.close_all()

        print(
            f"\n-- Load: gunicorn stefna.wsgi, {args.workers} sync workers, DEBUG=0; httpx keep-alive client "
            f"threads; {args.seconds:g} s per route after a 0.5 s warm-up; upload {len(jpeg) / 1e6:.2f} MB"
        )
        results: dict[tuple[str, int], support.Result] = {}
        niceness = support.raise_priority()  # inherited by gunicorn and its workers
        if niceness:
            print(
                f"Priority: this bench, gunicorn and the PostgreSQL backends of {DB_NAME} run at nice {niceness} "
                "(BENCH_NICE=0 turns that off), so other work on a shared machine waits for them."
            )
        with support.gunicorn(env, workers=args.workers, log=media_root / "gunicorn.log") as server:
            base = server.base
            probe = support.cpu_probe(server.pid, DB_NAME)
            for concurrency in levels:
                for name, _, request, _, expect in measured:
                    support.raise_priority(support.database_backend_pids(DB_NAME))
                    results[(name, concurrency)] = support.run_load(
                        name,
                        request,
                        concurrency=concurrency,
                        seconds=args.seconds,
                        expect=expect,
                        probe=probe,
                        app_pids=lambda: set(support.child_pids(server.pid)),
                    )
        rows = []
        missed = []
        judged_routes = [route for route in measured if not route[0].startswith(REFERENCE)]
        for name, kind, _, target, _ in measured:
            for number, concurrency in enumerate(levels):
                result = results[(name, concurrency)]
                value = result.p(0.5 if kind == "p50" else 0.95)
                judged = number == 0 and not name.startswith(REFERENCE)
                ok = value <= target
                if judged and not ok:
                    missed.append(name)
                errors = ", ".join(f"{key} x{count}" for key, count in result.errors.items()) or ""
                rows.append(
                    [
                        name if number == 0 else "",
                        concurrency,
                        result.count,
                        f"{result.rps:.0f}",
                        f"{result.p(0.5):.1f}",
                        f"{result.p(0.95):.1f}",
                        f"{result.p(0.99):.1f}",
                        f"{result.per_request_ms(result.app_cpu_seconds):.1f}",
                        f"{result.per_request_ms(result.client_cpu_seconds):.1f}",
                        f"{result.per_request_ms(result.db_cpu_seconds):.1f}",
                        f"{result.load_average:.1f}",
                        f"{kind} <= {target:g}",
                        "reference"
                        if name.startswith(REFERENCE)
                        else ("MET" if ok else "MISSED")
                        if judged
                        else ("(met)" if ok else "(over)"),
                        errors,
                    ]
                )
        support.print_table(
            rows,
            [
                "route",
                "conc",
                "requests",
                "req/s",
                "p50 ms",
                "p95 ms",
                "p99 ms",
                "app cpu ms/req",
                "client cpu ms/req",
                "db cpu ms/req",
                "load avg",
                "target",
                "result",
                "errors",
            ],
        )
        print(
            f"Targets are judged at concurrency {levels[0]}: the latency one request sees when the server is not "
            "saturated. Higher levels show throughput; once the CPUs are saturated latency is queueing "
            "(Little's law: in-flight requests / throughput), whatever the code. "
            "app = the gunicorn workers, db = this database's PostgreSQL backends, client = this load generator "
            "(on the same CPUs)."
        )
        print(
            f"api.py: {len(judged_routes) - len(missed)}/{len(judged_routes)} targets met"
            + (f"; missed: {missed}" if missed else "")
        )
        return 1 if missed else 0
    finally:
        from django.db import connections

        connections.close_all()
        if not args.keep_db:
            support.drop_database(DB_NAME)
        shutil.rmtree(media_root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
