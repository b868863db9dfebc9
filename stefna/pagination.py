"""Keyset pages for every list the site shows newest first (generations, images,
purchases): a page costs the same whatever its depth, and inserts never shift one.

A cursor is the (created_at, id) of the last row shown, base64 in the URL. Here, not in
an app, because generation and credits both page this way and credits sits below
generation.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import uuid
from dataclasses import dataclass
from typing import TypeVar

from django.db.models import Q, QuerySet
from django.utils.translation import gettext_lazy as _

from stefna.errors import InvalidInput

T = TypeVar("T")
MAX_PAGE_SIZE = 100
DEFAULT_PAGE_SIZE = 20


@dataclass(frozen=True)
class Page[T]:
    items: list[T]
    next_cursor: str | None


def encode_cursor(created_at: dt.datetime, pk: uuid.UUID) -> str:
    raw = f"{created_at.isoformat()}|{pk}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[dt.datetime, uuid.UUID]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        created, pk = base64.urlsafe_b64decode(padded.encode()).decode().split("|", 1)
        moment = dt.datetime.fromisoformat(created)
        if moment.tzinfo is None:
            raise ValueError("a cursor's time carries its offset")
        # In UTC now, as the database compares it: a forged time at the edge of the calendar
        # with an offset (year 1 at +01:00) cannot be, and was a 500 in the query.
        return moment.astimezone(dt.UTC), uuid.UUID(pk)
    except (ValueError, OverflowError, binascii.Error, UnicodeDecodeError) as exc:
        raise InvalidInput(
            _("The cursor is not valid. Use the next_cursor of a previous page."), detail={"field": "cursor"}
        ) from exc


def keyset_page(queryset: QuerySet, *, cursor: str | None, limit: int | None) -> Page:  # type: ignore[type-arg]
    """One page of `queryset`, newest first, from a keyset cursor (generations, images, purchases)."""
    limit = max(1, min(limit or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE))
    if cursor:
        created_at, pk = decode_cursor(cursor)
        # The redundant `created_at <= c` gives the database an index range to seek to;
        # the OR alone makes PostgreSQL walk the index from the top (60k rows deep in the bench).
        queryset = queryset.filter(created_at__lte=created_at).filter(
            Q(created_at__lt=created_at) | Q(created_at=created_at, id__lt=pk)
        )
    rows = list(queryset.order_by("-created_at", "-id")[: limit + 1])
    items, more = rows[:limit], len(rows) > limit
    return Page(items=items, next_cursor=encode_cursor(items[-1].created_at, items[-1].pk) if more else None)
