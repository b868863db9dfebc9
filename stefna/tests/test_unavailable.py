"""The database unreachable (down, restarting, or every pooled connection busy) is a 503
with a stable code, not a 500: JSON under /api/, a page elsewhere."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from django.db import connection
from django.test import Client

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def database_down(tmp_path: Path) -> Iterator[None]:
    """Point the connection at a database that cannot be reached, then restore it."""
    saved = dict(connection.settings_dict)
    saved_options = dict(saved.get("OPTIONS") or {})
    connection.close()
    if connection.vendor == "postgresql":
        connection.close_pool()
        connection.settings_dict["PORT"] = "1"  # nothing listens there: connection refused
        if "pool" in saved_options:
            # A fresh pool for the unreachable address, which gives up fast.
            connection.settings_dict["OPTIONS"] = {**saved_options, "pool": {**saved_options["pool"], "timeout": 0.5}}
    else:
        connection.settings_dict["NAME"] = str(tmp_path / "missing" / "db.sqlite3")  # cannot be opened
    try:
        yield
    finally:
        connection.close()
        if connection.vendor == "postgresql":
            connection.close_pool()
        connection.settings_dict.clear()
        connection.settings_dict.update(saved)
        connection.settings_dict["OPTIONS"] = saved_options


def test_the_api_answers_503_service_unavailable(api_token, database_down):
    response = Client().get("/api/generations", headers={"Authorization": f"Bearer {api_token}"})

    assert response.status_code == 503
    body = response.json()
    assert body["code"] == "service_unavailable"
    assert body["message"] and body["detail"] is None
    assert response["Retry-After"] == "5"


def test_the_api_code_does_not_change_with_the_language(api_token, database_down):
    response = Client().get(
        "/api/generations", headers={"Authorization": f"Bearer {api_token}", "Accept-Language": "id"}
    )

    assert response.status_code == 503
    assert response.json()["code"] == "service_unavailable"


@pytest.fixture
def signed_in(user) -> Client:
    browser = Client(raise_request_exception=False)
    browser.force_login(user)
    return browser


def test_a_page_answers_the_503_page(signed_in, database_down):
    response = signed_in.get("/history/")

    assert response.status_code == 503
    assert b"503" in response.content
    assert response["Retry-After"] == "5"
