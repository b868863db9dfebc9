"""Housekeeping: what only grows is pruned, and the dashboard shows what was withheld and
how big the growing tables are."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone
from django_tasks_db.models import DBTaskResult

from generation import dashboard, services
from generation.models import WorkerHeartbeat
from generation.registry import FAST_SDXL_I2I
from generation.tasks import media_persist_task
from generation.tests.pipeline_helpers import run_worker, start_generation
from presets.tests.factories import PresetFactory

pytestmark = pytest.mark.django_db


def _task(status: str, *, finished_days_ago: float | None) -> DBTaskResult:
    result = media_persist_task.enqueue(media_id="00000000-0000-0000-0000-000000000000")
    finished = None if finished_days_ago is None else timezone.now() - dt.timedelta(days=finished_days_ago)
    DBTaskResult.objects.filter(pk=result.id).update(status=status, finished_at=finished)
    return DBTaskResult.objects.get(pk=result.id)


def _heartbeat(worker_id: str, *, hours_ago: float) -> None:
    seen = timezone.now() - dt.timedelta(hours=hours_ago)
    WorkerHeartbeat.objects.create(worker_id=worker_id, started_at=seen, last_seen_at=seen)


def test_upkeep_prunes_old_finished_task_results_and_keeps_the_rest(settings):
    settings.TASK_RESULT_RETENTION_DAYS = 7
    old_done = _task("SUCCESSFUL", finished_days_ago=8)
    old_failed = _task("FAILED", finished_days_ago=30)
    recent = _task("SUCCESSFUL", finished_days_ago=1)
    waiting = _task("READY", finished_days_ago=None)

    assert services.upkeep_prune()["task_results"] == 2

    left = set(DBTaskResult.objects.values_list("pk", flat=True))
    assert left == {recent.pk, waiting.pk}
    assert old_done.pk not in left and old_failed.pk not in left


def test_upkeep_prunes_heartbeats_of_workers_long_gone(settings):
    settings.WORKER_HEARTBEAT_RETENTION_HOURS = 24
    _heartbeat("alive", hours_ago=0)
    _heartbeat("gone-yesterday", hours_ago=25)
    _heartbeat("restarted-an-hour-ago", hours_ago=1)

    assert services.upkeep_prune()["heartbeats"] == 1

    assert set(WorkerHeartbeat.objects.values_list("worker_id", flat=True)) == {"alive", "restarted-an-hour-ago"}


def test_the_ages_come_from_settings(settings):
    settings.TASK_RESULT_RETENTION_DAYS = 1
    settings.WORKER_HEARTBEAT_RETENTION_HOURS = 1
    _task("SUCCESSFUL", finished_days_ago=2)
    _heartbeat("two-hours-silent", hours_ago=2)

    assert services.upkeep_prune() == {
        "task_results": 1,
        "heartbeats": 1,
        "sessions": 0,
        "login_codes": 0,
        "orphaned_photos": 0,
    }


def test_upkeep_prunes_expired_sessions_and_sign_in_codes_and_keeps_live_ones(client, user):
    from django.contrib.sessions.models import Session

    from stefna.accounts.models import LoginCode
    from stefna.accounts.services import CODE_RETENTION

    client.force_login(user)  # a live session
    live_session = client.session.session_key
    now = timezone.now()
    Session.objects.create(session_key="x" * 32, session_data="", expire_date=now - dt.timedelta(minutes=1))

    def code(expired_ago: dt.timedelta) -> LoginCode:
        return LoginCode.objects.create(email=user.email, code_hash="0" * 64, expires_at=now - expired_ago)

    live = code(-dt.timedelta(minutes=5))  # still usable
    recent = code(dt.timedelta(hours=1))  # kept a while for staff
    old = code(CODE_RETENTION + dt.timedelta(minutes=1))

    pruned = services.upkeep_prune()

    assert (pruned["sessions"], pruned["login_codes"]) == (1, 1)
    assert list(Session.objects.values_list("session_key", flat=True)) == [live_session]
    assert set(LoginCode.objects.values_list("pk", flat=True)) == {live.pk, recent.pk}
    assert not LoginCode.objects.filter(pk=old.pk).exists()
    assert client.get("/api/me").status_code == 200  # still signed in


def test_the_dashboard_counts_withheld_images_per_preset_and_model(user, fake_fal):
    partly = PresetFactory(slug="partly", kind="image_to_image", model_chain=[FAST_SDXL_I2I], num_images=2)
    wholly = PresetFactory(slug="wholly", kind="image_to_image", model_chain=[FAST_SDXL_I2I], num_images=2)
    fake_fal.flag_images(FAST_SDXL_I2I, [True, False])
    run_worker(start_generation(user, partly))
    fake_fal.flag_images(FAST_SDXL_I2I, [True, True])
    run_worker(start_generation(user, wholly))

    board = dashboard.dashboard()

    assert [(row.preset_slug, row.model, row.images, row.generations_blocked) for row in board.blocked] == [
        ("wholly", FAST_SDXL_I2I, 2, 1),
        ("partly", FAST_SDXL_I2I, 1, 0),
    ]


def test_the_dashboard_shows_the_growing_tables(staff_client, user, fake_fal):
    run_worker(start_generation(user, PresetFactory(model_chain=[FAST_SDXL_I2I])))

    tables = {table.table: table.rows for table in dashboard.table_sizes()}
    content = staff_client.get("/admin/dashboard/").content.decode()

    assert set(tables) >= {"generation_generation", "generation_media", "django_tasks_database_dbtaskresult"}
    assert 'id="tables"' in content and 'id="blocked"' in content
    assert "django_tasks_database_dbtaskresult" in content


def test_upkeep_removes_photos_no_generation_points_to_once_an_hour_old(user, fake_fal):
    """A request killed between storing its photo and committing its generation (or whose
    clean-up failed) leaves a photo nothing points to: removed within the hour after."""
    import os

    from django.core.files.base import ContentFile
    from django.core.files.storage import default_storage

    from generation import storage

    kept = start_generation(user, PresetFactory())  # a photo its generation points to
    kept_photo = kept.source_image.name
    left_behind = default_storage.save(storage.source_name(extension="jpg"), ContentFile(b"\xff\xd8\xffleft"))
    just_stored = default_storage.save(storage.source_name(extension="jpg"), ContentFile(b"\xff\xd8\xffnew"))
    two_hours_ago = (timezone.now() - dt.timedelta(hours=2)).timestamp()
    for name in (kept_photo, left_behind):
        os.utime(default_storage.path(name), (two_hours_ago, two_hours_ago))

    assert services.upkeep_prune()["orphaned_photos"] == 1

    assert not default_storage.exists(left_behind)
    assert default_storage.exists(kept_photo)
    assert default_storage.exists(just_stored)  # its generation may still be committing
    assert services.upkeep_prune()["orphaned_photos"] == 0
