"""GET /healthz: 200 only with the database and a live worker; booleans, never secrets."""

from __future__ import annotations

import datetime as dt

import pytest
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
    assert body["checks"] == {"database": "up", "cache": "up", "storage": "up", "worker": "up"}
    assert 4 <= body["worker_last_seen_seconds_ago"] < 30
    assert response["Cache-Control"].startswith("max-age=0")


def test_it_reports_a_worker_that_never_ran_as_degraded_not_503(client, db):
    # CONTRACT: only the database makes /healthz 503; jobs simply wait for a worker.
    response = client.get("/healthz")
    assert response.status_code == 200
    body = response.json()
    assert (body["status"], body["checks"]["database"], body["checks"]["worker"]) == ("degraded", "up", "down")
    assert body["worker_last_seen_at"] is None


def test_it_reports_a_worker_that_stopped_beating(client, db):
    beat(90)
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json()["checks"]["worker"] == "down"


def test_the_newest_heartbeat_counts_when_several_workers_ran(client, db):
    beat(3600, worker_id="old:1")
    beat(10, worker_id="new:2")
    assert client.get("/healthz").json()["checks"]["worker"] == "up"


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
def test_it_answers_503_when_the_database_is_unreachable(client, database_down):
    """A real connection failure (with the connection pool on PostgreSQL, a fresh pool for
    an address nothing listens on: changing the name alone would reuse the old pool)."""
    response = client.get("/healthz")
    assert response.status_code == 503
    body = response.json()
    assert (body["status"], body["checks"]["database"], body["checks"]["worker"]) == ("unavailable", "down", "down")


def test_deep_checks_write_and_read_storage_and_cache_and_leave_nothing(client, db, settings):
    beat(1)
    body = client.get("/healthz?deep=1").json()
    assert body["checks"] == {"database": "up", "cache": "up", "storage": "up", "worker": "up"}
    leftovers = list((settings.MEDIA_ROOT / "healthz").glob("*")) if (settings.MEDIA_ROOT / "healthz").exists() else []
    assert leftovers == []


def test_unwritable_storage_is_reported_down_without_a_503(client, db, settings, tmp_path):
    beat(1)
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the media folder should be")
    settings.MEDIA_ROOT = blocker
    response = client.get("/healthz?deep=1")
    assert response.status_code == 200
    assert response.json()["checks"]["storage"] == "down"
    assert response.json()["status"] == "degraded"


def test_a_plain_probe_writes_nothing_and_still_finds_a_missing_cache_table(client, transactional_db):
    # transactional: on PostgreSQL the missing table would abort a test-wide transaction.
    # Monitors probe often; only ?deep=1 writes. The database cache is read once instead.
    from django.db import connection
    from django.test.utils import CaptureQueriesContext, override_settings

    def database_cache(table: str) -> dict:
        return {"default": {"BACKEND": "django.core.cache.backends.db.DatabaseCache", "LOCATION": table}}

    beat(5)
    with override_settings(CACHES=database_cache("stefna_cache")), CaptureQueriesContext(connection) as queries:
        body = client.get("/healthz").json()
    assert body["checks"]["cache"] == "up"
    writes = [q["sql"] for q in queries if q["sql"].split()[0].upper() in {"INSERT", "UPDATE", "DELETE"}]
    assert writes == []
    with override_settings(CACHES=database_cache("no_such_table")):
        body = client.get("/healthz").json()
    assert (body["status"], body["checks"]["cache"]) == ("degraded", "down")


def test_deep_checks_are_limited_per_address_and_plain_probes_are_not(client, db, monkeypatch):
    """Each deep check writes to storage and the cache, and anyone may ask for one."""
    from stefna import health

    monkeypatch.setattr(health, "DEEP_PER_MINUTE", 3)
    beat(1)
    answers = [client.get("/healthz?deep=1") for _ in range(4)]

    assert [answer.status_code for answer in answers] == [200, 200, 200, 429]
    assert answers[-1].json()["code"] == "rate_limited" and answers[-1]["Retry-After"]
    assert client.get("/healthz?deep=1", REMOTE_ADDR="198.51.100.7").status_code == 200  # another address
    assert all(client.get("/healthz").status_code == 200 for _ in range(5))
