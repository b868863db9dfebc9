"""Prometheus metrics at /metrics, for staff sessions or `Authorization: Bearer METRICS_TOKEN`.

Two kinds of series:

- Request counters and timings, counted by `stefna.middleware.MetricsMiddleware` in
  each web process. Under gunicorn several processes serve one port, so with
  PROMETHEUS_MULTIPROC_DIR set (gunicorn.conf.py, compose, systemd and the Procfile set
  it) each process writes its samples to that folder and a scrape adds them up;
  otherwise the process answering the scrape reports its own.
- Everything about the work itself (generations, the queue, fal latency, persistence
  retries, storage moves and removals owed, credits), read from the database at scrape
  time by `DatabaseCollector`. The database is the one place every web process and
  worker agrees on, so any process answers the same, nothing is lost when a worker
  restarts, and the generation pipeline needs no hooks. Each scrape costs a handful of
  aggregate queries.
"""

from __future__ import annotations

import datetime as dt
import hmac
import os
from collections.abc import Iterator, Mapping
from typing import Any

from django.conf import settings
from django.db.models import Count, F, IntegerField, Min, Q, Sum, Value
from django.db.models.functions import Coalesce
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils import timezone
from django.utils.translation import gettext as _
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest, multiprocess
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

from stefna.errors import error_body

# Not in the global registry: a scrape builds its own (see metrics_view), so the same
# objects serve the single-process and the multi-process case.
HTTP_REQUESTS = Counter(
    "stefna_http_requests",
    "HTTP requests answered, by route pattern, method and status.",
    ["route", "method", "status"],
    registry=None,
)
HTTP_DURATION = Histogram(
    "stefna_http_request_duration_seconds",
    "Time to answer an HTTP request, by route pattern.",
    ["route"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
    registry=None,
)

FAL_LATENCY_BUCKETS = (1, 2, 5, 10, 20, 30, 60, 120, 300, 600)
# Ledger reasons that mean "the user paid money for credits" (issue 18's purchases).
BOUGHT_REASONS = ("purchase",)


def route_of(request: HttpRequest) -> str:
    """The URL pattern that answered (e.g. `api/generations/<uuid:generation_id>`), so the
    label stays bounded however many ids and scanners' paths arrive."""
    match = getattr(request, "resolver_match", None)
    return match.route if match is not None and match.route else "unmatched"


def observe_request(request: HttpRequest, *, status: int, seconds: float) -> None:
    route = route_of(request)
    HTTP_REQUESTS.labels(route=route, method=request.method or "", status=str(status)).inc()
    HTTP_DURATION.labels(route=route).observe(seconds)


# --- Read at scrape time ----------------------------------------------------------------


def _generation_counts() -> list[Mapping[str, Any]]:
    from generation.models import Generation

    return list(
        Generation.objects.values("preset_slug", "current_model", "status").annotate(count=Count("pk")).order_by()
    )


def _queue_state(now: dt.datetime) -> dict[str, Any]:
    from generation.models import Generation

    active = Generation.objects.filter(status__in=Generation.ACTIVE_STATUSES)
    by_status = dict(active.values_list("status").annotate(count=Count("pk")).order_by())
    oldest_due = active.filter(next_check_at__lte=now).aggregate(oldest=Min("next_check_at"))["oldest"]
    return {"by_status": by_status, "oldest_due": oldest_due}


def _task_queue_state(now: dt.datetime) -> dict[str, Any]:
    from django_tasks_db.models import DBTaskResult

    ready = DBTaskResult.objects.filter(status="READY")
    due = ready.filter(run_after__lte=now)
    return {"ready": ready.count(), "oldest_due": due.aggregate(oldest=Min("run_after"))["oldest"]}


def _fal_latency() -> list[Mapping[str, Any]]:
    """Per model: the count of finished fal attempts at or under each bucket, the total
    count and the summed seconds, in one grouped query."""
    from generation.models import Attempt

    duration = F("finished_at") - F("started_at")
    buckets = {
        f"le_{index}": Count("pk", filter=Q(finished_at__lte=F("started_at") + dt.timedelta(seconds=bound)))
        for index, bound in enumerate(FAL_LATENCY_BUCKETS)
    }
    rows = (
        Attempt.objects.filter(finished_at__isnull=False)
        .exclude(fal_job_id="")
        .values("model")
        .annotate(count=Count("pk"), total=Sum(duration), **buckets)
        .order_by()
    )
    return list(rows)


def _attempt_outcomes() -> list[Mapping[str, Any]]:
    from generation.models import Attempt

    return list(Attempt.objects.values("model", "status").annotate(count=Count("pk")).order_by())


def _persistence() -> dict[str, int]:
    from generation.models import Media

    totals = Media.objects.aggregate(
        retries=Coalesce(
            Sum(F("persist_attempts") - 1, filter=Q(persist_attempts__gt=1)), Value(0), output_field=IntegerField()
        ),
        waiting=Count("pk", filter=Q(persisted=False)),
    )
    return {"retries": int(totals["retries"] or 0), "waiting": int(totals["waiting"] or 0)}


def _storage_owed() -> dict[str, int]:
    """Storage work not yet confirmed (generation/services/revoke.py): moves of images
    off a name that was public, and removals of objects no row points to."""
    from generation.models import Media, StoredRemoval

    return {
        "moves": Media.objects.filter(move_next_at__isnull=False).count(),
        "removals": StoredRemoval.objects.count(),
    }


def _credits_by_reason() -> list[Mapping[str, Any]]:
    from credits.models import CreditEntry

    return list(CreditEntry.objects.values("reason").annotate(total=Sum("amount"), count=Count("pk")).order_by())


def _seconds(value: Any) -> float:
    if value is None:
        return 0.0
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    return float(value) / 1_000_000  # some backends hand durations back as microseconds


class DatabaseCollector(Collector):
    """Series read from the database when Prometheus scrapes."""

    def collect(self) -> Iterator[Any]:
        from credits.models import CreditEntry

        now = timezone.now()

        generations = CounterMetricFamily(
            "stefna_generations", "Generations by preset, model and outcome.", labels=["preset", "model", "status"]
        )
        for row in _generation_counts():
            generations.add_metric([row["preset_slug"], row["current_model"], row["status"]], row["count"])
        yield generations

        queue = _queue_state(now)
        depth = GaugeMetricFamily("stefna_generation_queue_depth", "Generations not yet final.", labels=["status"])
        for status in ("queued", "running"):
            depth.add_metric([status], queue["by_status"].get(status, 0))
        yield depth
        oldest = queue["oldest_due"]
        yield GaugeMetricFamily(
            "stefna_generation_oldest_due_seconds",
            "How long the oldest generation that is due has been waiting for a worker (0 when none).",
            value=max(0.0, (now - oldest).total_seconds()) if oldest else 0.0,
        )

        tasks = _task_queue_state(now)
        yield GaugeMetricFamily("stefna_task_queue_depth", "Background tasks waiting to run.", value=tasks["ready"])
        yield GaugeMetricFamily(
            "stefna_task_oldest_due_seconds",
            "How long the oldest due background task has waited (0 when none).",
            value=max(0.0, (now - tasks["oldest_due"]).total_seconds()) if tasks["oldest_due"] else 0.0,
        )

        latency = HistogramMetricFamily(
            "stefna_fal_attempt_duration_seconds",
            "Time from submission to fal until the attempt finished, by model.",
            labels=["model"],
        )
        for row in _fal_latency():
            buckets = [(str(float(bound)), row[f"le_{index}"]) for index, bound in enumerate(FAL_LATENCY_BUCKETS)]
            buckets.append(("+Inf", row["count"]))
            latency.add_metric([row["model"]], buckets, _seconds(row["total"]))
        yield latency

        attempts = CounterMetricFamily(
            "stefna_fal_attempts", "Attempts at fal by model and outcome.", labels=["model", "status"]
        )
        for row in _attempt_outcomes():
            attempts.add_metric([row["model"], row["status"]], row["count"])
        yield attempts

        persistence = _persistence()
        yield CounterMetricFamily(
            "stefna_media_persist_retries",
            "Copies of results to durable storage that had to be tried again.",
            value=persistence["retries"],
        )
        yield GaugeMetricFamily(
            "stefna_media_unpersisted", "Result images not yet in durable storage.", value=persistence["waiting"]
        )

        owed = _storage_owed()
        yield GaugeMetricFamily(
            "stefna_media_moves_owed",
            "Images made private or taken down whose stored file has not left its old, once public name yet.",
            value=owed["moves"],
        )
        yield GaugeMetricFamily(
            "stefna_storage_removals_owed",
            "Stored objects of deleted images and accounts that storage has not confirmed removing yet.",
            value=owed["removals"],
        )

        by_reason = _credits_by_reason()
        moved = CounterMetricFamily(
            "stefna_credit_entries", "Ledger entries by reason (count of entries).", labels=["reason"]
        )
        spent = 0
        bought = 0
        for row in by_reason:
            moved.add_metric([row["reason"]], row["count"])
            if row["reason"] in CreditEntry.GENERATION_REASONS:
                spent -= row["total"] or 0  # reservations are negative, refunds give back
            if row["reason"] in BOUGHT_REASONS:
                bought += row["total"] or 0
        yield moved
        yield CounterMetricFamily("stefna_credits_spent", "Credits spent on generations (net of refunds).", value=spent)
        yield CounterMetricFamily("stefna_credits_bought", "Credits bought with money.", value=bought)


def _multiprocess_dir() -> str:
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR", "")


def _refusal(request: HttpRequest) -> JsonResponse | None:
    """None when the caller may read metrics: staff, or the METRICS_TOKEN bearer."""
    user = getattr(request, "user", None)
    if user is not None and user.is_authenticated and user.is_staff:
        return None
    token = settings.METRICS_TOKEN
    scheme, _space, offered = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer" and offered:
        if token and hmac.compare_digest(offered.strip().encode(), token.encode()):
            return None
        return JsonResponse(error_body("forbidden", _("That metrics token is not valid.")), status=403)
    if user is not None and user.is_authenticated:
        return JsonResponse(error_body("forbidden", _("Metrics are for staff only.")), status=403)
    response = JsonResponse(
        error_body("unauthorized", _("Sign in as staff or send Authorization: Bearer <METRICS_TOKEN>.")), status=401
    )
    response["WWW-Authenticate"] = 'Bearer realm="metrics"'
    return response


@never_cache
@require_safe
def metrics_view(request: HttpRequest) -> HttpResponse:
    refusal = _refusal(request)
    if refusal is not None:
        return refusal
    registry = CollectorRegistry()
    if _multiprocess_dir():
        multiprocess.MultiProcessCollector(registry)
    else:
        registry.register(HTTP_REQUESTS)
        registry.register(HTTP_DURATION)
    registry.register(DatabaseCollector())
    return HttpResponse(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)
