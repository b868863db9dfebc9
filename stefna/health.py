"""GET /healthz: is this deployment able to serve and finish generations?

Answers 200 when the database answers a trivial query and a task worker has written
its heartbeat within the last minute, 503 otherwise, so a load balancer or uptime
monitor needs nothing but the status code. The body says which part is down and
whether fal and Cloudinary are configured: booleans only, never a key or a URL.
No authentication: nothing here is secret, and monitors can't sign in.
"""

from __future__ import annotations

import datetime as dt
import logging

from django.conf import settings
from django.db import connection
from django.db.models import Max
from django.http import HttpRequest, JsonResponse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe

logger = logging.getLogger("stefna")

# db_worker beats every few seconds; a minute of silence means it is stopped or stuck.
WORKER_STALE_AFTER = dt.timedelta(seconds=60)


def _database_up() -> bool:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            return cursor.fetchone() == (1,)
    except Exception:
        # Any failure (refused, auth, timeout) means "down"; the log has the detail.
        logger.warning("healthz: database check failed", exc_info=True)
        return False


def _worker_last_seen() -> dt.datetime | None:
    from generation.models import WorkerHeartbeat

    return WorkerHeartbeat.objects.aggregate(newest=Max("last_seen_at"))["newest"]


@never_cache
@require_safe
def healthz(request: HttpRequest) -> JsonResponse:
    database_up = _database_up()
    last_seen = _worker_last_seen() if database_up else None
    now = timezone.now()
    worker_up = last_seen is not None and now - last_seen < WORKER_STALE_AFTER
    healthy = database_up and worker_up
    body = {
        "status": "ok" if healthy else "unavailable",
        "database": "up" if database_up else "down",
        "worker": "up" if worker_up else "down",
        "worker_last_seen_at": last_seen.isoformat() if last_seen else None,
        "worker_last_seen_seconds_ago": round((now - last_seen).total_seconds(), 1) if last_seen else None,
        "fal_configured": bool(settings.FAL_KEY),
        "cloudinary_configured": bool(settings.CLOUDINARY_ENABLED),
    }
    return JsonResponse(body, status=200 if healthy else 503)
