"""Sessions are Django's, read with one fixed statement (stefna/sessions): the same
answers as Django's own read, for a live, an expired and an unknown session (with
Redis in front: stefna/accounts/tests/test_cached_sessions.py)."""

from __future__ import annotations

import datetime as dt

import pytest
from django.contrib.sessions.models import Session
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

pytestmark = pytest.mark.django_db


def _session_reads(queries: CaptureQueriesContext) -> list[str]:
    return [query["sql"] for query in queries if "django_session" in query["sql"]]


def test_a_signed_in_request_reads_its_session_with_one_statement_of_two_columns(user):
    browser = Client()
    browser.force_login(user)

    with CaptureQueriesContext(connection) as queries:
        response = browser.get("/api/me")

    assert response.status_code == 200 and response.json()["email"] == user.email
    [read] = _session_reads(queries)
    assert read.startswith('SELECT "session_data", "expire_date" FROM "django_session"')


def test_an_expired_session_signs_nobody_in_and_a_new_one_is_issued(user):
    browser = Client()
    browser.force_login(user)
    key = browser.session.session_key
    Session.objects.filter(session_key=key).update(expire_date=timezone.now() - dt.timedelta(seconds=1))

    assert browser.get("/api/me").status_code == 401
    # Its key is forgotten, as Django's own read forgets it: a session saved now gets a new one.
    store = browser.session
    store["touched"] = True
    store.save()
    assert store.session_key != key


def test_an_unknown_session_key_signs_nobody_in():
    browser = Client()
    browser.cookies["sessionid"] = "x" * 32

    assert browser.get("/api/me").status_code == 401
