"""Fixtures for the security tests: a funded user, a style, and a snapshot of everything a
refused request must leave untouched."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
from django.conf import settings
from django.test import Client

from credits import ledger
from credits.models import CreditEntry
from credits.selectors import balance_of
from generation.models import Generation, Media
from presets.tests.factories import PresetFactory

STYLE_SLUG = "hostile-style"


@pytest.fixture
def style(db):
    return PresetFactory(
        slug=STYLE_SLUG, name="Hostile style", prompt="an oil painting, {prompt}", requires_prompt=False
    )


@pytest.fixture
def funded(user):
    """The user after today's allowance: refusals must leave this balance and these entries alone."""
    ledger.ensure_daily_allowance(user=user)
    return balance_of(user=user)


@pytest.fixture
def signed_in(user):
    client = Client()
    client.force_login(user)
    return client


def stored_files() -> list[Path]:
    root = Path(settings.MEDIA_ROOT)
    return sorted(path for path in root.rglob("*") if path.is_file()) if root.exists() else []


@dataclass(frozen=True)
class Snapshot:
    generations: int
    media: int
    entries: int
    tasks: int
    balance: int
    files: tuple[Path, ...]


def snapshot(user) -> Snapshot:
    from django_tasks_db.models import DBTaskResult

    return Snapshot(
        generations=Generation.objects.count(),
        media=Media.objects.count(),
        entries=CreditEntry.objects.filter(user=user).count(),
        tasks=DBTaskResult.objects.count(),
        balance=balance_of(user=user),
        files=tuple(stored_files()),
    )


@pytest.fixture
def untouched(user, funded):
    """Call the returned function after a refused request: nothing may have changed."""
    before = snapshot(user)

    def check() -> None:
        assert snapshot(user) == before

    return check


def assert_error(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.content[:500]
    assert response["Content-Type"].startswith("application/json"), response["Content-Type"]
    body = response.json()
    assert set(body) == {"code", "message", "detail"}, body
    assert body["code"] == code, body
    assert isinstance(body["message"], str) and body["message"].strip()
    return body
