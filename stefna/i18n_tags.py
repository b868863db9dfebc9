"""Template filters that format for the active language: `{% load stefna_i18n %}`.

Dates and plain numbers use Django's own localisation (`date:"DATE_FORMAT"`,
`intcomma`, `localize`); prices need a currency, which Django does not format.
"""

from __future__ import annotations

import re
from typing import Any

from django import template
from django.utils import translation
from django.utils.translation import gettext as _
from django.utils.translation import gettext_noop, ngettext

from presets.selectors import preset_names_by_slug
from stefna.i18n_formats import active_language, format_money, grouped

register = template.Library()


@register.filter
def money(minor_units: int | None, currency: str = "usd") -> str:
    """`499|money:"usd"` → "$4.99" in English, "US$4,99" in Bahasa Indonesia."""
    return "" if minor_units is None else format_money(minor_units, currency)


# 1500 → "1,500", "1.500" in Indonesian; shared with the admin's messages (stefna/i18n_formats.py).
register.filter("grouped", grouped)


# --- Text stored in English, shown in the visitor's language ------------------------------
# A generation keeps its preset's English name (history must not change when staff rename
# a preset) and the pipeline writes its progress lines and why a generation ended in
# English. Pages translate them when they show them, and so does the API (its `logs` and
# `error.message`): API messages follow the request's Accept-Language, codes never do.


@register.filter
def preset_label(slug: str, stored_name: str = "") -> str:
    """`g.preset_slug|preset_label:g.preset_name`: the preset's name in the active language.

    In English the generation's own copy is shown (no lookup at all); in another language,
    the preset's translation, else that copy.
    """
    language = active_language()
    if language == "en" or not slug:
        return stored_name or slug
    preset = preset_names_by_slug().get(slug)
    localized = getattr(preset, f"name_{language}", "") if preset is not None else ""
    return localized or stored_name or slug


# The worker writes a model's name as generation/labels.py gives it in English; in offline
# preview mode that is a phrase of its own, which the line's page translates too.
_OFFLINE_LABEL = re.compile(r"^the offline preview renderer \(standing in for (?P<model>.+)\)$")

# The one reason the pipeline writes into a line of its own wording (finish.result_gone):
# kept here, marked for translation, so the line written and the line recognised are one string.
RESULT_GONE_REASON = gettext_noop("its images were already gone when we fetched them")


def _parts(match: re.Match[str]) -> dict[str, str]:
    """A log line's captured parts, its model's name (and a reason we wrote) in the active language."""
    parts = match.groupdict()
    offline = _OFFLINE_LABEL.match(parts.get("model") or "")
    if offline:
        parts["model"] = _("the offline preview renderer (standing in for %(model)s)") % offline.groupdict()
    if parts.get("reason") == RESULT_GONE_REASON:
        parts["reason"] = _(RESULT_GONE_REASON)
    return parts


# Built once: each render calls gettext when it runs, so the active language is the one used.
_LOG_PATTERNS: list[tuple[re.Pattern[str], Any]] = [
    (re.compile(r"^Queued$"), lambda m: _("Queued")),
    (re.compile(r"^Done$"), lambda m: _("Done")),
    (re.compile(r"^Sent to (?P<model>.+)$"), lambda m: _("Sent to %(model)s") % _parts(m)),
    (re.compile(r"^(?P<model>.+) is working on it$"), lambda m: _("%(model)s is working on it") % _parts(m)),
    (
        re.compile(r"^(?P<model>.+) finished: (?P<count>\d+) images?; saving$"),
        lambda m: (
            ngettext(
                "%(model)s finished: %(count)d image; saving",
                "%(model)s finished: %(count)d images; saving",
                int(m["count"]),
            )
            % {"model": _parts(m)["model"], "count": int(m["count"])}
        ),
    ),
    (
        re.compile(r"^(?P<blocked>\d+) of (?P<total>\d+) images? (?:was|were) withheld by the safety filter$"),
        lambda m: (
            ngettext(
                "%(blocked)d of %(total)d image was withheld by the safety filter",
                "%(blocked)d of %(total)d images were withheld by the safety filter",
                int(m["total"]),
            )
            % {"blocked": int(m["blocked"]), "total": int(m["total"])}
        ),
    ),
    # Lines a cancel or a staff action appends (why a generation ended: _ERROR_PATTERNS).
    (re.compile(r"^Canceled; your credits were refunded$"), lambda m: _("Canceled; your credits were refunded")),
    (re.compile(r"^Refunded by staff$"), lambda m: _("Refunded by staff")),
    (
        re.compile(r"^Retried by staff; starting again with the first model$"),
        lambda m: _("Retried by staff; starting again with the first model"),
    ),
    (
        re.compile(r"^Offline preview: no FAL_KEY, rendering locally$"),
        lambda m: _("Offline preview: no FAL_KEY, rendering locally"),
    ),
    (re.compile(r"^Loading your photo$"), lambda m: _("Loading your photo")),
    (re.compile(r"^Applying the (?P<look>.+) look$"), lambda m: _("Applying the %(look)s look") % _parts(m)),
    (
        re.compile(r"^(?P<model>.+) is busy \((?P<reason>.*)\); trying again shortly$"),
        lambda m: _("%(model)s is busy (%(reason)s); trying again shortly") % _parts(m),
    ),
    (
        re.compile(r"^(?P<model>.+?) could not be asked: (?P<reason>.*)$"),
        lambda m: _("%(model)s could not be asked: %(reason)s") % _parts(m),
    ),
    (
        re.compile(r"^(?P<model>.+?) finished, but (?P<reason>.*)$"),
        lambda m: _("%(model)s finished, but %(reason)s") % _parts(m),
    ),
    (
        re.compile(r"^(?P<model>.+?) failed: (?P<reason>.*)$"),
        lambda m: _("%(model)s failed: %(reason)s") % _parts(m),
    ),
]


# Why a generation ended (its `error.message` in the API), written in English by the
# services that end it; each is also the generation's last log line. Codes never change
# with the language (CONTRACT); these messages follow it.
_ERROR_PATTERNS: list[tuple[re.Pattern[str], Any]] = [
    (re.compile(r"^Canceled$"), lambda m: _("Canceled")),
    (re.compile(r"^Canceled by staff$"), lambda m: _("Canceled by staff")),
    (re.compile(r"^Stopped and refunded by staff\.$"), lambda m: _("Stopped and refunded by staff.")),
    (
        re.compile(
            r"^The safety filter withheld every image (?P<model>.+?) made for this request, so there is "
            r"nothing to show and nothing was charged: your (?P<cost>\d+) credits are back\. "
            r"Try another photo, or describe what you want differently\.$"
        ),
        lambda m: (
            ngettext(
                "The safety filter withheld every image %(model)s made for this request, so there is "
                "nothing to show and nothing was charged: your %(cost)d credit is back. "
                "Try another photo, or describe what you want differently.",
                "The safety filter withheld every image %(model)s made for this request, so there is "
                "nothing to show and nothing was charged: your %(cost)d credits are back. "
                "Try another photo, or describe what you want differently.",
                int(m["cost"]),
            )
            % {"model": _parts(m)["model"], "cost": int(m["cost"])}
        ),
    ),
    (
        re.compile(
            r"^Every model for this style failed, so nothing was made and your (?P<cost>\d+) credits "
            r"were refunded\.(?: \((?P<detail>.*)\))?$",
            re.S,
        ),
        lambda m: (
            ngettext(
                "Every model for this style failed, so nothing was made and your %(cost)d credit was refunded.",
                "Every model for this style failed, so nothing was made and your %(cost)d credits were refunded.",
                int(m["cost"]),
            )
            % {"cost": int(m["cost"])}
            # What each model said is fal's own text (or ours, already shown line by line above).
            + (f" ({m['detail']})" if m["detail"] else "")
        ),
    ),
    (
        re.compile(
            r"^This generation took longer than (?P<minutes>\d+) minutes and was stopped; "
            r"your (?P<cost>\d+) credits were refunded\.$"
        ),
        lambda m: (
            ngettext(
                "This generation took longer than %(minutes)d minutes and was stopped; "
                "your %(cost)d credit was refunded.",
                "This generation took longer than %(minutes)d minutes and was stopped; "
                "your %(cost)d credits were refunded.",
                int(m["cost"]),
            )
            % {"minutes": int(m["minutes"]), "cost": int(m["cost"])}
        ),
    ),
    (
        re.compile(
            r"^The images were made, but fal deleted them before we could save a copy, so nothing was kept "
            r"and your (?P<cost>\d+) credits were refunded\. Please try again\.$"
        ),
        lambda m: (
            ngettext(
                "The images were made, but fal deleted them before we could save a copy, so nothing was "
                "kept and your %(cost)d credit was refunded. Please try again.",
                "The images were made, but fal deleted them before we could save a copy, so nothing was "
                "kept and your %(cost)d credits were refunded. Please try again.",
                int(m["cost"]),
            )
            % {"cost": int(m["cost"])}
        ),
    ),
    (
        re.compile(
            r"^fal deleted the images before we could save a copy, so there is nothing to show; "
            r"your (?P<cost>\d+) credits were given back\.$"
        ),
        lambda m: (
            ngettext(
                "fal deleted the images before we could save a copy, so there is nothing to show; "
                "your %(cost)d credit was given back.",
                "fal deleted the images before we could save a copy, so there is nothing to show; "
                "your %(cost)d credits were given back.",
                int(m["cost"]),
            )
            % {"cost": int(m["cost"])}
        ),
    ),
]


# A generation's last line is often why it ended: those first, so that "failed: " inside
# the models' own errors is not read as a line of its own.
_ANY_LINE_PATTERNS = [*_ERROR_PATTERNS, *_LOG_PATTERNS]


def _translated(message: str, patterns: list[tuple[re.Pattern[str], Any]]) -> str:
    if (translation.get_language() or "en").startswith("en"):
        return message
    for pattern, render in patterns:
        match = pattern.match(message or "")
        if match:
            return str(render(match))
    return message


@register.filter
def log_message(message: str) -> str:
    """A pipeline progress line in the active language; lines from fal itself pass as they are."""
    return _translated(message, _ANY_LINE_PATTERNS)


def error_message(message: str) -> str:
    """Why a generation ended, in the active language (the stored text is English)."""
    return _translated(message, _ERROR_PATTERNS)
