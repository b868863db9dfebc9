"""Reads for generations and media. Each owns its joins, so a page costs a fixed
number of queries whatever its size, and pages by keyset (created_at, id) so page
1,000 costs what page 1 does and inserts never shift a page."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import TYPE_CHECKING

from django.db.models import F, OuterRef, Prefetch, QuerySet, Subquery
from django.utils.translation import gettext_lazy as _

from credits.models import CreditEntry, Wallet
from stefna.errors import NotFound
from stefna.pagination import Page, keyset_page

from . import status_thread
from .models import Attempt, Generation, Media

if TYPE_CHECKING:
    from stefna.accounts.models import User


def _with_details(queryset: QuerySet[Generation]) -> QuerySet[Generation]:
    return queryset.prefetch_related(
        Prefetch("media", queryset=Media.objects.order_by("index")),
        Prefetch("attempts", queryset=Attempt.objects.order_by("started_at")),
    )


def generation_history(
    *,
    user: User,
    cursor: str | None = None,
    limit: int | None = None,
    kind: str | None = None,
    status: str | None = None,
) -> Page[Generation]:
    """The user's own generations, newest first, with everything the API returns (3 queries a page)."""
    queryset = _history(user=user, kind=kind, status=status)
    return keyset_page(_with_details(queryset), cursor=cursor, limit=limit)


# What a history card shows. The page reads nothing else, and loading the rest (logs,
# payloads, prompts sent, the attempts) was a third of its CPU (bench/api.py).
# `version`: a running card fetches itself again with the ETag it names (views.history_item).
_CARD_FIELDS = (
    "id",
    "preset_slug",
    "preset_name",
    "kind",
    "prompt",
    "status",
    "created_at",
    "source_image",
    "version",
)
_TILE_FIELDS = ("id", "generation_id", "index", "url", "width", "height", "is_public", "share_id")


def generation_history_cards(
    *,
    user: User,
    cursor: str | None = None,
    limit: int | None = None,
    kind: str | None = None,
    status: str | None = None,
) -> Page[Generation]:
    """`generation_history` for the history page: only the fields its cards show, and
    their images (2 queries a page). Any other field is deferred: reading one costs a
    query per card."""
    return keyset_page(_history_cards(user=user, kind=kind, status=status), cursor=cursor, limit=limit)


def generation_history_card(*, user: User, generation_id: uuid.UUID | str) -> Generation:
    """One card of the history page, read as `generation_history_cards` reads a page's: a
    card still in progress fetches itself again until it ends. Someone else's, or one
    removed from the history, is NotFound."""
    generation = _history_cards(user=user, kind=None, status=None).filter(pk=generation_id).first()
    if generation is None:
        raise NotFound(_("Generation not found."))
    return generation


def _history_cards(*, user: User, kind: str | None, status: str | None) -> QuerySet[Generation]:
    images = Prefetch("media", queryset=Media.objects.order_by("index").only(*_TILE_FIELDS))
    return _history(user=user, kind=kind, status=status).only(*_CARD_FIELDS).prefetch_related(images)


def _history(*, user: User, kind: str | None, status: str | None) -> QuerySet[Generation]:
    queryset = Generation.objects.filter(user=user, deleted_at__isnull=True)
    if kind:
        queryset = queryset.filter(kind=kind)
    if status:
        queryset = queryset.filter(status=status)
    return queryset


def generation_get_with_balance(*, user: User, generation_id: uuid.UUID | str) -> tuple[Generation, int]:
    """One of the user's generations with its images and attempts, and the owner's credit
    balance read in the same query (a subquery), so a status answer costs 3 queries after
    authentication. Someone else's is NotFound, never Forbidden."""
    balance = Wallet.objects.filter(pk=OuterRef("user_id")).values("balance")[:1]
    queryset = _with_details(Generation.objects.filter(user=user)).annotate(owner_balance=Subquery(balance))
    try:
        generation = queryset.get(pk=generation_id)
    except (Generation.DoesNotExist, ValueError, TypeError) as exc:
        raise NotFound(_("Generation not found.")) from exc
    return generation, generation.owner_balance or 0  # type: ignore[attr-defined]


def generation_for_card(*, user: User, generation_id: uuid.UUID | str) -> Generation:
    """The owner's generation, and nothing the status card doesn't show.

    htmx polls this every second while a job runs, so it is the hottest HTML read: one
    query for the row (the card reads the images only once there are any to show),
    unlike generation_get_with_balance, which also loads images and attempts. The owner's wallet
    figures come along in the same query (`owner_balance`, `owner_purchased_balance`,
    `owner_allowance_day`): the card's ETag is built from them (generation/etags.py).
    """
    queryset = Generation.objects.annotate(
        owner_balance=F("user__wallet__balance"),
        owner_purchased_balance=F("user__wallet__purchased_balance"),
        owner_allowance_day=F("user__wallet__allowance_day"),
    )
    try:
        return queryset.get(user=user, pk=generation_id)
    except (Generation.DoesNotExist, ValueError, TypeError) as exc:  # a malformed id too
        raise NotFound(_("Generation not found.")) from exc


def generation_card_media(*, generation: Generation) -> list[Media]:
    """A finished generation's images in order, each pointing at `generation` (the tiles
    read its preset name and prompt: no query per tile)."""
    media = list(Media.objects.filter(generation=generation).order_by("index"))
    for item in media:
        item.generation = generation
    return media


def generation_has_images(*, generation_id: uuid.UUID) -> bool:
    """Whether any image of the generation is left (one indexed read)."""
    return Media.objects.filter(generation_id=generation_id).exists()


def generation_refund_entry(*, generation: Generation) -> CreditEntry | None:
    """The ledger's refund of a generation, if it was refunded."""
    return CreditEntry.objects.filter(generation=generation, reason=CreditEntry.Reason.REFUND).first()


def generation_attempts(*, generation: Generation) -> list[Attempt]:
    """A generation's attempts in the order they ran (the result page's "Details")."""
    return list(Attempt.objects.filter(generation=generation).order_by("started_at"))


async def generation_status_value(*, generation_id: uuid.UUID | str) -> str | None:
    """Just the status (one primary-key read), or None when the row does not exist.

    For clients waiting on a generation from async code (see generation/status_thread.py).
    """
    return await status_thread.run_on_status_connection(_status_value, generation_id=generation_id)


def _status_value(*, generation_id: uuid.UUID | str) -> str | None:
    return Generation.objects.filter(pk=generation_id).values_list("status", flat=True).first()


# What the feed (API and page) shows of each image: `feed_item_out` and `_feed_page.html`.
# A field read that is not here costs one query per item; the feed's query-budget tests
# catch that.
_FEED_FIELDS = (
    *("id", "url", "width", "height", "share_id", "created_at", "generation_id", "user_id"),
    *("generation__id", "generation__preset_slug", "generation__preset_name", "generation__kind"),
    *("user__id", "user__display_name"),
)


def feed_queryset() -> QuerySet[Media]:
    return (
        Media.objects.filter(
            is_public=True,
            hidden=False,
            generation__status=Generation.Status.SUCCEEDED,
            generation__deleted_at__isnull=True,
        )
        .select_related("generation", "user")
        # A feed item shows the image, its style and its author, and the query reads only
        # that. Decoding the generation's JSON columns for every row was most of a feed
        # request's CPU at the crowd bench's load; naming the dozen columns, not deferring
        # the heavy ones, took a third off what is left (bench/README.md). And a public
        # page never loads its authors' email addresses or password hashes.
        .only(*_FEED_FIELDS)
    )


def generation_feed(*, cursor: str | None = None, limit: int | None = None) -> Page[Media]:
    """Public images, newest first (1 query a page)."""
    return keyset_page(feed_queryset(), cursor=cursor, limit=limit)


def media_get_shared(*, media_id: uuid.UUID | str, viewer: User | None = None) -> Media:
    """An image for its share page: public ones for anyone, private ones for their owner."""
    # One rule for what is shown, as storage.media_is_public: not taken down, and its
    # generation not removed from history.
    queryset = Media.objects.select_related("generation", "user").filter(
        hidden=False, generation__deleted_at__isnull=True
    )
    try:
        media = queryset.get(pk=media_id)
    except (Media.DoesNotExist, ValueError, TypeError) as exc:
        raise NotFound(_("Image not found.")) from exc
    is_owner = viewer is not None and viewer.is_authenticated and media.user_id == viewer.pk
    if not (media.is_public or is_owner):
        raise NotFound(_("Image not found."))
    return media


def media_get_by_share_id(*, share_id: str, viewer: User | None = None) -> Media:
    """An image for its share page (/i/<share_id>): public ones for anyone, private ones
    for their owner only (a preview before they make it public); otherwise NotFound."""
    media = (
        Media.objects.select_related("generation", "user")
        .filter(share_id=share_id, hidden=False, generation__deleted_at__isnull=True)
        .first()
    )
    is_owner = media is not None and viewer is not None and viewer.is_authenticated and media.user_id == viewer.pk
    if media is None or not (media.is_public or is_owner):
        raise NotFound(_("Image not found."))
    return media


def media_unpersisted_count(*, media_ids: list[uuid.UUID]) -> int:
    """How many of these images are still not copied to durable storage."""
    return Media.objects.filter(pk__in=media_ids, persisted=False).count()


def generation_next_check_at() -> dt.datetime | None:
    """When the next running generation is due for a check (the worker's poller sleeps
    until then). Waiting ones are left out: they start when a slot frees, not on a clock."""
    return (
        Generation.objects.filter(status=Generation.Status.RUNNING, next_check_at__isnull=False)
        .order_by("next_check_at")
        .values_list("next_check_at", flat=True)
        .first()
    )
