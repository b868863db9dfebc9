"""Operator admin for generations and media, plus the staff dashboard view.

Built for "my image never came": find the job by the user's email, fal's request id
or the generation id; see every attempt, the exact payload fal got, the logs, the
images and the money; then retry, cancel, refund or re-persist it. Every row here is
a record, so pages are read-only and changes go through the pipeline's services as
actions; their refusals show as messages.

The changelist costs a fixed number of queries: the user comes in the same query
(select_related), attempts are counted there too (a subquery), and the filters' choices
are static (status and kind choices, the model registry), never a DISTINCT query.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.utils import flatten_fieldsets
from django.db.models import Count, DurationField, Exists, ExpressionWrapper, F, OuterRef, Q, QuerySet, Subquery
from django.db.models.functions import Coalesce
from django.http import HttpRequest
from django.template.response import TemplateResponse
from django.urls import NoReverseMatch, reverse
from django.utils import timezone
from django.utils.formats import number_format
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, ngettext

from credits.models import CreditEntry
from presets.models import Preset
from stefna.admin_actions import BOTH_LOCATIONS, ReadOnlyInline, action_with_form, apply_to_each, one_time_key_field
from stefna.errors import DomainError
from stefna.i18n_formats import grouped
from stefna.requests import request_id_of

from . import dashboard, moderation, selectors, services
from .models import Attempt, Generation, Media, StoredRemoval, WorkerHeartbeat
from .registry import MODELS

if TYPE_CHECKING:
    from stefna.accounts.models import User

EMPTY = "—"


def _format_duration(duration: dt.timedelta | None) -> str:
    if duration is None:
        return EMPTY
    seconds = duration.total_seconds()
    if seconds < 60:
        return _("%(seconds)s s") % {"seconds": number_format(seconds, decimal_pos=1, use_l10n=True)}
    minutes, seconds = divmod(int(seconds), 60)
    if minutes < 60:
        return _("%(minutes)s min %(seconds)s s") % {"minutes": minutes, "seconds": seconds}
    hours, minutes = divmod(minutes, 60)
    return _("%(hours)s h %(minutes)s min") % {"hours": grouped(hours), "minutes": minutes}


def _pretty_json(value: Any) -> SafeString | str:
    if value in (None, "", [], {}):
        return EMPTY
    return format_html(
        '<pre class="stefna-json">{}</pre>', json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False)
    )


def _thumbnail(url: str, *, width: int = 96) -> SafeString | str:
    if not url:
        return EMPTY
    # The image is the link's only content, so its alt text names the link.
    return format_html(
        '<a href="{0}"><img src="{0}" alt="{2}" width="{1}" loading="lazy"></a>', url, width, _("Open full size")
    )


def _short(pk: object) -> str:
    return str(pk)[:8]


def _cost(generation: Generation) -> str:
    """ "2 credits", as the cost column and the action confirmations write it."""
    return ngettext("%(count)s credit", "%(count)s credits", generation.cost) % {"count": grouped(generation.cost)}


UUID_IN_TEXT = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
SHARE_ID = re.compile(r"(?:^|/i/)([A-Za-z0-9_-]{22})(?:$|[/?#])")


def _ids_in(term: str) -> tuple[uuid.UUID | None, str | None]:
    """The id and the share id in what support pastes: a bare id, or the address a user
    sent (/g/<generation id>/, /i/<share id>, an admin link), not only the bare value."""
    found = UUID_IN_TEXT.search(term)
    share = SHARE_ID.search(term)
    return (uuid.UUID(found.group()) if found else None), (share.group(1) if share else None)


def _operator(request: HttpRequest) -> User:
    """The signed-in staff member: admin_view lets nobody else reach an admin page."""
    return cast("User", request.user)


# --- Filters --------------------------------------------------------------------------------


class KindFilter(admin.SimpleListFilter):
    title = gettext_lazy("kind")
    parameter_name = "kind"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, Any]]:
        return list(Preset.Kind.choices)

    def queryset(self, request: HttpRequest, queryset: QuerySet[Generation]) -> QuerySet[Generation]:
        return queryset.filter(kind=self.value()) if self.value() else queryset


class AttentionFilter(admin.SimpleListFilter):
    """The usual answers to "my image never came", one click each."""

    title = gettext_lazy("needs attention")
    parameter_name = "attention"
    STUCK_AFTER = dashboard.STUCK_AFTER  # the dashboard counts the same generations

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [
            ("stuck", _("Active for over 15 minutes")),
            ("unpersisted", _("Images not persisted")),
            ("unsettled", _("Finished, credits neither captured nor refunded")),
        ]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Generation]) -> QuerySet[Generation]:
        if self.value() == "stuck":
            return queryset.filter(
                status__in=Generation.ACTIVE_STATUSES, created_at__lt=timezone.now() - self.STUCK_AFTER
            )
        if self.value() == "unpersisted":
            return queryset.filter(Exists(Media.objects.filter(generation=OuterRef("pk"), persisted=False)))
        if self.value() == "unsettled":
            # A final generation whose latest reservation has no capture or refund: money
            # the ledger still holds for a job that is over.
            reserves = CreditEntry.objects.filter(generation=OuterRef("pk"), reason=CreditEntry.Reason.RESERVE)
            settled = CreditEntry.objects.filter(
                generation=OuterRef(OuterRef("pk")),
                charge_number=OuterRef("charge_number"),
                reason__in=CreditEntry.SETTLEMENT_REASONS,
            )
            return queryset.filter(status__in=Generation.FINAL_STATUSES).filter(
                Exists(reserves.filter(~Exists(settled)))
            )
        return queryset


class ModelFilter(admin.SimpleListFilter):
    """The model that produced (or is producing) the images: the generation's current model."""

    title = gettext_lazy("model used")
    parameter_name = "model"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [(endpoint, endpoint) for endpoint in MODELS]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Generation]) -> QuerySet[Generation]:
        return queryset.filter(current_model=self.value()) if self.value() else queryset


# --- Inlines --------------------------------------------------------------------------------


ATTEMPT_FIELDS = ("position", "model", "fal_job_id", "status", "error", "started_at", "finished_at", "took", "sent")
MEDIA_INLINE_FIELDS = ("preview", "index", "model", "fal_job_id", "persisted", "persist_error", "is_public", "hidden")
CREDIT_INLINE_FIELDS = ("created_at", "reason", "charge_number", "amount", "balance_after", "note", "created_by")


class AttemptInline(ReadOnlyInline):
    model = Attempt
    fields = readonly_fields = ATTEMPT_FIELDS
    ordering = ["started_at"]

    @admin.display(description=gettext_lazy("took"))
    def took(self, attempt: Attempt) -> str:
        if attempt.finished_at is None:
            return EMPTY
        return _format_duration(attempt.finished_at - attempt.started_at)

    @admin.display(description=gettext_lazy("payload sent to fal"))
    def sent(self, attempt: Attempt) -> SafeString | str:
        if not attempt.payload:
            return EMPTY
        # <details> keeps the table readable without JavaScript (the CSP allows none inline).
        return format_html("<details><summary>{}</summary>{}</details>", _("show"), _pretty_json(attempt.payload))


class MediaInline(ReadOnlyInline):
    model = Media
    fields = readonly_fields = MEDIA_INLINE_FIELDS
    ordering = ["index"]
    show_change_link = True

    @admin.display(description=gettext_lazy("image"))
    def preview(self, media: Media) -> SafeString | str:
        return _thumbnail(media.url)


class CreditEntryInline(ReadOnlyInline):
    model = CreditEntry
    fk_name = "generation"
    verbose_name_plural = gettext_lazy("credit entries of this generation")
    fields = readonly_fields = CREDIT_INLINE_FIELDS
    ordering = ["created_at", "id"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[CreditEntry]:
        return super().get_queryset(request).select_related("created_by")


# --- Generations ----------------------------------------------------------------------------


class RetryForm(forms.Form):
    # The retry charges the owner again: sent twice (a double click, a browser resubmit),
    # even after the first retry already failed again, it must restart the jobs once.
    retry_key = one_time_key_field()


@admin.register(Generation)
class GenerationAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = [
        "short_id",
        "status",
        "error",
        "kind",
        "preset_slug",
        "user_email",
        "model_used",
        "attempt_count",
        "created_at",
        "completed_at",
        "duration",
    ]
    list_display_links = ["short_id"]
    list_filter = ["status", AttentionFilter, KindFilter, ModelFilter, "created_at", "completed_at"]
    # The search itself is get_search_results; search_fields only switches the box on.
    search_fields = ["user__email"]
    search_help_text = gettext_lazy(
        "A user's email (or part of it), fal's request id, a generation id or the address the user sent "
        "(/g/… or a share link /i/…)."
    )
    list_per_page = 50
    # The unfiltered total is a second COUNT(*) over the whole table on every page view.
    show_full_result_count = False
    inlines = [AttemptInline, MediaInline, CreditEntryInline]
    actions = ["retry_generations", "cancel_generations", "refund_generations", "persist_generation_media"]
    # Related values share a row, so the attempts and money (inlines, at the bottom)
    # are a short scroll away.
    fieldsets = [
        (
            gettext_lazy("Job"),
            {
                "fields": [
                    ("id", "user_link"),
                    ("status", "kind", "preset_link"),
                    ("current_model", "model_chain"),
                    ("cost_label", "queue_position", "is_public"),
                ]
            },
        ),
        (
            gettext_lazy("Outcome"),
            {"fields": [("error_code", "error_message"), ("created_at", "started_at", "completed_at", "took")]},
        ),
        (
            gettext_lazy("Prompt"),
            {"fields": ["prompt", "prompt_sent", "prompt_template", ("parameters_pretty", "loras_pretty")]},
        ),
        (gettext_lazy("Sent to fal"), {"fields": ["payload_pretty"]}),
        (gettext_lazy("Logs"), {"fields": ["logs_table"]}),
        (gettext_lazy("Source photo"), {"fields": [("source_preview", "source_width", "source_height")]}),
        (
            gettext_lazy("Bookkeeping"),
            {
                "classes": ["collapse"],
                "fields": [("idempotency_key", "request_fingerprint"), ("next_check_at", "updated_at", "deleted_at")],
            },
        ),
    ]

    def get_readonly_fields(self, request: HttpRequest, obj: Generation | None = None) -> list[str]:
        return flatten_fieldsets(self.fieldsets)

    def get_queryset(self, request: HttpRequest) -> QuerySet[Generation]:
        return (
            super()
            .get_queryset(request)
            .select_related("user")
            .annotate(
                # A correlated subquery, not a JOIN + GROUP BY: the database counts only
                # for the rows on the page instead of grouping the whole table first.
                attempt_total=Coalesce(
                    Subquery(
                        Attempt.objects.filter(generation=OuterRef("pk"))
                        .order_by()
                        .values("generation")
                        .annotate(total=Count("pk"))
                        .values("total")[:1]
                    ),
                    0,
                ),
                elapsed=ExpressionWrapper(F("completed_at") - F("created_at"), output_field=DurationField()),
            )
        )

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Generation], search_term: str
    ) -> tuple[QuerySet[Generation], bool]:
        term = search_term.strip()
        if not term:
            return queryset, False
        # Exists() subqueries instead of joins: no duplicate rows, no DISTINCT, and the
        # attempt count annotation is not multiplied.
        match = (
            Q(user__email__icontains=term)
            | Q(Exists(Attempt.objects.filter(generation=OuterRef("pk"), fal_job_id=term)))
            | Q(Exists(Media.objects.filter(generation=OuterRef("pk"), fal_job_id=term)))
        )
        pk, share_id = _ids_in(term)
        if pk is not None:
            # Or one of its images' ids (an old /i/<image id>/ share address, the media admin).
            match |= Q(pk=pk) | Q(Exists(Media.objects.filter(generation=OuterRef("pk"), pk=pk)))
        if share_id is not None:
            match |= Q(Exists(Media.objects.filter(generation=OuterRef("pk"), share_id=share_id)))
        return queryset.filter(match), False

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # generations start from the studio or the API, with a photo and credits

    def has_delete_permission(self, request: HttpRequest, obj: Generation | None = None) -> bool:
        return False  # the job and money record; owners hide theirs instead

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: dict[str, Any] | None = None
    ) -> Any:
        # Nothing on the page is editable; changes are the actions above the form.
        extra_context = {**(extra_context or {}), "show_save": False, "show_save_and_continue": False}
        return super().change_view(request, object_id, form_url, extra_context)

    # Columns and read-only fields.

    @admin.display(description=gettext_lazy("id"), ordering="id")
    def short_id(self, generation: Generation) -> str:
        return _short(generation.pk)

    @admin.display(description=gettext_lazy("user"), ordering="user__email")
    def user_email(self, generation: Generation) -> str:
        return generation.user.email

    # "Why did mine fail?" answered in the list: the code, the message on hover.
    @admin.display(description=gettext_lazy("error"), ordering="error_code")
    def error(self, generation: Generation) -> SafeString | str:
        if not generation.error_code:
            return EMPTY
        return format_html('<span title="{}">{}</span>', generation.error_message, generation.error_code)

    @admin.display(description=gettext_lazy("cost"))
    def cost_label(self, generation: Generation) -> str:
        return _cost(generation)

    @admin.display(description=gettext_lazy("model used"), ordering="current_model")
    def model_used(self, generation: Generation) -> str:
        return generation.current_model or EMPTY

    @admin.display(description=gettext_lazy("attempts"), ordering="attempt_total")
    def attempt_count(self, generation: Generation) -> int:
        return generation.attempt_total  # type: ignore[attr-defined]

    @admin.display(description=gettext_lazy("duration"), ordering="elapsed")
    def duration(self, generation: Generation) -> str:
        return _format_duration(generation.elapsed)  # type: ignore[attr-defined]

    @admin.display(description=gettext_lazy("took"))
    def took(self, generation: Generation) -> str:
        return self.duration(generation)

    @admin.display(description=gettext_lazy("user"))
    def user_link(self, generation: Generation) -> SafeString:
        url = reverse("admin:accounts_user_change", args=[generation.user_id])
        return format_html('<a href="{}">{}</a>', url, generation.user.email)

    @admin.display(description=gettext_lazy("preset"))
    def preset_link(self, generation: Generation) -> SafeString | str:
        label = f"{generation.preset_name} ({generation.preset_slug})"
        try:
            url = reverse("admin:presets_preset_change", args=[generation.preset_id])
        except NoReverseMatch:  # the preset was deleted, or presets are not in the admin
            return label
        return format_html('<a href="{}">{}</a>', url, label)

    @admin.display(description=gettext_lazy("parameters"))
    def parameters_pretty(self, generation: Generation) -> SafeString | str:
        return _pretty_json(generation.parameters)

    @admin.display(description=gettext_lazy("loras"))
    def loras_pretty(self, generation: Generation) -> SafeString | str:
        return _pretty_json(generation.loras)

    @admin.display(description=gettext_lazy("payload of the last submission (no key; image data shortened)"))
    def payload_pretty(self, generation: Generation) -> SafeString | str:
        return _pretty_json(generation.request_payload)

    @admin.display(description=gettext_lazy("logs"))
    def logs_table(self, generation: Generation) -> SafeString | str:
        lines = [line for line in generation.logs or [] if isinstance(line, dict)]
        if not lines:
            return EMPTY
        rows = format_html_join(
            "",
            "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
            ((line.get("timestamp", ""), line.get("level", ""), line.get("message", "")) for line in lines),
        )
        return format_html(
            "<table><tr><th>{}</th><th>{}</th><th>{}</th></tr>{}</table>", _("time"), _("level"), _("message"), rows
        )

    @admin.display(description=gettext_lazy("photo"))
    def source_preview(self, generation: Generation) -> SafeString | str:
        return _thumbnail(generation.source_image.url, width=160) if generation.source_image else EMPTY

    # Actions: each calls a pipeline service per generation; refusals become messages.
    # They need the change permission: view-only staff (support) can look, not act.
    # Retry charges the owner again, cancel and refund give credits back: each asks first
    # (a confirmation step listing the jobs), so a slip in the action menu moves nothing.

    def _confirm(
        self,
        request: HttpRequest,
        queryset: QuerySet[Generation],
        *,
        title: str,
        submit_label: str,
        warning: str,
        call: Callable[[Generation, dict[str, Any]], object],
        done: Callable[[int], str],
        form_class: type[forms.Form] = forms.Form,
    ) -> TemplateResponse | None:
        return action_with_form(
            self,
            request,
            queryset,
            form_class=form_class,
            title=title,
            submit_label=submit_label,
            warning=warning,
            describe=lambda generation: " · ".join(
                [
                    _short(generation.pk),
                    generation.user.email,
                    str(generation.get_status_display()),
                    generation.preset_slug,
                    _cost(generation),
                ]
            ),
            apply=lambda data: apply_to_each(
                request,
                queryset,
                lambda generation: call(generation, data),
                done=done,
                label=lambda generation: _("Generation %(id)s") % {"id": _short(generation.pk)},
            ),
        )

    @admin.action(
        description=gettext_lazy("Retry from the first model… (reserves credits again)"),
        location=BOTH_LOCATIONS,
        permissions=["change"],
    )
    def retry_generations(self, request: HttpRequest, queryset: QuerySet[Generation]) -> TemplateResponse | None:
        return self._confirm(
            request,
            queryset,
            title=_("Retry generations"),
            submit_label=_("Yes, retry"),
            warning=_(
                "Each retry reserves the generation's cost from its owner's credits again (refunded if it fails)."
            ),
            form_class=RetryForm,
            call=lambda generation, data: services.generation_retry(
                generation_id=generation.pk,
                by=_operator(request),
                request_id=request_id_of(request),
                retry_key=data["retry_key"],
            ),
            done=lambda count: (
                ngettext("Restarted %(count)s generation.", "Restarted %(count)s generations.", count)
                % {"count": grouped(count)}
            ),
        )

    @admin.action(description=gettext_lazy("Cancel (and refund)…"), location=BOTH_LOCATIONS, permissions=["change"])
    def cancel_generations(self, request: HttpRequest, queryset: QuerySet[Generation]) -> TemplateResponse | None:
        return self._confirm(
            request,
            queryset,
            title=_("Cancel generations"),
            submit_label=_("Yes, cancel"),
            warning=_("Running jobs are stopped for good and their credits go back to their owners."),
            call=lambda generation, data: services.generation_cancel(generation_id=generation.pk, user=None),
            done=lambda count: (
                ngettext("Canceled %(count)s generation.", "Canceled %(count)s generations.", count)
                % {"count": grouped(count)}
            ),
        )

    @admin.action(description=gettext_lazy("Refund the credits…"), location=BOTH_LOCATIONS, permissions=["change"])
    def refund_generations(self, request: HttpRequest, queryset: QuerySet[Generation]) -> TemplateResponse | None:
        return self._confirm(
            request,
            queryset,
            title=_("Refund generations"),
            submit_label=_("Yes, refund"),
            warning=_("Each generation's credits go back to its owner; a running one is stopped first."),
            call=lambda generation, data: services.generation_refund(
                generation_id=generation.pk, by=_operator(request)
            ),
            done=lambda count: (
                ngettext("Refunded %(count)s generation.", "Refunded %(count)s generations.", count)
                % {"count": grouped(count)}
            ),
        )

    @admin.action(
        description=gettext_lazy("Re-run persistence of images not yet persisted"),
        location=BOTH_LOCATIONS,
        permissions=["change"],
    )
    def persist_generation_media(self, request: HttpRequest, queryset: QuerySet[Generation]) -> None:
        unpersisted = Media.objects.filter(generation__in=queryset.values("pk"), persisted=False)
        _persist(request, unpersisted)


def _image_label(media: Media) -> str:
    return _("Image %(id)s") % {"id": _short(media.pk)}


def _persist(request: HttpRequest, media: QuerySet[Media]) -> None:
    pending = list(media.values_list("pk", flat=True))
    if not pending:
        messages.info(request, _("Every selected image is already persisted."))
        return
    for pk in pending:
        try:
            services.media_persist(media_id=pk)
        except DomainError as error:
            messages.error(request, _("Image %(id)s: %(problem)s") % {"id": _short(pk), "problem": error.message})
    # media_persist records a storage failure on the row (persist_error) instead of
    # raising, so the outcome is read back rather than assumed.
    still_pending = selectors.media_unpersisted_count(media_ids=pending)
    if len(pending) - still_pending:
        count = len(pending) - still_pending
        messages.success(
            request,
            ngettext("Persisted %(count)s image.", "Persisted %(count)s images.", count) % {"count": grouped(count)},
        )
    if still_pending:
        messages.warning(
            request,
            ngettext(
                "%(count)s image is still not persisted: see its persist error.",
                "%(count)s images are still not persisted: see their persist error.",
                still_pending,
            )
            % {"count": grouped(still_pending)},
        )


# --- Media ----------------------------------------------------------------------------------


class TakedownForm(forms.Form):
    reason = forms.CharField(
        max_length=moderation.REASON_MAX_LENGTH,
        label=gettext_lazy("Reason"),
        help_text=gettext_lazy("Kept on the image; the owner still sees it in their history."),
        widget=forms.TextInput(attrs={"size": 60}),
    )


class MoveOwedFilter(admin.SimpleListFilter):
    """Images made private or taken down whose file has not left its old name yet: an
    address that leaked while they were public may still serve them. The worker retries
    the move (generation/services/revoke.py); the error says what storage answered."""

    title = gettext_lazy("move owed")
    parameter_name = "move_owed"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("yes", _("Yes"))]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Media]) -> QuerySet[Media]:
        if self.value() == "yes":
            return queryset.filter(move_next_at__isnull=False)
        return queryset


@admin.register(Media)
class MediaAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = [
        "preview",
        "short_id",
        "user_email",
        "generation_link",
        "model",
        "persisted",
        "is_public",
        "hidden",
        "created_at",
    ]
    list_display_links = ["short_id"]
    list_filter = ["persisted", "is_public", "hidden", MoveOwedFilter, "created_at"]
    search_fields = ["user__email"]
    search_help_text = gettext_lazy(
        "A user's email (or part of it), fal's request id, an image or generation id, or a share link (/i/…)."
    )
    list_select_related = ["user"]
    list_per_page = 50
    show_full_result_count = False
    actions = ["take_down", "restore", "make_private", "persist_media"]
    fields = readonly_fields = (
        "large_preview",
        "id",
        "generation_link",
        "user",
        "index",
        "model",
        "fal_job_id",
        "url",
        "original_url",
        "storage_key",
        "width",
        "height",
        "content_type",
        "persisted",
        "persist_attempts",
        "persist_error",
        "is_public",
        "hidden",
        "hidden_reason",
        "move_to",
        "move_next_at",
        "move_attempts",
        "move_error",
        "created_at",
    )

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Media], search_term: str
    ) -> tuple[QuerySet[Media], bool]:
        term = search_term.strip()
        if not term:
            return queryset, False
        match = Q(user__email__icontains=term) | Q(fal_job_id=term)
        pk, share_id = _ids_in(term)
        if pk is not None:
            match |= Q(pk=pk) | Q(generation_id=pk)
        if share_id is not None:
            match |= Q(share_id=share_id)
        return queryset.filter(match), False

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Media | None = None) -> bool:
        return False  # owners delete their images; staff take them down (reversible)

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: dict[str, Any] | None = None
    ) -> Any:
        extra_context = {**(extra_context or {}), "show_save": False, "show_save_and_continue": False}
        return super().change_view(request, object_id, form_url, extra_context)

    @admin.display(description=gettext_lazy("image"))
    def preview(self, media: Media) -> SafeString | str:
        return _thumbnail(media.url, width=64)

    @admin.display(description=gettext_lazy("image"))
    def large_preview(self, media: Media) -> SafeString | str:
        return _thumbnail(media.url, width=320)

    @admin.display(description=gettext_lazy("id"), ordering="id")
    def short_id(self, media: Media) -> str:
        return _short(media.pk)

    @admin.display(description=gettext_lazy("user"), ordering="user__email")
    def user_email(self, media: Media) -> str:
        return media.user.email

    @admin.display(description=gettext_lazy("generation"))
    def generation_link(self, media: Media) -> SafeString:
        url = reverse("admin:generation_generation_change", args=[media.generation_id])
        return format_html('<a href="{}">{}</a>', url, _short(media.generation_id))

    @admin.action(
        description=gettext_lazy("Take down (hide from the feed) with a reason"),
        location=BOTH_LOCATIONS,
        permissions=["change"],
    )
    def take_down(self, request: HttpRequest, queryset: QuerySet[Media]) -> TemplateResponse | None:
        def apply(data: dict[str, Any]) -> None:
            apply_to_each(
                request,
                queryset,
                lambda media: moderation.media_takedown(
                    media_id=media.pk, reason=data["reason"], by=_operator(request)
                ),
                done=lambda count: (
                    ngettext("Took down %(count)s image.", "Took down %(count)s images.", count)
                    % {"count": grouped(count)}
                ),
                label=_image_label,
            )

        return action_with_form(
            self,
            request,
            queryset,
            form_class=TakedownForm,
            title=_("Take down images"),
            submit_label=_("Take down"),
            apply=apply,
        )

    @admin.action(
        description=gettext_lazy("Restore (undo a takedown)"), location=BOTH_LOCATIONS, permissions=["change"]
    )
    def restore(self, request: HttpRequest, queryset: QuerySet[Media]) -> None:
        apply_to_each(
            request,
            queryset.filter(hidden=True),
            lambda media: moderation.media_restore(media_id=media.pk, by=_operator(request)),
            done=lambda count: (
                ngettext("Restored %(count)s image.", "Restored %(count)s images.", count) % {"count": grouped(count)}
            ),
            label=_image_label,
        )

    # Only this direction: staff publishing a user's private image would break their trust.
    @admin.action(
        description=gettext_lazy("Make private (remove from the feed for good)"),
        location=BOTH_LOCATIONS,
        permissions=["change"],
    )
    def make_private(self, request: HttpRequest, queryset: QuerySet[Media]) -> None:
        apply_to_each(
            request,
            queryset.select_related("user"),
            lambda media: services.media_set_public(user=media.user, media_id=media.pk, is_public=False, limited=False),
            done=lambda count: (
                ngettext("Made %(count)s image private.", "Made %(count)s images private.", count)
                % {"count": grouped(count)}
            ),
            label=_image_label,
        )

    @admin.action(
        description=gettext_lazy("Re-run persistence of images not yet persisted"),
        location=BOTH_LOCATIONS,
        permissions=["change"],
    )
    def persist_media(self, request: HttpRequest, queryset: QuerySet[Media]) -> None:
        _persist(request, queryset.filter(persisted=False))


# --- Storage removals owed -------------------------------------------------------------------


@admin.register(StoredRemoval)
class StoredRemovalAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    """Stored objects no row points to any more (a deleted image or account, a copy that
    landed after its image was deleted) that storage has not confirmed removing. The
    worker retries each with a doubling delay, up to an hour apart, and deletes the row
    once storage confirms; until then an address that leaked while it was public may
    still serve it. Read-only: a row that stays means storage keeps refusing (see its
    last error)."""

    list_display = readonly_fields = ("key", "where", "reason", "attempts", "next_at", "last_error", "created_at")
    list_filter = ["where", "reason"]
    search_fields = ["key"]
    ordering = ["created_at"]
    list_per_page = 50
    show_full_result_count = False

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: StoredRemoval | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: StoredRemoval | None = None) -> bool:
        return False  # deleting the record would forget the debt, not pay it


# --- Workers --------------------------------------------------------------------------------


@admin.register(WorkerHeartbeat)
class WorkerHeartbeatAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = readonly_fields = ("worker_id", "hostname", "pid", "started_at", "last_seen_at")
    ordering = ["-last_seen_at"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: WorkerHeartbeat | None = None) -> bool:
        return False


# --- Dashboard ------------------------------------------------------------------------------


def dashboard_view(request: HttpRequest) -> TemplateResponse:
    """The staff dashboard (/admin/dashboard/, wrapped by admin_view in stefna/ops_urls.py)."""
    board = dashboard.dashboard()
    context = {
        **admin.site.each_context(request),
        "title": "Dashboard",
        "board": board,
        # <meter> needs a max; 1 keeps an all-zero chart valid.
        "hour_max": max([bucket.total for bucket in board.per_hour] + [1]),
        "day_max": max([bucket.total for bucket in board.per_day] + [1]),
        # Empty hours and days are hidden; these say whether anything is left to show.
        "hour_any": any(bucket.total for bucket in board.per_hour),
        "day_any": any(bucket.total for bucket in board.per_day),
    }
    return TemplateResponse(request, "admin/dashboard.html", context)
