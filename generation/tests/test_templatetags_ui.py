"""`|shorten` answers exactly what Django's `|truncatechars` answers."""

from __future__ import annotations

import pytest
from django.template import Context, Template
from django.template.defaultfilters import truncatechars
from django.utils.safestring import mark_safe

from generation.templatetags.stefna_ui import shorten

TEXTS = ["", "a quiet harbour", "x" * 160, "x" * 161, "e\u0301" * 120, "cafe\u0301 " * 40, "<b>&</b>" * 30]


@pytest.mark.parametrize("text", TEXTS)
@pytest.mark.parametrize("length", [0, 1, 2, 120, 160, -1, "120"])
def test_shorten_matches_truncatechars(text, length):
    assert shorten(text, length) == truncatechars(text, length)


@pytest.mark.parametrize("value", ["<b>a quiet</b> & calm", mark_safe("<b>a quiet</b> & calm")])
def test_shorten_escapes_like_truncatechars(value):
    ours = Template("{% load stefna_ui %}{{ value|shorten:120 }}").render(Context({"value": value}))
    assert ours == Template("{{ value|truncatechars:120 }}").render(Context({"value": value}))
