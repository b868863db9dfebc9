"""ETags for what a generation's watchers poll (`GET /api/generations/{id}`, the status
card, a running history card).

A tag is built from the generation's version (moved by database triggers on every change
a viewer sees, migration 0007) and whatever else the answer depends on: the owner's
wallet (the API's `remaining_coins`, the card's header balance), the language, and for
the card whether htmx asked. Reading those is one small query, so a poll that changed
nothing is answered 304 without loading the generation, its attempts or its images.
Tags are weak: two renders of the same state may differ in bytes (the card's CSRF token).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable

from django.http import HttpRequest, HttpResponse, HttpResponseNotModified
from django.utils.http import parse_etags
from django.utils.translation import gettext as _

from stefna.errors import NotFound

from .status_reads import WatchState, generation_watch_state

# Browsers (and htmx through them) keep the answer but ask again every time, sending
# If-None-Match: a poll that changed nothing costs a 304.
CACHE_CONTROL = "private, no-cache"


def api_etag(*, version: int, balance: int | None, language: str) -> str:
    """`GET /api/generations/{id}`: the generation and `remaining_coins` (the balance)."""
    return _etag([version, balance or 0, language])


def card_etag(state: WatchState, *, language: str, htmx: bool) -> str:
    """The status card: the generation, and the header's balance and buckets (a finished
    card swaps them out of band for htmx), which follow the wallet and the day."""
    parts = [state.version, state.balance, state.purchased_balance, state.allowance_day, language, int(htmx)]
    return _etag(["c", *parts])


def history_item_etag(*, version: int, language: str) -> str:
    """A history card: the generation alone (it shows no balance)."""
    return _etag(["h", version, language])


def _etag(parts: Iterable[object]) -> str:
    return 'W/"' + ".".join("-" if part is None else str(part) for part in parts) + '"'


def not_modified_since(
    request: HttpRequest, *, user_id: uuid.UUID, generation_id: uuid.UUID | str, etag_of: Callable[[WatchState], str]
) -> HttpResponseNotModified | None:
    """The 304 for a poll whose If-None-Match names the generation's current state, read
    in one small query without loading the generation (`generation_watch_state`); None
    when no tag was sent or the state moved on. NotFound when it is not the user's."""
    if not request.headers.get("If-None-Match"):
        return None
    state = generation_watch_state(user_id=user_id, generation_id=generation_id)
    if state is None:
        raise NotFound(_("Generation not found."))
    etag = etag_of(state)
    return not_modified(etag) if etag_matches(request, etag) else None


def etag_matches(request: HttpRequest, etag: str) -> bool:
    header = request.headers.get("If-None-Match", "")
    if not header:
        return False
    if header.strip() == "*":
        return True
    # Weak comparison (RFC 9110 13.1.2): W/ prefixes do not matter for If-None-Match.
    wanted = etag.removeprefix("W/")
    return any(tag.removeprefix("W/") == wanted for tag in parse_etags(header))


def not_modified(etag: str) -> HttpResponseNotModified:
    response = HttpResponseNotModified()
    return with_etag(response, etag)


def with_etag[ResponseT: HttpResponse](response: ResponseT, etag: str) -> ResponseT:
    response.headers["ETag"] = etag
    response.headers["Cache-Control"] = CACHE_CONTROL
    return response
