"""Error messages in the request's language, whoever raised them.

Most messages are marked for translation where they are raised. A few services still
raise plain English, some with figures in it ("This costs 2 credits and you have 0…"),
which no catalogue entry can match. Those are recognised here by their English wording
and written again in the active language with the same figures. Anything else, a message
already translated included, is shown as it was raised; English is never rewritten.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable

from django.utils import formats, translation
from django.utils.translation import gettext
from django.utils.translation import gettext as _


def _clock(english: str) -> str:
    """An English "14:05" as the active language writes a time ("14.05" in Indonesian)."""
    try:
        return formats.time_format(dt.time.fromisoformat(english))
    except ValueError:
        return english


# (the English a service raises, how to say it in the active language)
KNOWN_ENGLISH: list[tuple[re.Pattern[str], Callable[[re.Match[str]], str]]] = [
    (
        re.compile(
            r"^This costs (?P<cost>\d+) credits and you have (?P<balance>-?\d+)\. "
            r"Your daily credits refill at (?P<time>[\d:]+) UTC\.$"
        ),
        lambda m: (
            _("This costs %(cost)s credits and you have %(balance)s. Your daily credits refill at %(time)s UTC.")
            % {**m.groupdict(), "time": _clock(m["time"])}
        ),
    ),
    (
        re.compile(r"^There is no active style called .*\.$", re.S),
        lambda m: _("That style is not available. Pick one of the styles shown."),
    ),
    (
        re.compile(r"^The prompt is (?P<length>\d+) characters; the limit is (?P<max>\d+)\.$"),
        lambda m: _("The prompt is too long: at most %(max)s characters.") % m.groupdict(),
    ),
    (
        re.compile(r"^The prompt contains a NUL character\.$"),
        lambda m: _("The prompt contains a character that can't be sent (NUL)."),
    ),
    (
        re.compile(r"^This style needs a prompt: describe what you want to see\.$"),
        lambda m: _("This style needs a prompt: describe what you want to see."),
    ),
    (
        re.compile(r"^This generation has already \w+; it can't be canceled\.$"),
        lambda m: _("This generation has already ended, so it can't be canceled."),
    ),
    (
        re.compile(r"^This generation has just finished; it can't be canceled\.$"),
        lambda m: _("This generation has just finished, so it can't be canceled."),
    ),
    (
        re.compile(r"^This generation changed meanwhile; reload and try again\.$"),
        lambda m: _("This generation changed meanwhile; reload and try again."),
    ),
]


def error_message(*, message: object, default: object) -> str:
    """`message` (or `default`) in the active language; see the module docstring."""
    text = str(message or default)
    translated = gettext(text)
    if translated != text or (translation.get_language() or "en").startswith("en"):
        return translated
    for pattern, render in KNOWN_ENGLISH:
        match = pattern.match(text)
        if match:
            return render(match)
    return text
