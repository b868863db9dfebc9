"""Staff edit presets here. Validation lives in `Preset.clean()`, so every error the
admin shows is attached to the field it is about (model chain, parameters, prompt…)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.functional import lazy
from django.utils.html import format_html, format_html_join
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, ngettext

from generation.registry import MODELS
from stefna.i18n_formats import grouped

from .models import Preset


class PrettyJSONField(forms.JSONField):
    """A JSON textarea that shows the value indented, one item per line."""

    def prepare_value(self, value: Any) -> Any:
        if isinstance(value, str) or value is None:
            # Already text (the staff member's input being shown again with an error).
            return value
        return json.dumps(value, indent=2, ensure_ascii=False)


def _parameters_help() -> str:
    # Built when the form is shown, not at import: the help follows the staff member's language.
    lines = []
    for endpoint, spec in MODELS.items():
        values = {"endpoint": endpoint, "label": spec.label, "parameters": ", ".join(sorted(spec.params)) or _("none")}
        locked = ", ".join(f"{name}={value}" for name, value in spec.locked.items())
        if locked:
            lines.append(
                _("%(endpoint)s (%(label)s): parameters %(parameters)s; locked %(locked)s")
                % {**values, "locked": locked}
            )
        else:
            lines.append(_("%(endpoint)s (%(label)s): parameters %(parameters)s") % values)
    return _(
        'Extra model inputs as a JSON object, e.g. {"strength": 0.6, "negative_prompt": "blurry"}. '
        "Known endpoints, tried in order — %(endpoints)s"
    ) % {"endpoints": " | ".join(lines)}


class PresetForm(forms.ModelForm):
    model_chain = PrettyJSONField(
        widget=forms.Textarea(attrs={"rows": 5, "cols": 60}),
        help_text=gettext_lazy(
            'An ordered JSON list, e.g. ["fal-ai/ghiblify", "fal-ai/fast-sdxl/image-to-image"]. '
            "The next endpoint is tried when one fails."
        ),
    )
    parameters = PrettyJSONField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 6, "cols": 60}),
        help_text=lazy(_parameters_help, str)(),
    )
    loras = PrettyJSONField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 4, "cols": 60}),
        help_text=gettext_lazy('A JSON list of {"path": "<URL or Hugging Face id>", "scale": 1.0}; empty for none.'),
    )

    class Meta:
        model = Preset
        fields = (
            "name",
            "slug",
            "kind",
            "description",
            "name_id",
            "description_id",
            "is_active",
            "sort_order",
            "prompt",
            "requires_prompt",
            "model_chain",
            "parameters",
            "loras",
            "num_images",
            "thumbnail",
        )
        widgets = {
            "prompt": forms.Textarea(attrs={"rows": 5, "cols": 80}),
            "description": forms.Textarea(attrs={"rows": 2, "cols": 80}),
            "description_id": forms.Textarea(attrs={"rows": 2, "cols": 80}),
        }

    def clean_parameters(self) -> Any:
        # An emptied textarea means "no extra parameters", not null.
        return self.cleaned_data.get("parameters") or {}

    def clean_loras(self) -> Any:
        return self.cleaned_data.get("loras") or []


def _problems(error: ValidationError) -> str:
    """A preset's refusal on one line, field by field, for an admin message."""
    return "; ".join(f"{field}: {' '.join(texts)}" for field, texts in error.message_dict.items())


@admin.register(Preset)
class PresetAdmin(admin.ModelAdmin):
    form = PresetForm
    list_display = ("preview", "name", "slug", "kind", "chain", "sort_order", "is_active", "requires_prompt")
    list_display_links = ("preview", "name")
    list_editable = ("sort_order",)
    list_filter = ("kind", "is_active", "requires_prompt")
    search_fields = ("slug", "name", "description", "name_id", "description_id", "prompt")
    ordering = ("sort_order", "name")
    actions = ("activate", "deactivate")
    readonly_fields = ("cost", "thumbnail_preview")
    list_per_page = 100
    fieldsets = (
        (None, {"fields": ("name", "slug", "kind", "description", "is_active", "sort_order", "cost")}),
        (gettext_lazy("Bahasa Indonesia"), {"fields": ("name_id", "description_id")}),
        (gettext_lazy("Prompt"), {"fields": ("prompt", "requires_prompt")}),
        (gettext_lazy("Models"), {"fields": ("model_chain", "parameters", "loras", "num_images")}),
        (gettext_lazy("Thumbnail"), {"fields": ("thumbnail", "thumbnail_preview")}),
    )

    def get_readonly_fields(self, request: HttpRequest, obj: Preset | None = None) -> tuple[str, ...]:
        # The slug is what API clients and saved links use: fixed once the preset exists.
        return (*self.readonly_fields, "slug") if obj else self.readonly_fields

    def get_prepopulated_fields(self, request: HttpRequest, obj: Preset | None = None) -> dict[str, Sequence[str]]:
        return {} if obj else {"slug": ("name",)}

    @admin.display(description="")
    def preview(self, obj: Preset) -> str:
        return format_html('<img src="{}" width="40" height="40" alt="" loading="lazy">', obj.thumbnail_url)

    @admin.display(description=gettext_lazy("Preview"))
    def thumbnail_preview(self, obj: Preset) -> str:
        if not obj.pk:
            return _("Shown after saving; without an upload the built-in picture for the slug (or kind) is used.")
        return format_html('<img src="{}" width="128" height="128" alt="">', obj.thumbnail_url)

    @admin.display(description=gettext_lazy("Cost (credits)"))
    def cost(self, obj: Preset) -> int:
        # Fixed by the design documents; shown so staff see it, never editable.
        return obj.cost

    @admin.display(description=gettext_lazy("Model chain"))
    def chain(self, obj: Preset) -> str:
        labels = [(MODELS[endpoint].label if endpoint in MODELS else endpoint,) for endpoint in obj.model_chain]
        return format_html_join(" → ", "{}", labels)

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> Any:
        # A model leaving the registry (or a rule added since a preset was saved) breaks
        # live styles without anyone editing them: said here, where staff look.
        for preset in Preset.objects.filter(is_active=True):
            try:
                preset.clean()  # the settings only: no query per preset
            except ValidationError as error:
                messages.warning(
                    request,
                    _("%(name)s (%(slug)s) is live but would fail: %(problems)s")
                    % {"name": preset.name, "slug": preset.slug, "problems": _problems(error)},
                )
        return super().changelist_view(request, extra_context)

    @admin.action(description=gettext_lazy("Activate selected presets"))
    def activate(self, request: HttpRequest, queryset: QuerySet[Preset]) -> None:
        # A preset switched off may predate a rule (or a model since removed from the
        # registry): it is checked as the edit form checks it, so a style whose every
        # generation would fail never reaches users.
        ready = []
        for preset in queryset.filter(is_active=False):
            try:
                preset.full_clean()
            except ValidationError as error:
                self.message_user(
                    request,
                    _("%(name)s (%(slug)s) stays off: %(problems)s")
                    % {"name": preset.name, "slug": preset.slug, "problems": _problems(error)},
                    messages.ERROR,
                )
            else:
                ready.append(preset.pk)
        changed = Preset.objects.filter(pk__in=ready, is_active=False).update(is_active=True)
        self.message_user(
            request,
            ngettext("%(count)s preset activated.", "%(count)s presets activated.", changed)
            % {"count": grouped(changed)},
            messages.SUCCESS,
        )

    @admin.action(description=gettext_lazy("Deactivate selected presets (hidden from users, history kept)"))
    def deactivate(self, request: HttpRequest, queryset: QuerySet[Preset]) -> None:
        changed = queryset.filter(is_active=True).update(is_active=False)
        self.message_user(
            request,
            ngettext("%(count)s preset deactivated.", "%(count)s presets deactivated.", changed)
            % {"count": grouped(changed)},
            messages.SUCCESS,
        )
