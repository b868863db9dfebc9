"""Fixtures shared by the generation tests."""

from __future__ import annotations

import pytest

from credits import ledger
from generation import status_thread
from generation.models import Generation
from generation.tests.factories import AttemptFactory, GenerationFactory


@pytest.fixture
def running(user) -> Generation:
    """One of `user`'s generations, at fal (an attempt running), with today's allowance applied."""
    ledger.ensure_daily_allowance(user=user)
    generation = GenerationFactory.create(user=user, status=Generation.Status.RUNNING, completed_at=None)
    AttemptFactory(generation=generation, status="running")
    return generation


@pytest.fixture
def fast_live(settings, monkeypatch):
    """Live status streams that notice a change, beat and end within a test's patience."""
    monkeypatch.delenv("DJANGO_ALLOW_ASYNC_UNSAFE", raising=False)
    settings.LIVE_POLL_SECONDS = 0.05
    settings.LIVE_HEARTBEAT_SECONDS = 0.3
    settings.LIVE_STREAM_SECONDS = 20
    yield
    # The status thread keeps its connection; PostgreSQL cannot drop the test database
    # while it is open.
    status_thread.generation_status_close_connection()
