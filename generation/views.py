"""HTML views for the studio, the live status card, history, feed and share pages.

Each view parses input, calls one service or selector and renders. Writes go through
`generation.services`; domain errors become inline form errors or messages. htmx
requests (header `HX-Request`) get fragments; everything also works without JS,
through plain form posts and redirects.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from functools import wraps
from typing import Any
from urllib.parse import urlencode

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.handlers.asgi import ASGIRequest
from django.http import Http404, HttpRequest, HttpResponse
from django.http.response import HttpResponseBase
from django.shortcuts import redirect, render
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone, translation
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.safestring import mark_safe
from django.utils.translation import get_language
from django.utils.translation import gettext_lazy as _
from django.views.decorators.http import require_GET, require_POST, require_safe

from credits.selectors import header_quota_from_wallet, quota_for
from presets.models import Preset
from presets.selectors import active_presets
from stefna.errors import DomainError, NotFound, RateLimited
from stefna.pagination import Page
from stefna.requests import AuthenticatedRequest, request_id_of, signed_in_user
from stefna.social_meta import social_meta

from . import etags, event_stream, first_page, photos, selectors, services, status_reads
from .forms import HistoryFilterForm, StudioForm, kept_image_value
from .labels import model_label
from .models import Generation, Media
from .registry import chain_needs_image

FEED_PAGE_SIZE = 24
HISTORY_PAGE_SIZE = 12
# What a failure means, for people. Anything else gets the default.
DEFAULT_FAILURE_MESSAGE = _(
    "Every model we tried failed or took too long. That is usually temporary: please try again in a minute."
)
FAILURE_MESSAGES = {
    "all_models_failed": _(
        "None of the image models could finish this one. That is usually temporary: please try again in a minute."
    ),
    "refunded_by_staff": _("Our team stopped this generation and gave your credits back."),
    "timeout": _("The image models took too long to answer. Please try again in a minute."),
    "invalid_input": _("The model could not use this photo. A clear, well-lit photo of a face works best."),
    "unsupported_image": _("The model could not read this photo. Try a JPEG or PNG taken with a camera or phone."),
    # Not "every model failed": the images were made, and then withheld or lost.
    "content_blocked": _(
        "The safety filter held back every image made for this request, so there is nothing to show. "
        "Try another photo, or describe what you want differently."
    ),
    "result_lost": _("The images were made, but were deleted before we could keep a copy. Please try again."),
}


def is_htmx(request: HttpRequest) -> bool:
    return request.headers.get("HX-Request") == "true"


def not_found_as_404(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """Someone else's (or a missing) generation or image is a plain 404 page."""

    @wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        try:
            return view(request, *args, **kwargs)
        except NotFound as exc:
            raise Http404(exc.message) from exc

    return wrapper


def _next_url(request: HttpRequest, fallback: str) -> str:
    candidate = request.POST.get("next") or ""
    if url_has_allowed_host_and_scheme(candidate, allowed_hosts={request.get_host()}):
        return candidate
    return fallback


# --- Studio -------------------------------------------------------------------------------


def preset_groups() -> list[tuple[str, list[Preset]]]:
    """Active presets grouped by kind, groups in the order their first preset sorts."""
    groups: dict[str, list[Preset]] = {}
    for preset in active_presets():
        groups.setdefault(preset.get_kind_display(), []).append(preset)
    return list(groups.items())


def _studio_page(
    request: HttpRequest, form: StudioForm, *, kept_image: str = "", status: int = 200, source: object = None
) -> HttpResponse:
    groups = preset_groups()
    chosen_slug = form["preset"].value() or ""
    chosen_preset = next(
        (preset for _kind, presets in groups for preset in presets if preset.slug == chosen_slug), None
    )
    context: dict[str, Any] = {
        "form": form,
        "groups": groups,
        "kept_image": kept_image,
        "chosen_preset": chosen_preset,
        # A link that arrives with a style chosen (a share page's "Make your own", "Same
        # style, new photo") says so at the top of the form: the chosen card can sit far
        # below the fold, or off to the side in a phone's row. Only for such a link, so the
        # page without one keeps its layout.
        "style_from_link": chosen_preset if not form.is_bound else None,
        # A shared link to the home page unfurls with the site's picture; `?preset=` and
        # the like are the same page to an unfurler.
        "social": social_meta(request, path=reverse("studio")),
    }
    user = signed_in_user(request)
    if user is not None:
        quota = quota_for(user=user)
        context["quota"] = quota
        context["can_afford"] = quota.current_balance >= settings.GENERATION_COST
        # A kept upload wins over a stored photo; otherwise the chosen one stays chosen.
        chosen = "" if kept_image else str(source or "")
        context["photos"] = photos.photo_choices(user=user, chosen=chosen or None)
        picked = [photo for photo in context["photos"] if str(photo.generation_id) == chosen]
        context["chosen_source"] = chosen if picked else ""
        context["chosen_photo"] = picked[0] if picked else None
        context["max_upload_bytes"] = settings.MAX_UPLOAD_BYTES
        context["max_image_pixels"] = settings.MAX_IMAGE_PIXELS
        # The server's own message says megapixels (generation/images.py): the page says the same.
        context["max_megapixels"] = settings.MAX_IMAGE_PIXELS // 1_000_000
        context["error_fields"] = [name for name in ("image", "preset", "prompt") if form.errors.get(name)]
    return render(request, "generation/studio.html", context, status=status)


def studio(request: HttpRequest) -> HttpResponse:
    if request.method != "POST":
        initial = {"preset": request.GET.get("preset", "")}
        return _studio_page(request, StudioForm(initial=initial), source=request.GET.get("source"))
    user = signed_in_user(request)
    if user is None:
        return redirect(f"/accounts/sign-in/?next={request.path}")
    form = StudioForm(request.POST, request.FILES, user=user)
    source = request.POST.get("source_generation") or None
    if not form.is_valid():
        return _studio_page(request, form, kept_image=form.revalidated_kept_image(), status=422, source=source)
    kept = ""
    try:
        image = form.validated_image()
        if image is not None and (form.cleaned_data.get("image") or form.cleaned_data.get("kept_image")):
            kept = kept_image_value(image)
        generation, _created = services.generation_request(
            user=user,
            preset_slug=form.cleaned_data["preset"],
            image=image,
            prompt=form.cleaned_data["prompt"],
            is_public=form.cleaned_data["is_public"],
            notify=form.cleaned_data["notify"],
            request_id=request_id_of(request),
        )
    except DomainError as exc:
        field = (exc.detail or {}).get("field") if isinstance(exc.detail, dict) else None
        form.add_error(field if field in form.fields else None, exc.message)
        response = _studio_page(request, form, kept_image=kept, status=exc.status, source=source)
        if isinstance(exc, RateLimited):
            response["Retry-After"] = str(exc.retry_after)
        return response
    return redirect("generation_detail", generation_id=generation.pk)


# --- The live status card ---------------------------------------------------------------


def elapsed_display(seconds: int) -> str:
    minutes, seconds = divmod(seconds, 60)
    if minutes:
        return _("%(minutes)d min %(seconds)d s") % {"minutes": minutes, "seconds": seconds}
    return _("%(seconds)d s") % {"seconds": seconds}


def card_context(generation: Generation) -> dict[str, Any]:
    end = generation.completed_at or timezone.now()
    elapsed = max(0, int((end - generation.created_at).total_seconds()))
    refund = None
    attempts: list[Any] = []
    if generation.status in (Generation.Status.FAILED, Generation.Status.CANCELED):
        refund = selectors.generation_refund_entry(generation=generation)
    if generation.is_final:
        # Shown in the folded "Details"; read only once the job is over, not on every poll.
        attempts = selectors.generation_attempts(generation=generation)
        for attempt in attempts:
            attempt.label = model_label(attempt.model)  # type: ignore[attr-defined]
    return {
        "generation": generation,
        "elapsed_display": elapsed_display(elapsed),
        "failure_message": FAILURE_MESSAGES.get(generation.error_code, DEFAULT_FAILURE_MESSAGE),
        "model_label": model_label(generation.current_model) if generation.current_model else "",
        "refund": refund,
        "attempts": attempts,
        "media": _card_media(generation),
        # A text-to-image style ("Realistic") is offered again without "new photo": it takes none.
        "style_needs_photo": chain_needs_image(list(generation.model_chain or [])),
    }


def _card_media(generation: Generation) -> list[Media]:
    """The images the card shows. Only a succeeded card shows any, so the card htmx polls
    every second while a job runs reads none: one query fewer on the hottest HTML route."""
    if generation.status != Generation.Status.SUCCEEDED:
        return []
    return selectors.generation_card_media(generation=generation)


@login_required
@not_found_as_404
def generation_detail(request: AuthenticatedRequest, generation_id: str) -> HttpResponse:
    generation = selectors.generation_for_card(user=request.user, generation_id=generation_id)
    return render(request, "generation/detail.html", card_context(generation))


@login_required
@not_found_as_404
@require_GET
def generation_card(request: AuthenticatedRequest, generation_id: str) -> HttpResponse:
    """The card alone, polled by htmx while the job is active. Once final it carries no
    polling trigger (so polling stops) and swaps the header balance out of band, because
    a refund changed it."""
    # A poll that sends the ETag of the current state is answered 304 from one small
    # query (generation/etags.py); the live status stream makes the page fetch the card
    # only after a change, and the browser's fallback polling costs next to nothing.
    language, htmx = get_language(), is_htmx(request)
    unchanged = etags.not_modified_since(
        request,
        user_id=request.user.pk,
        generation_id=generation_id,
        etag_of=lambda state: etags.card_etag(state, language=language, htmx=htmx, csrf=etags.csrf_digest(request)),
    )
    if unchanged is not None:
        return unchanged
    return _card_response(request, generation_id, etag_for=(language, htmx))


def card_html(request: AuthenticatedRequest, generation: Generation, *, htmx: bool) -> str:
    """The status card of `generation` (read by `selectors.generation_for_card`)."""
    # Once final, the card also swaps the header balance (a refund changed it); only htmx
    # applies out-of-band swaps, so only htmx gets it.
    context = card_context(generation) | {"update_balance": generation.is_final and htmx}
    if context["update_balance"]:
        # The wallet came with the generation: the balance shown is the one the ETag
        # names, and the header needs no read of its own.
        known = header_quota_from_wallet(
            generation.owner_balance,  # type: ignore[attr-defined]
            generation.owner_allowance_day,  # type: ignore[attr-defined]
            generation.owner_purchased_balance,  # type: ignore[attr-defined]
        )
        if known is not None:
            context["header_quota"] = known
    return render_to_string("generation/_card.html", context, request=request)


def _card_response(
    request: AuthenticatedRequest, generation_id: str, *, etag_for: tuple[str, bool] | None = None
) -> HttpResponse:
    generation = selectors.generation_for_card(user=request.user, generation_id=generation_id)
    response = HttpResponse(card_html(request, generation, htmx=is_htmx(request)))
    if etag_for is not None:
        state = status_reads.WatchState(
            generation.version,
            generation.owner_balance,  # type: ignore[attr-defined]
            generation.owner_purchased_balance,  # type: ignore[attr-defined]
            generation.owner_allowance_day,  # type: ignore[attr-defined]
            generation.status,
        )
        language, htmx = etag_for
        csrf = etags.csrf_digest(request)  # after the render, which may have made the secret
        etags.with_etag(response, etags.card_etag(state, language=language, htmx=htmx, csrf=csrf))
    return response


@login_required
@require_GET
def generation_events(request: AuthenticatedRequest, generation_id: uuid.UUID) -> HttpResponseBase:
    """The status page's live card: Server-Sent Events whose data is the card itself, so
    a change reaches the page in the event, with no fetch after it.

    The same stream as `GET /api/generations/{id}/events` (generation/event_stream.py),
    each event's `id` the generation's version, but its `data` the card's HTML in the
    viewer's language. `?v=` names the version the page was rendered with (a browser's
    first connection cannot send `Last-Event-ID`): nothing is sent until it moves. Under
    WSGI, and once a final state was delivered, the answer is 204 and the card polls."""
    try:
        resume = event_stream.last_event_id(request.headers.get("Last-Event-ID") or request.GET.get("v"))
    except ValueError:
        resume = None  # a hand-edited address: send the state as it is
    state = status_reads.generation_watch_state(user_id=request.user.pk, generation_id=generation_id)
    if state is None:
        raise Http404(_("Generation not found."))
    if (resume == state.version and state.status in Generation.FINAL_STATUSES) or not isinstance(request, ASGIRequest):
        return event_stream.event_response(HttpResponse(status=204))
    return event_stream.stream_response(
        request,
        generation_id=generation_id,
        version=state.version,
        last_event_id=resume,
        snapshot=_card_snapshot(request, generation_id, language=get_language()),
    )


def _card_snapshot(
    request: AuthenticatedRequest, generation_id: uuid.UUID, *, language: str
) -> event_stream.SnapshotRead:
    def read(sent: int | None) -> event_stream.Snapshot | None:
        try:
            generation = selectors.generation_for_card(user=request.user, generation_id=generation_id)
        except NotFound:
            return None
        if generation.version == sent:
            return event_stream.Snapshot(generation.version, generation.status, None)
        # The status thread has no language of its own: the request's, as the page's.
        with translation.override(language):
            html = card_html(request, generation, htmx=True).strip()
        return event_stream.Snapshot(
            generation.version, generation.status, event_stream.sse_event(generation.version, html)
        )

    return read


@login_required
@not_found_as_404
@require_POST
def generation_cancel(request: AuthenticatedRequest, generation_id: str) -> HttpResponse:
    try:
        services.generation_cancel(generation_id=generation_id, user=request.user)
    except NotFound:
        raise
    except DomainError as exc:
        # Usually "already finished": the card re-rendered below shows how it ended.
        if not is_htmx(request):
            messages.info(request, exc.message)
    if is_htmx(request):
        return _card_response(request, generation_id)
    return redirect("generation_detail", generation_id=generation_id)


@login_required
@not_found_as_404
@require_POST
def generation_delete(request: AuthenticatedRequest, generation_id: str) -> HttpResponse:
    services.generation_hide(user=request.user, generation_id=generation_id)
    if is_htmx(request):
        return HttpResponse("")
    messages.success(request, _("Removed from your history."))
    return redirect(_next_url(request, "/history/"))


# --- Images -----------------------------------------------------------------------------


@login_required
@not_found_as_404
@require_POST
def media_visibility(request: AuthenticatedRequest, media_id: str) -> HttpResponse:
    try:
        media = services.media_set_public(
            user=request.user,
            media_id=media_id,
            is_public=request.POST.get("is_public") == "1",
        )
    except RateLimited as exc:
        messages.error(request, exc.message)
        if is_htmx(request):
            # htmx swaps only a 2xx into the page: reload it instead, so the message shows.
            response = HttpResponse(status=204)
            response["HX-Refresh"] = "true"
        else:
            response = redirect(_next_url(request, reverse("history")))
        response["Retry-After"] = str(exc.retry_after)
        return response
    if is_htmx(request):
        # The result page and history show an image differently; answer in the asker's layout.
        template = (
            "generation/_result_media.html" if request.POST.get("layout") == "result" else "generation/_media_tile.html"
        )
        return render(request, template, {"media": media, "owner_controls": True})
    if media.is_public:
        message = _("Your image is public now.")
    elif media.move_owed:  # storage refused to move its file for now; the worker retries
        message = _("Your image is private on Stefna now. Its old public link will stop working shortly.")
    else:
        message = _("Your image is private now.")
    messages.success(request, message)
    return redirect(_next_url(request, reverse("share_page", args=[media.share_id])))


@login_required
@not_found_as_404
@require_POST
def media_delete(request: AuthenticatedRequest, media_id: str) -> HttpResponse:
    generation_id = services.media_delete(user=request.user, media_id=media_id)
    if is_htmx(request):
        if selectors.generation_has_images(generation_id=generation_id):
            return HttpResponse("")  # the tile goes; its siblings stay
        # The last one: the tile becomes what a reload shows, not an empty card. Only a
        # succeeded generation has images.
        context = {"generation_id": generation_id, "status": Generation.Status.SUCCEEDED}
        context["layout"] = "result" if request.POST.get("layout") == "result" else "history"
        return render(request, "generation/_media_placeholder.html", context)
    messages.success(request, _("Image deleted."))
    return redirect(_next_url(request, "/history/"))


# --- Feed and history -------------------------------------------------------------------


@require_safe  # HEAD too: the feed is a public page that link checkers probe
def feed(request: HttpRequest) -> HttpResponse:
    cursor = request.GET.get("cursor") or None
    try:
        items, any_items = _feed_items(cursor)
    except DomainError:
        # A broken cursor (hand-edited URL) starts again at the top.
        items, any_items = _feed_items(None)
    if is_htmx(request):
        return HttpResponse(items)
    # A later page (the no-JavaScript "More images" link) is the feed at one moment: search
    # engines follow its links to the images' share pages but list only the first page.
    context = {
        "items": items,
        "any_items": any_items,
        "later_page": cursor is not None,
        "social": social_meta(request, path=reverse("feed"), robots="noindex, follow" if cursor else ""),
    }
    return render(request, "generation/feed.html", context)


def _feed_items(cursor: str | None) -> tuple[str, bool]:
    """One page of the feed's images as HTML in the active language, and whether it has
    any. The first page is the same for every visitor: each process keeps it for a moment
    (generation/first_page.py)."""

    def make() -> tuple[str, bool]:
        page = selectors.generation_feed(cursor=cursor, limit=FEED_PAGE_SIZE)
        html = render_to_string("generation/_feed_page.html", {"page": page, "next_url": _page_url(page, {})})
        return mark_safe(html), bool(page.items)  # noqa: S308 - rendered by our own template

    return first_page.kept.page(("html", get_language()), cursor, make)


@login_required
@require_GET
def history(request: AuthenticatedRequest) -> HttpResponse:
    filters = HistoryFilterForm(request.GET)
    chosen = filters.cleaned_data if filters.is_valid() else {}
    try:
        page = selectors.generation_history_cards(
            user=request.user,
            cursor=request.GET.get("cursor") or None,
            limit=HISTORY_PAGE_SIZE,
            kind=chosen.get("kind") or None,
            status=chosen.get("status") or None,
        )
    except DomainError:
        raise Http404(_("That page of your history does not exist.")) from None
    query = {key: value for key, value in chosen.items() if value}
    template = "generation/_history_page.html" if is_htmx(request) else "generation/history.html"
    # The empty state names the filters, so "nothing here" never reads as "nothing at all".
    labels = {
        key: str(dict(getattr(filters.fields[key], "choices", [])).get(value, value)) for key, value in query.items()
    }
    context = {
        "page": page,
        "filters": filters,
        "query": query,
        "filter_kind": labels.get("kind", ""),
        "filter_status": labels.get("status", ""),
        "next_url": _page_url(page, query),
    }
    return render(request, template, context)


@login_required
@not_found_as_404
@require_GET
def history_item(request: AuthenticatedRequest, generation_id: str) -> HttpResponse:
    """One history card, fetched again by itself while its generation runs, so the page
    shows the result when it is ready instead of "In progress…" until a reload.

    Polling, like the status card's fallback, costs next to nothing while nothing changed:
    the browser sends back the ETag (the generation's version) and gets a 304 from one
    small query, without the card's generation and images being loaded."""
    language = get_language()
    unchanged = etags.not_modified_since(
        request,
        user_id=request.user.pk,
        generation_id=generation_id,
        etag_of=lambda state: etags.history_item_etag(
            version=state.version, language=language, csrf=etags.csrf_digest(request)
        ),
    )
    if unchanged is not None:
        return unchanged
    generation = selectors.generation_history_card(user=request.user, generation_id=generation_id)
    response = render(request, "generation/_history_item.html", {"g": generation})
    etag = etags.history_item_etag(version=generation.version, language=language, csrf=etags.csrf_digest(request))
    return etags.with_etag(response, etag)


def _page_url(page: Page, query: dict[str, str]) -> str | None:  # type: ignore[type-arg]
    """The address of the next page (same filters), or None on the last page."""
    return f"?{urlencode({**query, 'cursor': page.next_cursor})}" if page.next_cursor else None
