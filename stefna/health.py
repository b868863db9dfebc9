"""GET /healthz: which of this deployment's dependencies answer.

`{status, checks: {database, cache, storage, worker}}`, each check "up" or "down".
Only the database makes it 503 (CONTRACT): without it nothing works, while a dead
cache or worker leaves the site serving pages (limits count in the database, jobs
wait for the worker), so a load balancer must not pull the node. `status` says
"degraded" then, for monitors that alert on more than the code. `?deep=1` also
writes, reads and deletes a probe file in storage and a value in the cache, at most
DEEP_PER_MINUTE times a minute for one address (then 429). No authentication: nothing
here is secret (configuration appears as booleans only), and monitors can't sign in.

Under ASGI each web process checks at most once a second for a bare `GET /healthz` and
sends that answer again meanwhile, from its event loop (stefna/asgi_handler.py,
`reuse_answer`): a monitor probing many times a second, or a busy node, then costs one
check a second and gets its answer at once. `?deep=1` always checks.
"""

from __future__ import annotations

import datetime as dt
import logging
import secrets

from django.conf import settings
from django.core.cache import cache
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import connection
from django.db.models import Max
from django.http import HttpRequest, JsonResponse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe

from stefna import ratelimit
from stefna.asgi_handler import own_thread, reuse_answer
from stefna.errors import RateLimited, error_body

logger = logging.getLogger("stefna")

# db_worker beats every few seconds; a minute of silence means it is stopped or stuck.
WORKER_STALE_AFTER = dt.timedelta(seconds=60)
PROBE_NAME = "healthz/probe.txt"
# Deep checks an address may ask for a minute (`_deep_refused`).
DEEP_PER_MINUTE = 30


def _database_up() -> bool:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            return cursor.fetchone() == (1,)
    except Exception:
        # Any failure (refused, auth, timeout) means "down"; the log has the detail.
        logger.warning("healthz: database check failed", exc_info=True)
        return False


def _cache_up(*, deep: bool) -> bool:
    try:
        ping = getattr(cache, "ping", None)
        if ping is not None and not ping():
            return False
        if deep:
            token = secrets.token_hex(8)
            cache.set("healthz:probe", token, timeout=30)
            return cache.get("healthz:probe") == token
        if ping is None:
            # The database cache: one read finds a missing table. A write on every probe
            # (20 a second from a busy monitor) cost more than the rest of the check.
            cache.get("healthz:probe")
        return True
    except Exception:
        logger.warning("healthz: cache check failed", exc_info=True)
        return False


def _storage_up(*, deep: bool) -> bool:
    try:
        if not deep:
            default_storage.exists(PROBE_NAME)  # one cheap round trip (a HEAD on S3)
            return True
        name = default_storage.save(f"healthz/{secrets.token_hex(8)}.txt", ContentFile(b"ok"))
        try:
            with default_storage.open(name, "rb") as probe:
                return probe.read() == b"ok"
        finally:
            default_storage.delete(name)
    except Exception:
        logger.warning("healthz: storage check failed", exc_info=True)
        return False


def _worker_last_seen() -> dt.datetime | None:
    from generation.models import WorkerHeartbeat

    return WorkerHeartbeat.objects.aggregate(newest=Max("last_seen_at"))["newest"]


def _deep_refused(request: HttpRequest) -> JsonResponse | None:
    """A 429 once an address asks for more than DEEP_PER_MINUTE deep checks a minute: each
    writes to storage and the cache, and anyone may ask. A monitor probing every few
    seconds stays well inside it. Counting never stands in the way of the answer: if
    it fails (the database is down), the check runs and says so."""
    try:
        ratelimit.hit(
            f"healthz-deep:{ratelimit.ip_key(ratelimit.client_ip(request))}", limit=DEEP_PER_MINUTE, window=60
        )
    except RateLimited as exc:
        response = JsonResponse(error_body(exc.code, exc.message, exc.detail), status=exc.status)
        response["Retry-After"] = str(exc.retry_after)
        return response
    except Exception:
        logger.warning("healthz: counting a deep check failed", exc_info=True)
    return None


def _state(up: bool) -> str:
    return "up" if up else "down"


# A monitor may probe many times a second; each web process checks at most once a second
# and sends that answer again meanwhile, from its event loop (`?deep=1` always checks).
@reuse_answer(seconds=1.0)
@own_thread
@never_cache
@require_safe
def healthz(request: HttpRequest) -> JsonResponse:
    deep = request.GET.get("deep") == "1"
    if deep and (refused := _deep_refused(request)) is not None:
        return refused
    database_up = _database_up()
    last_seen = _worker_last_seen() if database_up else None
    now = timezone.now()
    checks = {
        "database": database_up,
        "cache": _cache_up(deep=deep),
        "storage": _storage_up(deep=deep),
        "worker": last_seen is not None and now - last_seen < WORKER_STALE_AFTER,
    }
    if not database_up:
        status = "unavailable"
    else:
        status = "ok" if all(checks.values()) else "degraded"
    body = {
        "status": status,
        "checks": {name: _state(up) for name, up in checks.items()},
        "worker_last_seen_at": last_seen.isoformat() if last_seen else None,
        "worker_last_seen_seconds_ago": round((now - last_seen).total_seconds(), 1) if last_seen else None,
        "fal_configured": bool(settings.FAL_KEY),
        "cloudinary_configured": bool(settings.CLOUDINARY_ENABLED),
    }
    return JsonResponse(body, status=200 if database_up else 503)
