"""Reads for the staff dashboard (/admin/dashboard/): plain figures, one aggregate query each.

Every function returns dataclasses of plain values, so the template, a test or a
script can use them without touching the ORM. Each figure is ONE query whatever the
number of rows: counts are grouped in the database, and the gaps (hours or days
with no rows) are filled in Python.

Latency percentiles: PostgreSQL computes them in the query with `percentile_cont`.
SQLite has no percentile aggregate, so there the same single query fetches the
durations of succeeded attempts in the window and Python interpolates them the way
`percentile_cont` does (linear between the two nearest ranks), so both backends
give the same numbers. The window bounds that fetch (a few thousand rows a day at
most), which is why every figure here is scoped to a window.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from django.db import connection
from django.db.models import Aggregate, Count, DurationField, ExpressionWrapper, F, Min, Q, Sum
from django.db.models.functions import TruncDate, TruncHour
from django.utils import timezone
from django_tasks_db.models import DBTaskResult

from credits.models import CreditEntry, Purchase

from .models import Attempt, Generation, Media, WorkerHeartbeat

Status = Generation.Status
DEFAULT_WINDOW_DAYS = 14
# A queued or running generation older than this is "stuck" (the admin's attention filter too).
STUCK_AFTER = dt.timedelta(minutes=15)


@dataclass(frozen=True)
class GenerationCount:
    """Generations created in one hour or day, by outcome (queued/running count in `total` only)."""

    start: dt.datetime | dt.date
    total: int
    succeeded: int
    failed: int
    canceled: int


@dataclass(frozen=True)
class ModelStats:
    """One model's finished attempts in the window and how long the succeeded ones took.

    `success_rate` is succeeded / (succeeded + failed): attempts canceled because the
    user canceled the generation say nothing about the model. Latency is
    `finished_at - started_at` of succeeded attempts (fal's queue plus the run).
    """

    model: str
    attempts: int
    succeeded: int
    failed: int
    canceled: int
    success_rate: float | None
    median_seconds: float | None
    p95_seconds: float | None

    @property
    def success_percent(self) -> float | None:
        return self.success_rate * 100 if self.success_rate is not None else None


@dataclass(frozen=True)
class FallbackRate:
    """Of the generations that succeeded, how many needed a model after the first."""

    succeeded: int
    fell_back: int

    @property
    def rate(self) -> float | None:
        return self.fell_back / self.succeeded if self.succeeded else None

    @property
    def percent(self) -> float | None:
        rate = self.rate
        return rate * 100 if rate is not None else None


@dataclass(frozen=True)
class PersistenceBacklog:
    """Images whose durable copy (Cloudinary or storage) has not been made yet."""

    count: int
    oldest_created_at: dt.datetime | None


@dataclass(frozen=True)
class CreditsDay:
    """Credits reserved by generations on one UTC day, the refunds, and the difference."""

    day: dt.date
    reserved: int
    refunded: int

    @property
    def spent(self) -> int:
        return self.reserved - self.refunded


@dataclass(frozen=True)
class SafetyBlocks:
    """Images fal's safety checker withheld, for one preset and model, in the window.

    `generations_blocked` counts the generations that ended `content_blocked` (every
    image withheld, refunded); the others kept and paid for their clean images.
    """

    preset_slug: str
    model: str
    images: int
    attempts: int
    generations_blocked: int


@dataclass(frozen=True)
class TableSize:
    """One table that grows with use: its rows (PostgreSQL's estimate) and bytes on disk."""

    table: str
    rows: int
    bytes: int | None


@dataclass(frozen=True)
class Attention:
    """What staff must look at now: jobs that should have ended, flagged purchases."""

    stuck_generations: int
    flagged_purchases: int


@dataclass(frozen=True)
class Dashboard:
    now: dt.datetime
    window_days: int
    attention: Attention
    per_hour: list[GenerationCount]
    per_day: list[GenerationCount]
    models: list[ModelStats]
    fallback: FallbackRate
    backlog: PersistenceBacklog
    credits_per_day: list[CreditsDay]
    blocked: list[SafetyBlocks]
    tables: list[TableSize]


def _outcome_counts() -> dict[str, Count]:
    return {
        "total": Count("id"),
        "succeeded": Count("id", filter=Q(status=Status.SUCCEEDED)),
        "failed": Count("id", filter=Q(status=Status.FAILED)),
        "canceled": Count("id", filter=Q(status=Status.CANCELED)),
    }


def _utc_day_start(now: dt.datetime, days_back: int) -> dt.datetime:
    today = now.astimezone(dt.UTC).date()
    return dt.datetime.combine(today - dt.timedelta(days=days_back), dt.time.min, tzinfo=dt.UTC)


def generations_per_hour(*, now: dt.datetime | None = None, hours: int = 24) -> list[GenerationCount]:
    """The last `hours` UTC hours, oldest first, the current (partial) hour last. One query."""
    now = now or timezone.now()
    current_hour = now.astimezone(dt.UTC).replace(minute=0, second=0, microsecond=0)
    first_hour = current_hour - dt.timedelta(hours=hours - 1)
    rows = (
        Generation.objects.filter(created_at__gte=first_hour, created_at__lte=now)
        .annotate(bucket=TruncHour("created_at", tzinfo=dt.UTC))
        .values("bucket")
        .annotate(**_outcome_counts())
        .order_by()
    )
    found = {row["bucket"].astimezone(dt.UTC): row for row in rows}
    return [_count(first_hour + dt.timedelta(hours=n), found) for n in range(hours)]


def generations_per_day(*, now: dt.datetime | None = None, days: int = DEFAULT_WINDOW_DAYS) -> list[GenerationCount]:
    """The last `days` UTC days, oldest first, today last. One query."""
    now = now or timezone.now()
    first_day = _utc_day_start(now, days - 1)
    rows = (
        Generation.objects.filter(created_at__gte=first_day, created_at__lte=now)
        .annotate(bucket=TruncDate("created_at", tzinfo=dt.UTC))
        .values("bucket")
        .annotate(**_outcome_counts())
        .order_by()
    )
    found = {row["bucket"]: row for row in rows}
    return [_count(first_day.date() + dt.timedelta(days=n), found) for n in range(days)]


def _count(start: dt.datetime | dt.date, found: dict) -> GenerationCount:  # type: ignore[type-arg]
    row = found.get(start) or {}
    return GenerationCount(
        start=start,
        total=row.get("total", 0),
        succeeded=row.get("succeeded", 0),
        failed=row.get("failed", 0),
        canceled=row.get("canceled", 0),
    )


def _duration() -> ExpressionWrapper:
    return ExpressionWrapper(F("finished_at") - F("started_at"), output_field=DurationField())


class PercentileCont(Aggregate):
    """PostgreSQL's `percentile_cont(f) WITHIN GROUP (ORDER BY expr)` (continuous, interpolated)."""

    function = "PERCENTILE_CONT"
    template = "%(function)s(%(fraction)s) WITHIN GROUP (ORDER BY %(expressions)s)"

    def __init__(self, expression: object, *, fraction: float, **extra: object) -> None:
        # A float we write ourselves, not user input, so formatting it into SQL is safe.
        super().__init__(expression, fraction=repr(float(fraction)), **extra)  # type: ignore[arg-type]


def percentile(sorted_values: list[float], fraction: float) -> float | None:
    """Linear interpolation between closest ranks: what PostgreSQL's percentile_cont computes."""
    if not sorted_values:
        return None
    position = fraction * (len(sorted_values) - 1)
    lower = int(position)
    upper = min(lower + 1, len(sorted_values) - 1)
    return sorted_values[lower] + (sorted_values[upper] - sorted_values[lower]) * (position - lower)


def model_latencies(*, since: dt.datetime) -> dict[str, tuple[float | None, float | None]]:
    """{model: (median seconds, 95th percentile seconds)} of succeeded attempts started since `since`. One query."""
    succeeded = Attempt.objects.filter(
        status=Attempt.Status.SUCCEEDED, started_at__gte=since, finished_at__isnull=False
    ).order_by()
    if connection.vendor == "postgresql":
        rows = succeeded.values("model").annotate(
            median=PercentileCont(_duration(), fraction=0.5, output_field=DurationField()),
            p95=PercentileCont(_duration(), fraction=0.95, output_field=DurationField()),
        )
        return {row["model"]: (row["median"].total_seconds(), row["p95"].total_seconds()) for row in rows}
    # No percentile aggregate on SQLite: fetch the durations (one query) and interpolate.
    durations: dict[str, list[float]] = defaultdict(list)
    for model, duration in succeeded.annotate(duration=_duration()).values_list("model", "duration"):
        durations[model].append(duration.total_seconds())
    result = {}
    for model, values in durations.items():
        values.sort()
        result[model] = (percentile(values, 0.5), percentile(values, 0.95))
    return result


def model_stats(*, since: dt.datetime) -> list[ModelStats]:
    """Per model: finished attempts since `since`, success rate and latency. Two queries (counts, latency)."""
    rows = (
        Attempt.objects.filter(
            started_at__gte=since,
            status__in=[Attempt.Status.SUCCEEDED, Attempt.Status.FAILED, Attempt.Status.CANCELED],
        )
        .values("model")
        .annotate(
            attempts=Count("id"),
            succeeded=Count("id", filter=Q(status=Attempt.Status.SUCCEEDED)),
            failed=Count("id", filter=Q(status=Attempt.Status.FAILED)),
            canceled=Count("id", filter=Q(status=Attempt.Status.CANCELED)),
        )
        .order_by("model")
    )
    latencies = model_latencies(since=since)
    stats = []
    for row in rows:
        judged = row["succeeded"] + row["failed"]
        median, p95 = latencies.get(row["model"], (None, None))
        stats.append(
            ModelStats(
                model=row["model"],
                attempts=row["attempts"],
                succeeded=row["succeeded"],
                failed=row["failed"],
                canceled=row["canceled"],
                success_rate=row["succeeded"] / judged if judged else None,
                median_seconds=median,
                p95_seconds=p95,
            )
        )
    return stats


def fallback_rate(*, since: dt.datetime) -> FallbackRate:
    """Succeeded generations created since `since`, and those whose winning attempt was not the first model. One query."""
    counts = Generation.objects.filter(status=Status.SUCCEEDED, created_at__gte=since).aggregate(
        succeeded=Count("id", distinct=True),
        # `position` is the model's index in the generation's chain: > 0 means the
        # first model failed (or timed out) and a fallback delivered the image.
        fell_back=Count(
            "id", distinct=True, filter=Q(attempts__status=Attempt.Status.SUCCEEDED, attempts__position__gt=0)
        ),
    )
    return FallbackRate(succeeded=counts["succeeded"], fell_back=counts["fell_back"])


def persistence_backlog() -> PersistenceBacklog:
    """Images not yet copied to durable storage, and the oldest one's age. One query (partial index)."""
    counts = Media.objects.filter(persisted=False).aggregate(count=Count("id"), oldest=Min("created_at"))
    return PersistenceBacklog(count=counts["count"], oldest_created_at=counts["oldest"])


def credits_per_day(*, now: dt.datetime | None = None, days: int = DEFAULT_WINDOW_DAYS) -> list[CreditsDay]:
    """Credits reserved and refunded per UTC day, oldest first. One query.

    A refund counts on the day it happened, so a day's `spent` can be negative when
    refunds for yesterday's failures land today.
    """
    now = now or timezone.now()
    first_day = _utc_day_start(now, days - 1)
    rows = (
        CreditEntry.objects.filter(
            created_at__gte=first_day,
            created_at__lte=now,
            reason__in=[CreditEntry.Reason.RESERVE, CreditEntry.Reason.REFUND],
        )
        .annotate(day=TruncDate("created_at", tzinfo=dt.UTC))
        .values("day")
        .annotate(
            reserved=Sum("amount", filter=Q(reason=CreditEntry.Reason.RESERVE)),
            refunded=Sum("amount", filter=Q(reason=CreditEntry.Reason.REFUND)),
        )
        .order_by()
    )
    found: dict[dt.date, dict[str, Any]] = {row["day"]: dict(row) for row in rows}
    result = []
    for n in range(days):
        day = first_day.date() + dt.timedelta(days=n)
        row = found.get(day) or {}
        # Reserves are stored negative (money leaving the wallet); shown as positive spend.
        result.append(CreditsDay(day=day, reserved=-(row.get("reserved") or 0), refunded=row.get("refunded") or 0))
    return result


def safety_blocks(*, since: dt.datetime) -> list[SafetyBlocks]:
    """Withheld images per preset and model since `since`, most first. One query."""
    rows = (
        Attempt.objects.filter(blocked_images__gt=0, started_at__gte=since)
        .values("generation__preset_slug", "model")
        .annotate(
            images=Sum("blocked_images"),
            attempts=Count("id"),
            generations_blocked=Count("generation", distinct=True, filter=Q(generation__error_code="content_blocked")),
        )
        .order_by("-images", "generation__preset_slug", "model")
    )
    return [
        SafetyBlocks(
            preset_slug=row["generation__preset_slug"],
            model=row["model"],
            images=row["images"],
            attempts=row["attempts"],
            generations_blocked=row["generations_blocked"],
        )
        for row in rows
    ]


def growing_tables() -> list[str]:
    """The tables that grow with use, the ones upkeep prunes included."""
    models = [Generation, Attempt, Media, CreditEntry, WorkerHeartbeat, DBTaskResult]
    return [model._meta.db_table for model in models]


def table_sizes() -> list[TableSize]:
    """Rows and bytes of the tables that grow. One query: PostgreSQL's catalogue
    estimates (reltuples, no scan of a large table); on SQLite exact counts, no sizes."""
    tables = growing_tables()
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(
                "SELECT relname, GREATEST(reltuples, 0)::bigint, pg_total_relation_size(oid) "
                "FROM pg_class WHERE relkind = 'r' AND relname = ANY(%s)",
                [tables],
            )
            found = {name: (rows, size) for name, rows, size in cursor.fetchall()}
        else:
            quote = connection.ops.quote_name
            # Only table names from the models are interpolated, quoted; no user input.
            sql = " UNION ALL ".join(f"SELECT %s, COUNT(*), NULL FROM {quote(table)}" for table in tables)  # noqa: S608
            cursor.execute(sql, tables)
            found = {name: (rows, size) for name, rows, size in cursor.fetchall()}
    return [TableSize(table, *found.get(table, (0, None))) for table in tables]


def attention(*, now: dt.datetime) -> Attention:
    """Two counts, one query each (the status and the needs_attention indexes)."""
    stuck = Generation.objects.filter(status__in=Generation.ACTIVE_STATUSES, created_at__lt=now - STUCK_AFTER)
    return Attention(
        stuck_generations=stuck.count(),
        flagged_purchases=Purchase.objects.filter(needs_attention=True).count(),
    )


def dashboard(*, now: dt.datetime | None = None, window_days: int = DEFAULT_WINDOW_DAYS) -> Dashboard:
    """Everything the dashboard page shows: eleven queries in all."""
    now = now or timezone.now()
    since = _utc_day_start(now, window_days - 1)
    return Dashboard(
        now=now,
        window_days=window_days,
        attention=attention(now=now),
        per_hour=generations_per_hour(now=now),
        per_day=generations_per_day(now=now, days=window_days),
        models=model_stats(since=since),
        fallback=fallback_rate(since=since),
        backlog=persistence_backlog(),
        credits_per_day=credits_per_day(now=now, days=window_days),
        blocked=safety_blocks(since=since),
        tables=table_sizes(),
    )
