"""Fixtures shared by the project-level tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, cast

import pytest
from django.db import connection

if TYPE_CHECKING:
    from django.db.backends.postgresql.base import DatabaseWrapper as PostgresWrapper


@pytest.fixture
def database_down(tmp_path: Path) -> Iterator[None]:
    """Point the connection at a database that cannot be reached, then restore it."""
    saved = dict(connection.settings_dict)
    saved_options = dict(saved.get("OPTIONS") or {})
    connection.close()
    if connection.vendor == "postgresql":
        cast("PostgresWrapper", connection).close_pool()
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
            cast("PostgresWrapper", connection).close_pool()
        connection.settings_dict.clear()
        connection.settings_dict.update(saved)
        connection.settings_dict["OPTIONS"] = saved_options
