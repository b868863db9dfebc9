"""GET /healthz: 200 only with the database and a live worker; booleans, never secrets."""

from __future__ import annotations

import datetime as dt

import pytest
from django.db import connection
from django.utils import timezone

from generation.models import WorkerHeartbeat


def beat(seconds_ago: float, worker_id: str = "host:1") -> WorkerHeartbeat:
    now = timezone.now()
    return WorkerHeartbeat.objects.create(
        worker_id=worker_id,
        hostname="host",
        pid=1,
        started_at=now - dt.timedelta(hours=1),
        last_seen_at=now - dt.timedelta(seconds=seconds_ago),
    )


def test_it_answers_200_when_the_database_and_a_worker_are_up(client, db):
    beat(5)
    response = client.get("/healthz")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert body["database"] == "up"
    assert body["worker"] == "up"
    assert 4 <= body["worker_last_seen_seconds_ago"] < 30
    assert response["Cache-Control"].startswith("max-age=0")


def test_it_answers_503_when_no_worker_ever_ran(client, db):
    response = client.get("/healthz")
    assert response.status_code == 503
    body = response.json()
    assert (body["status"], body["database"], body["worker"]) == ("unavailable", "up", "down")
    assert body["worker_last_seen_at"] is None


def test_it_answers_503_when_the_worker_stopped_beating(client, db):
    beat(90)
    response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json()["worker"] == "down"


def test_the_newest_heartbeat_counts_when_several_workers_ran(client, db):
    beat(3600, worker_id="old:1")
    beat(10, worker_id="new:2")
    assert client.get("/healthz").status_code == 200


def test_it_reports_configuration_as_booleans_without_leaking_values(client, db, settings):
    beat(1)
    settings.FAL_KEY = "fal-key-id:fal-key-secret-value"
    settings.CLOUDINARY_ENABLED = True
    settings.CLOUDINARY_API_SECRET = "cloudinary-secret-value"
    response = client.get("/healthz")
    body = response.json()
    assert body["fal_configured"] is True
    assert body["cloudinary_configured"] is True
    assert b"secret-value" not in response.content

    settings.FAL_KEY = ""
    settings.CLOUDINARY_ENABLED = False
    body = client.get("/healthz").json()
    assert (body["fal_configured"], body["cloudinary_configured"]) == (False, False)


def test_it_needs_no_sign_in_and_only_answers_get(client, db):
    beat(1)
    assert client.get("/healthz").status_code == 200
    assert client.head("/healthz").status_code == 200
    assert client.post("/healthz").status_code == 405


@pytest.mark.django_db(transaction=True)
def test_it_answers_503_when_the_database_is_unreachable(client):
    """Point the connection at a database that does not exist: a real connection failure."""
    beat(1)
    original = connection.settings_dict["NAME"]
    unreachable = "/nonexistent-dir/stefna.sqlite3" if connection.vendor == "sqlite" else "stefna_no_such_db"
    connection.close()
    connection.settings_dict["NAME"] = unreachable
    try:
        response = client.get("/healthz")
    finally:
        connection.close()
        connection.settings_dict["NAME"] = original
    assert response.status_code == 503
    body = response.json()
    assert (body["status"], body["database"], body["worker"]) == ("unavailable", "down", "down")
