"""With REDIS_URL, sessions are cached_db: a signed-in request reads its session from
Redis, not the database, and deleting the account removes the session from both."""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from django.conf import settings as django_settings
from django.contrib.sessions.backends.cached_db import KEY_PREFIX
from django.contrib.sessions.models import Session
from django.core.cache import cache
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from stefna.accounts.deletion import account_delete
from stefna.sessions.cached_db import DELETED

pytestmark = pytest.mark.django_db

REDIS = "redis://127.0.0.1:6379/13"
HOOKED_REDIS = "redis://127.0.0.1:6379/11"


def test_redis_url_makes_sessions_cached_db_and_without_it_they_stay_in_the_database():
    code = "from django.conf import settings; print(settings.SESSION_ENGINE)"
    engines = []
    for redis_url in (REDIS, ""):
        result = subprocess.run(
            [sys.executable, "-c", f"import django; django.setup(); {code}"],
            cwd=django_settings.BASE_DIR,
            env={"DJANGO_SETTINGS_MODULE": "stefna.settings", "DEBUG": "1", "REDIS_URL": redis_url, "PATH": ""},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 0, result.stderr
        engines.append(result.stdout.strip())
    assert engines == ["stefna.sessions.cached_db", "stefna.sessions.db"]


@contextmanager
def _sessions_in_redis(settings, backend: str, location: str) -> Iterator[None]:  # type: ignore[no-untyped-def]
    # Keys under a prefix of this test's own, removed after it: this module's tests may run
    # at once on several xdist workers, and clearing the whole Redis database took one
    # test's session from under another (which then read it from the database).
    prefix = f"test-sessions-{uuid.uuid4().hex}"
    settings.CACHES = {"default": {"BACKEND": backend, "LOCATION": location, "KEY_PREFIX": prefix}}
    settings.SESSION_ENGINE = "stefna.sessions.cached_db"
    try:
        yield
    finally:
        client = cache._cache.get_client(write=True)  # type: ignore[attr-defined]
        for key in client.scan_iter(f"{prefix}:*"):
            client.delete(key)


@pytest.fixture
def redis_sessions(settings):
    with _sessions_in_redis(settings, "stefna.cache.ResilientRedisCache", REDIS):
        yield


def test_a_signed_in_request_reads_its_session_from_redis_and_deleting_the_account_removes_it(user, redis_sessions):
    browser = Client()
    browser.force_login(user)
    key = browser.session.session_key
    assert cache.get(KEY_PREFIX + key) is not None

    with CaptureQueriesContext(connection) as queries:
        assert browser.get("/api/quota").status_code == 200
    assert not [query for query in queries if "django_session" in query["sql"]]

    account_delete(user=user, confirm=user.email)

    assert cache.get(KEY_PREFIX + key) == DELETED  # the session's marker, not the session
    assert not Session.objects.filter(session_key=key).exists()
    assert browser.get("/accounts/").status_code == 302  # signed out


def test_a_cache_miss_reads_the_database_once_and_fills_the_cache(user, redis_sessions):
    browser = Client()
    browser.force_login(user)
    key = browser.session.session_key
    cache.delete(KEY_PREFIX + key)

    with CaptureQueriesContext(connection) as queries:
        assert browser.get("/api/me").status_code == 200
    assert len([query for query in queries if "django_session" in query["sql"]]) == 1
    assert cache.get(KEY_PREFIX + key) is not None

    with CaptureQueriesContext(connection) as queries:
        assert browser.get("/api/me").status_code == 200
    assert not [query for query in queries if "django_session" in query["sql"]]


@pytest.fixture
def hooked_redis_sessions(settings):
    from tests.fakes.cache import HookedRedisCache

    with _sessions_in_redis(settings, "tests.fakes.cache.HookedRedisCache", HOOKED_REDIS):
        yield HookedRedisCache
        HookedRedisCache.before_write = None


def test_a_request_that_read_the_session_before_sign_out_does_not_cache_it_signed_in_again(user, hooked_redis_sessions):
    # Two holders of one session cookie (two tabs, or a copy of the cookie). The session
    # is not in the cache (Redis restarted or evicted it), so the copy's next request
    # reads the row; the browser signs out after that read and before the request fills
    # the cache. Django's own cached_db then wrote the signed-in session back after the
    # sign-out's delete, and the signed-out cookie answered as the user until expiry.
    browser = Client()
    browser.force_login(user)
    key = browser.session.session_key
    copy = Client()
    copy.cookies[django_settings.SESSION_COOKIE_NAME] = key
    cache.delete(KEY_PREFIX + key)

    def sign_out_first(cache_key: str) -> None:
        if cache_key == KEY_PREFIX + key:
            hooked_redis_sessions.before_write = None
            assert browser.post("/accounts/sign-out/").status_code == 302

    hooked_redis_sessions.before_write = sign_out_first
    assert copy.get("/api/me").status_code == 200  # in flight before the sign-out: answered
    assert hooked_redis_sessions.before_write is None  # the sign-out ran in between

    assert not Session.objects.filter(session_key=key).exists()
    assert copy.get("/api/me").status_code == 401
    assert copy.get("/accounts/").status_code == 302  # to the sign-in page
