"""The fal key and the Cloudinary secret never appear in logs, pages, API answers or the rows
staff can read, through a whole generation (and a failing one), with every logger at DEBUG."""

from __future__ import annotations

import json
import logging
import os

import pytest
from django.core import serializers
from django.test import Client
from django_tasks_db.models import DBTaskResult

from credits.models import CreditEntry
from generation.models import Attempt, Generation, Media
from generation.registry import FAST_SDXL_I2I
from stefna.accounts.services import api_token_create
from tests.fakes.cloudinary import FakeCloudinary
from tests.images import make_jpeg

from .conftest import run_worker

pytestmark = pytest.mark.django_db

FAL_KEY_ID = "falkeyid-7d41"
FAL_SECRET = "FALSECRET-4c1d-e8a2-never-print-me"  # noqa: S105 - a recognisable test value
CLOUDINARY_KEY = "cloudkey-5531"
CLOUDINARY_SECRET = "CLOUDSECRET-9f2e-b07c-never-print-me"  # noqa: S105
SECRETS = [FAL_SECRET, CLOUDINARY_SECRET, f"{FAL_KEY_ID}:{FAL_SECRET}"]


@pytest.fixture(scope="module")
def secret_cloudinary():
    server = FakeCloudinary(api_key=CLOUDINARY_KEY, api_secret=CLOUDINARY_SECRET, ca_path=os.environ["SSL_CERT_FILE"])
    server.start()
    yield server
    server.stop()


@pytest.fixture
def configured(settings, fake_fal, secret_cloudinary):
    secret_cloudinary.reset()
    settings.FAL_KEY = f"{FAL_KEY_ID}:{FAL_SECRET}"
    settings.CLOUDINARY_URL = (
        f"cloudinary://{CLOUDINARY_KEY}:{CLOUDINARY_SECRET}@{secret_cloudinary.cloud_name}"
        f"?upload_prefix={secret_cloudinary.url}"
    )
    settings.CLOUDINARY_CLOUD_NAME = secret_cloudinary.cloud_name
    settings.CLOUDINARY_API_KEY = CLOUDINARY_KEY
    settings.CLOUDINARY_API_SECRET = CLOUDINARY_SECRET
    settings.CLOUDINARY_UPLOAD_PREFIX = secret_cloudinary.url
    settings.CLOUDINARY_ENABLED = True
    settings.CLOUDINARY_TIMEOUT_SECONDS = 2
    return fake_fal, secret_cloudinary


@pytest.fixture
def every_log_at_debug(caplog):
    """caplog sees every record of every logger, DEBUG and up, propagating or not."""
    changed = []
    for logger in [logging.getLogger(), *map(logging.getLogger, list(logging.root.manager.loggerDict))]:
        changed.append((logger, logger.level, logger.propagate))
        logger.setLevel(logging.DEBUG)
        if not logger.propagate:
            logger.addHandler(caplog.handler)
    caplog.handler.setLevel(logging.DEBUG)
    yield caplog
    for logger, level, _ in changed:
        logger.setLevel(level)
        if caplog.handler in logger.handlers and logger is not logging.getLogger():
            logger.removeHandler(caplog.handler)


def _render_records(caplog) -> str:
    lines = []
    for record in caplog.records:
        lines.append(record.getMessage())
        lines.append(repr(record.args))
        if record.exc_info:
            lines.append(logging.Formatter().formatException(record.exc_info))
        lines.extend(repr(value) for key, value in vars(record).items() if key not in ("msg", "args", "exc_info"))
    return "\n".join(lines)


def test_no_secret_reaches_logs_pages_answers_or_readable_rows(
    user, django_user_model, configured, every_log_at_debug, capfd, django_capture_on_commit_callbacks
):
    fake_fal, cloudinary = configured
    from credits import ledger

    ledger.ensure_daily_allowance(user=user)
    _, token = api_token_create(user=user, name="leak test")
    api = Client(HTTP_AUTHORIZATION=f"Bearer {token}")
    seen: list[str] = []

    def keep(response) -> None:
        # /healthz answers 503 here: no worker heartbeat in this test.
        assert response.status_code < 500 or response.status_code == 503, (response.status_code, response.content[:300])
        content = b"".join(response.streaming_content) if response.streaming else response.content
        seen.append(content.decode(errors="replace"))
        seen.append(repr(sorted(response.items())))

    from presets.tests.factories import PresetFactory

    style = PresetFactory(slug="leak", prompt="{prompt}", model_chain=[FAST_SDXL_I2I])
    body = {"image_base64": "data:image/jpeg;base64," + __import__("base64").b64encode(make_jpeg(96, 64)).decode()}

    # 1. A generation that works end to end (fal → Cloudinary).
    with django_capture_on_commit_callbacks(execute=True):
        started = api.post(
            "/api/generations",
            data=json.dumps({**body, "preset": style.slug, "prompt": "harbour"}),
            content_type="application/json",
        )
    keep(started)
    good = Generation.objects.get(pk=started.json()["id"])
    with django_capture_on_commit_callbacks(execute=True):
        run_worker(good)
    good.refresh_from_db()
    assert good.status == "succeeded"
    assert Media.objects.get(generation=good).persisted

    # 2. One that fails at fal and one whose image Cloudinary refuses: error paths log more.
    fake_fal.fail_submit(FAST_SDXL_I2I, status=500)
    with django_capture_on_commit_callbacks(execute=True):
        failed_start = api.post(
            "/api/generations",
            data=json.dumps({**body, "preset": style.slug, "prompt": "storm"}),
            content_type="application/json",
        )
    keep(failed_start)
    failed = Generation.objects.get(pk=failed_start.json()["id"])
    with django_capture_on_commit_callbacks(execute=True):
        run_worker(failed)
    fake_fal.reset()
    cloudinary.reject_signatures = True
    with django_capture_on_commit_callbacks(execute=True):
        third_start = api.post(
            "/api/generations",
            data=json.dumps({**body, "preset": style.slug, "prompt": "fog"}),
            content_type="application/json",
        )
        keep(third_start)
        unsaved = Generation.objects.get(pk=third_start.json()["id"])
        run_worker(unsaved)
    assert Media.objects.get(generation=unsaved).persist_error

    # The key was really used, in the one place it belongs.
    authorizations = {r.headers.get("authorization") for r in fake_fal.requests if r.headers.get("authorization")}
    assert authorizations == {f"Key {FAL_KEY_ID}:{FAL_SECRET}"}

    # 3. Everything a user, a client or staff can read.
    for generation in (good, failed, unsaved):
        keep(api.get(f"/api/generations/{generation.pk}"))
    for url in ["/api/generations", "/api/quota", "/api/feed", "/api/me", "/api/presets"]:
        keep(api.get(url))
    browser = Client()
    browser.force_login(user)
    media = Media.objects.get(generation=good)
    for url in [
        "/",
        "/history/",
        f"/g/{good.pk}/",
        f"/g/{failed.pk}/",
        f"/g/{unsaved.pk}/",
        f"/i/{media.share_id}",
        "/accounts/",
        "/feed/",
    ]:
        keep(browser.get(url))
    staff = django_user_model.objects.create_user(email="ops@example.com", is_staff=True, is_superuser=True)
    admin = Client()
    admin.force_login(staff)
    for url in [
        "/admin/generation/generation/",
        f"/admin/generation/generation/{good.pk}/change/",
        f"/admin/generation/generation/{failed.pk}/change/",
        f"/admin/generation/generation/{unsaved.pk}/change/",
        "/admin/generation/media/",
        f"/admin/generation/media/{Media.objects.get(generation=unsaved).pk}/change/",
        "/admin/dashboard/",
        "/healthz",
    ]:
        response = admin.get(url)
        if response.status_code != 404:
            keep(response)
    # Rows staff read in the admin or a database console.
    seen.append(
        serializers.serialize(
            "json",
            [
                *Generation.objects.all(),
                *Attempt.objects.all(),
                *Media.objects.all(),
                *CreditEntry.objects.all(),
                *DBTaskResult.objects.all(),
            ],
        )
    )

    logs = _render_records(every_log_at_debug)
    printed = capfd.readouterr()
    assert len(every_log_at_debug.records) > 10, "the logs were captured"
    for secret in SECRETS:
        assert secret not in logs, f"a secret is in the logs: {secret[:12]}…"
        assert secret not in printed.out + printed.err, "a secret was printed"
        for text in seen:
            assert secret not in text, f"a secret is in a page, answer or row: {secret[:12]}…"
