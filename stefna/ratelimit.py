"""Fixed-window rate limits every web process shares.

With `REDIS_URL` the count is Redis's atomic INCR. Without it (or while Redis is
unreachable) the count is one conditional upsert on `stefna_rate_counters`, so four
gunicorn workers on one machine, or four machines on one database, count together.
Django's own database cache is not used for counting: its `incr` is a read followed
by a write, and concurrent requests would each read the same value.
"""

from __future__ import annotations

import ipaddress
import logging
import time
from datetime import UTC, datetime

from django.conf import settings
from django.core.cache import cache
from django.db import connection
from django.http import HttpRequest

from stefna.errors import RateLimited

logger = logging.getLogger("stefna.ratelimit")

# Only the fixed table name is part of the SQL text; every value is a parameter.
_UPSERT = (
    "INSERT INTO stefna_rate_counters (key, count, expires_at) VALUES (%s, 1, %s) "
    "ON CONFLICT (key) DO UPDATE SET count = stefna_rate_counters.count + 1 RETURNING count"
)
_PRUNE = "DELETE FROM stefna_rate_counters WHERE expires_at < %s"


def client_ip(request: HttpRequest) -> str | None:
    """The address per-IP limits count against.

    `REMOTE_ADDR`, unless `TRUSTED_PROXY_COUNT` says how many proxies in front of us
    append to X-Forwarded-For: then the address the outermost trusted proxy saw, i.e.
    the N-th entry from the right. Entries further left are whatever the client
    wrote and are never trusted.
    """
    remote = request.META.get("REMOTE_ADDR") or None
    proxies = settings.TRUSTED_PROXY_COUNT
    if proxies <= 0:
        return remote
    forwarded = [part.strip() for part in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",") if part.strip()]
    if len(forwarded) < proxies:
        # Fewer entries than proxies: a request that bypassed a proxy; its peer is all we know.
        return remote
    candidate = forwarded[-proxies]
    try:
        return str(ipaddress.ip_address(candidate))
    except ValueError:
        return remote


def ip_key(address: str | None) -> str:
    """The bucket an address counts in: itself for IPv4, its /64 for IPv6.

    One IPv6 subscriber is usually handed a whole /64 and can use any address in it,
    so counting single IPv6 addresses would give each attacker 2**64 fresh limits.
    """
    if not address:
        return "unknown"
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return "unknown"
    if isinstance(parsed, ipaddress.IPv6Address):
        if parsed.ipv4_mapped:
            return str(parsed.ipv4_mapped)
        return str(ipaddress.IPv6Network(f"{parsed}/64", strict=False))
    return str(parsed)


def hit(key: str, *, limit: int, window: int, message: str | None = None) -> None:
    """Count one event under `key`; raise RateLimited once more than `limit` fall in a window."""
    now = int(time.time())
    window_start = now - now % window
    counter_key = f"rl:{key}:{window_start}"[:250]
    count = _count(counter_key, expires=window_start + window)
    if count > limit:
        raise RateLimited(message, retry_after=window_start + window - now)


def _count(counter_key: str, *, expires: int) -> int:
    if settings.REDIS_URL:
        try:
            return _count_in_redis(counter_key, expires=expires)
        except Exception:
            # Redis is down: the database still counts exactly, only slower. Failing
            # open would switch off the limits that protect inboxes and credits.
            logger.warning("rate limit: the cache is unreachable, counting in the database instead", exc_info=True)
    return _count_in_database(counter_key, expires=expires)


def _count_in_redis(counter_key: str, *, expires: int) -> int:
    client = cache._cache.get_client(counter_key, write=True)  # type: ignore[attr-defined]
    redis_key = cache.make_and_validate_key(counter_key)
    pipeline = client.pipeline()
    pipeline.incr(redis_key)
    pipeline.expireat(redis_key, expires + 1)
    count, _ = pipeline.execute()
    return int(count)


def _count_in_database(counter_key: str, *, expires: int) -> int:
    expires_at = datetime.fromtimestamp(expires + 1, tz=UTC)
    with connection.cursor() as cursor:
        cursor.execute(_UPSERT, [counter_key, expires_at])
        (count,) = cursor.fetchone()
    return int(count)


def prune_expired() -> int:
    """Delete the counters of windows that have ended (the worker's sweeper calls this),
    so a request never pays for the clean-up."""
    with connection.cursor() as cursor:
        cursor.execute(_PRUNE, [datetime.now(tz=UTC)])
        return max(0, cursor.rowcount)
