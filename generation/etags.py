"""ETags for what a generation's watchers poll (`GET /api/generations/{id}`, the status
card, a running history card).

A tag is built from the generation's version (moved by database triggers on every change
a viewer sees, migration 0007) and whatever else the answer depends on: the owner's
wallet (the API's `remaining_coins`, the card's header balance), the language, and for
the card whether htmx asked. Reading those is one small query, so a poll that changed
nothing is answered 304 without loading the generation, its attempts or its images.

The cards' forms (Cancel, Delete) carry a CSRF token, made from the browser's CSRF secret,
which signing in replaces: a card's tag names that secret too (a digest of it, read from
the request, no query), or a 304 after signing out and in again would keep a card whose
forms the new session refuses (403). Tags are weak: two renders with the same secret
differ in bytes (each token is masked afresh) but not in what they do.
"""

from __future__ import annotations

import hashlib
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


def card_etag(state: WatchState, *, language: str, htmx: bool, csrf: str) -> str:
    """The status card: the generation, and the header's balance and buckets (a finished
    card swaps them out of band for htmx), which follow the wallet and the day, and the
    CSRF secret its Cancel form's token is made from (`csrf_digest`)."""
    parts = [state.version, state.balance, state.purchased_balance, state.allowance_day, language, int(htmx), csrf]
    return _etag(["c", *parts])


def history_item_etag(*, version: int, language: str, csrf: str) -> str:
    """A history card: the generation (it shows no balance), and the CSRF secret of its
    Delete form's token."""
    return _etag(["h", version, language, csrf])


def csrf_digest(request: HttpRequest) -> str:
    """A digest of the CSRF secret the request's answer embeds tokens of: the one the
    browser sent, or the one a render made for it ("-" before either). Call it after
    rendering for a 200 (a render without a secret makes one); the tag then matches the
    browser's next request, which sends that secret back. Only a digest: an ETag may be
    logged where the secret must not be."""
    secret = request.META.get("CSRF_COOKIE")
    if not secret:
        return "-"
    return hashlib.blake2b(secret.encode(), digest_size=6).hexdigest()


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
