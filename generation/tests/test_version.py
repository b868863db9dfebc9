"""Generation.version: the database triggers of migration 0007 move it on every change a
viewer sees, and only then. Runs on SQLite and PostgreSQL alike (each has its own
triggers); the NOTIFY half is PostgreSQL's and is tested in test_events.py."""

from __future__ import annotations

import datetime as dt

import pytest
from django.db.models import F
from django.utils import timezone

from generation.models import AppendLogLines, Generation, Media

from .factories import AttemptFactory, GenerationFactory, MediaFactory

pytestmark = pytest.mark.django_db


def version_of(generation: Generation) -> int:
    return Generation.objects.values_list("version", flat=True).get(pk=generation.pk)


@pytest.fixture
def running() -> Generation:
    return GenerationFactory.create(status=Generation.Status.RUNNING, completed_at=None)


def test_every_version_trigger_exists_after_all_migrations():
    """On SQLite a migration that rebuilds one of these tables drops its triggers (see
    migration 0010); this fails the day one does so without creating them again."""
    from django.db import connection

    with connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            cursor.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'")
            expected = {
                "generation_version_bump",
                *(
                    f"generation_{table}_version_{event}"
                    for table in ("attempt", "media")
                    for event in ("insert", "delete", "update")
                ),
            }
        else:
            cursor.execute("SELECT tgname FROM pg_trigger WHERE NOT tgisinternal")
            expected = {"generation_version_bump", "attempt_version_bump", "media_version_bump"}
        assert expected <= {name for (name,) in cursor.fetchall()}


def test_a_new_generation_starts_at_version_one(running):
    assert version_of(running) == 1


@pytest.mark.parametrize(
    "change",
    [
        {"status": Generation.Status.SUCCEEDED},
        {"queue_position": 3},
        {"current_model": "fal-ai/fast-sdxl"},
        {"error_code": "timeout", "error_message": "too slow"},
        {"completed_at": dt.datetime(2026, 1, 1, tzinfo=dt.UTC)},
        {"deleted_at": dt.datetime(2026, 1, 1, tzinfo=dt.UTC)},
    ],
)
def test_a_visible_change_through_update_moves_the_version_by_one(running, change):
    Generation.objects.filter(pk=running.pk).update(**change)
    assert version_of(running) == 2


def test_appending_a_log_line_moves_the_version(running):
    line = {"message": "Painting", "level": "info", "timestamp": "2026-01-01T00:00:00Z"}
    Generation.objects.filter(pk=running.pk).update(logs=AppendLogLines("logs", [line], keep=50))
    assert version_of(running) == 2


def test_lease_and_next_check_updates_leave_the_version_alone(running):
    # What the poller writes every round, many times per job: no watcher is woken for it.
    for _ in range(3):
        Generation.objects.filter(pk=running.pk).update(next_check_at=timezone.now(), notified_at=timezone.now())
    running.refresh_from_db()
    running.save()  # every column written, none changed
    assert version_of(running) == 1


def test_a_stale_save_never_moves_the_version_back(running):
    stale = Generation.objects.get(pk=running.pk)
    Generation.objects.filter(pk=running.pk).update(queue_position=1)
    Generation.objects.filter(pk=running.pk).update(queue_position=0)
    assert version_of(running) == 3
    stale.next_check_at = timezone.now()
    stale.save()  # writes version=1 and queue_position=None back
    # queue_position changed (None again), so it moved on; never back to 1.
    assert version_of(running) == 4
    fresh = Generation.objects.get(pk=running.pk)
    fresh.version = 1
    fresh.save()  # only the stale version differs
    assert version_of(running) == 4


def test_an_explicit_increment_is_one_bump(running):
    Generation.objects.filter(pk=running.pk).update(version=F("version") + 1)
    assert version_of(running) == 2


def test_attempts_move_their_generation(running):
    attempt = AttemptFactory(generation=running, status="submitting", fal_job_id="")
    assert version_of(running) == 2
    type(attempt).objects.filter(pk=attempt.pk).update(fal_job_id="req-1")
    assert version_of(running) == 3
    type(attempt).objects.filter(pk=attempt.pk).update(payload={"prompt": "x"})  # not shown
    assert version_of(running) == 3
    attempt.delete()
    assert version_of(running) == 4


def test_images_move_their_generation(running):
    media = MediaFactory(generation=running, persisted=False)
    assert version_of(running) == 2
    Media.objects.filter(pk=media.pk).update(persisted=True, url="https://res.cloudinary.com/x.jpg")
    assert version_of(running) == 3
    Media.objects.filter(pk=media.pk).update(is_public=True)
    assert version_of(running) == 4
    Media.objects.filter(pk=media.pk).update(hidden=True)
    assert version_of(running) == 5
    # Retry bookkeeping is internal.
    Media.objects.filter(pk=media.pk).update(persist_attempts=2, persist_next_at=timezone.now(), persist_error="x")
    assert version_of(running) == 5
    media.delete()
    assert version_of(running) == 6


def test_other_generations_are_untouched(running):
    other = GenerationFactory(status=Generation.Status.RUNNING, completed_at=None)
    Generation.objects.filter(pk=running.pk).update(queue_position=5)
    MediaFactory(generation=running)
    assert version_of(other) == 1
