"""Rate limits every process shares: the database cache without Redis, exact counts
across four processes, the client address behind trusted proxies, IPv6 grouped by /64,
and a Redis outage answered without a 500."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from django.conf import settings
from django.core.cache import cache
from django.db import connection
from django.test import Client, RequestFactory, override_settings

from stefna import ratelimit
from stefna.errors import RateLimited
from tests.databases import database_url

ROOT = Path(__file__).resolve().parents[2]
# Port 1 on loopback: nothing listens there, so every connection is refused at once.
DEAD_REDIS = "redis://127.0.0.1:1/2"


@pytest.mark.django_db
def test_without_redis_the_cache_is_the_database_and_migrate_created_its_table():
    assert settings.DEBUG is False and not settings.REDIS_URL
    assert settings.CACHES["default"]["BACKEND"] == "django.core.cache.backends.db.DatabaseCache"
    cache.set("shared", "by every process", timeout=60)
    with connection.cursor() as cursor:
        cursor.execute("SELECT COUNT(*) FROM stefna_cache")
        assert cursor.fetchone()[0] >= 1


def test_the_client_address_comes_from_x_forwarded_for_only_behind_trusted_proxies(settings):
    request = RequestFactory().get("/", REMOTE_ADDR="10.0.0.2", HTTP_X_FORWARDED_FOR="6.6.6.6, 198.51.100.7")
    settings.TRUSTED_PROXY_COUNT = 0
    assert ratelimit.client_ip(request) == "10.0.0.2"
    settings.TRUSTED_PROXY_COUNT = 1
    # The entry our proxy appended, not the one the client wrote before it.
    assert ratelimit.client_ip(request) == "198.51.100.7"
    settings.TRUSTED_PROXY_COUNT = 2
    assert ratelimit.client_ip(request) == "6.6.6.6"
    settings.TRUSTED_PROXY_COUNT = 3
    assert ratelimit.client_ip(request) == "10.0.0.2", "fewer entries than proxies: the peer address"
    bogus = RequestFactory().get("/", REMOTE_ADDR="10.0.0.2", HTTP_X_FORWARDED_FOR="not-an-address")
    settings.TRUSTED_PROXY_COUNT = 1
    assert ratelimit.client_ip(bogus) == "10.0.0.2"


@pytest.mark.django_db
@pytest.mark.usefixtures("clear_of_rate_window_end")
def test_per_ip_limits_behind_a_proxy_count_each_client_separately(settings, mailoutbox):
    settings.TRUSTED_PROXY_COUNT = 1
    settings.RATE_LIMIT_CODES_PER_IP = (2, 3600)

    def ask(client_address: str, n: int) -> int:
        return (
            Client(REMOTE_ADDR="10.0.0.1", HTTP_X_FORWARDED_FOR=client_address)
            .post("/accounts/sign-in/", {"email": f"p{n}-{client_address}@example.com"})
            .status_code
        )

    assert [ask("198.51.100.1", n) for n in range(3)] == [302, 302, 429]
    assert ask("198.51.100.2", 0) == 302, "another client behind the same proxy has its own limit"


@pytest.mark.django_db
@pytest.mark.usefixtures("clear_of_rate_window_end")
def test_ipv6_addresses_in_one_slash_64_share_a_limit(settings, mailoutbox):
    settings.RATE_LIMIT_CODES_PER_IP = (2, 3600)
    addresses = ["2001:db8:1:2::1", "2001:db8:1:2:ffff::9", "2001:db8:1:2:abcd:1:2:3"]
    answers = [
        Client(REMOTE_ADDR=address).post("/accounts/sign-in/", {"email": f"v6-{n}@example.com"}).status_code
        for n, address in enumerate(addresses)
    ]
    assert answers == [302, 302, 429]
    other_network = Client(REMOTE_ADDR="2001:db8:1:3::1").post("/accounts/sign-in/", {"email": "v6-x@example.com"})
    assert other_network.status_code == 302
    assert ratelimit.ip_key("::ffff:192.0.2.5") == "192.0.2.5"
    assert ratelimit.ip_key("garbage") == "unknown"


WORKER_SCRIPT = textwrap.dedent(
    """
    import os, sys, time
    import django
    django.setup()
    from stefna.accounts import services
    from stefna.errors import RateLimited
    start_at = float(sys.argv[1])
    while time.time() < start_at:
        time.sleep(0.005)
    accepted = refused = 0
    for _ in range(int(sys.argv[2])):
        try:
            services.login_code_send(email="target@example.com", ip_address=None)
            accepted += 1
        except RateLimited:
            refused += 1
    print(accepted, refused)
    """
)


@pytest.mark.django_db(transaction=True)
def test_four_processes_share_the_per_email_code_limit_exactly(tmp_path):
    """Four separate processes (as four gunicorn workers would be) ask 32 codes for one
    inbox at the same moment: exactly the limit's 5 are sent."""
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "stefna.settings",
        "DATABASE_URL": database_url(),
        "REDIS_URL": "",
        "EMAIL_BACKEND": "django.core.mail.backends.locmem.EmailBackend",
        "PYTHONPATH": str(ROOT),
    }
    script = tmp_path / "ask_codes.py"
    script.write_text(WORKER_SCRIPT)
    start_at = time.time() + 4  # after every process has started and imported Django
    # The limit counts in fixed windows (stefna/ratelimit.py): a burst that straddled a
    # window's end would rightly get a fresh allowance in the next one (a run at 10:30:00
    # sent 6). Start the burst after that end when it is less than 30 s away.
    _, window = settings.RATE_LIMIT_CODES_PER_EMAIL
    if window - start_at % window < 30:
        start_at += window - start_at % window + 1
    processes = [
        subprocess.Popen(
            [sys.executable, str(script), str(start_at), "8"],
            env=env,
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    results = []
    for process in processes:
        out, err = process.communicate(timeout=120)
        assert process.returncode == 0, err
        results.append(tuple(int(n) for n in out.split()))
    accepted = sum(a for a, _ in results)
    refused = sum(r for _, r in results)
    per_email, _ = settings.RATE_LIMIT_CODES_PER_EMAIL
    assert (accepted, refused) == (per_email, 32 - per_email), results
    from stefna.accounts.models import LoginCode

    assert LoginCode.objects.filter(email="target@example.com").count() == per_email


@pytest.mark.django_db
@pytest.mark.usefixtures("clear_of_rate_window_end")
def test_with_redis_unreachable_nothing_answers_500_and_limits_still_hold(settings, mailoutbox, caplog):
    """REDIS_URL set, Redis down: limits count in the database (exact, not fail-open),
    cached reads are misses, /healthz says the cache is down with a 200."""
    dead_cache = {
        "default": {
            "BACKEND": "stefna.cache.ResilientRedisCache",
            "LOCATION": DEAD_REDIS,
            "OPTIONS": {"socket_connect_timeout": 0.5, "socket_timeout": 0.5},
        }
    }
    with override_settings(CACHES=dead_cache, REDIS_URL=DEAD_REDIS):
        client = Client(REMOTE_ADDR="198.51.100.50")
        answers = [client.post("/accounts/sign-in/", {"email": "outage@example.com"}).status_code for _ in range(6)]
        assert answers == [302] * 5 + [429]
        assert len(mailoutbox) == 5
        assert client.get("/api/presets").status_code == 200
        assert client.get("/api/feed").status_code == 200
        assert client.get("/").status_code < 500
        health = client.get("/healthz")
        assert health.status_code == 200
        assert health.json()["checks"]["cache"] == "down"
        assert health.json()["checks"]["database"] == "up"
        assert cache.get("anything") is None
        cache.set("anything", 1)  # dropped, not raised
    assert "counting in the database instead" in caplog.text


@pytest.mark.usefixtures("clear_of_rate_window_end")
def test_a_limit_over_its_count_raises_with_the_seconds_left(db):
    for _ in range(3):
        ratelimit.hit("unit:one", limit=3, window=60)
    with pytest.raises(RateLimited) as refused:
        ratelimit.hit("unit:one", limit=3, window=60)
    assert 1 <= refused.value.retry_after <= 60
    ratelimit.hit("unit:two", limit=3, window=60)  # another key is untouched


LIVE_REDIS = os.environ.get("STEFNA_TEST_REDIS_URL", "redis://127.0.0.1:6379/2")


def _redis_answers() -> bool:
    import redis

    try:
        return bool(redis.Redis.from_url(LIVE_REDIS, socket_connect_timeout=0.5).ping())
    except redis.RedisError:
        return False


@pytest.mark.skipif(not _redis_answers(), reason=f"no Redis answering at {LIVE_REDIS}")
@pytest.mark.usefixtures("clear_of_rate_window_end")
def test_with_redis_up_limits_count_in_redis_atomically(db):
    live_cache = {"default": {"BACKEND": "stefna.cache.ResilientRedisCache", "LOCATION": LIVE_REDIS}}
    with override_settings(CACHES=live_cache, REDIS_URL=LIVE_REDIS):
        key = f"unit:redis:{os.getpid()}:{time.time()}"
        for _ in range(2):
            ratelimit.hit(key, limit=2, window=60)
        with pytest.raises(RateLimited):
            ratelimit.hit(key, limit=2, window=60)
        assert cache.ping() is True
    from stefna.accounts.models import RateCounter

    assert not RateCounter.objects.filter(key__contains=key).exists(), "Redis counted, not the database"


def test_the_sweeper_removes_counters_of_ended_windows(db):
    from datetime import timedelta

    from django.utils import timezone

    from generation import services
    from stefna.accounts.models import RateCounter

    ratelimit.hit("unit:live", limit=5, window=60)
    RateCounter.objects.create(key="rl:unit:old:0", count=3, expires_at=timezone.now() - timedelta(seconds=1))

    services.generation_sweep()

    assert list(RateCounter.objects.values_list("key", flat=True)) == [
        key for key in RateCounter.objects.values_list("key", flat=True) if "unit:live" in key
    ]
    assert RateCounter.objects.filter(key__contains="unit:live").exists()
    assert not RateCounter.objects.filter(key="rl:unit:old:0").exists()
