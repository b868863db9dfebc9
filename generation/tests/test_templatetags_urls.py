"""`{% object_url %}` gives exactly what `{% url %}` gives, with one reverse() per route per request."""

from __future__ import annotations

import uuid
from unittest import mock

import pytest
from django.template import Context, Template
from django.test import RequestFactory
from django.urls import clear_script_prefix, reverse, set_script_prefix
from django.utils.safestring import SafeString

from generation.templatetags import stefna_urls

ROUTES = [
    "media_share",
    "media_visibility",
    "media_delete",
    "generation_detail",
    "generation_card",
    "generation_cancel",
    "generation_delete",
    "history_item",
]


def render(source: str, **context: object) -> str:
    return Template("{% load stefna_urls %}" + source).render(Context(context))


@pytest.mark.parametrize("name", ROUTES)
def test_it_matches_the_url_tag(name):
    request = RequestFactory().get("/history/")
    pk = uuid.uuid4()

    ours = render("{% object_url name pk %}", request=request, name=name, pk=pk)

    assert ours == render("{% url name pk %}", name=name, pk=pk) == reverse(name, args=[pk])


def test_it_honours_the_script_prefix():
    # Deployed under a path (SCRIPT_NAME), every address carries it, as {% url %}'s do.
    set_script_prefix("/stefna/")
    try:
        pk = uuid.uuid4()
        ours = render("{% object_url 'media_share' pk %}", request=RequestFactory().get("/"), pk=pk)
    finally:
        clear_script_prefix()

    assert ours == f"/stefna/i/{pk}/"


def test_a_route_is_reversed_once_per_request_however_many_objects():
    request = RequestFactory().get("/history/")
    pks = [uuid.uuid4() for _ in range(20)]
    source = "{% for pk in pks %}{% object_url 'media_share' pk %} {% object_url 'media_delete' pk %}\n{% endfor %}"

    with mock.patch.object(stefna_urls, "reverse", wraps=reverse) as reverse_spy:
        lines = render(source, request=request, pks=pks).splitlines()

    assert lines == [f"/i/{pk}/ /i/{pk}/delete/" for pk in pks]
    assert reverse_spy.call_count == 2
    # A new request starts afresh (the script prefix or URLconf may differ per request).
    with mock.patch.object(stefna_urls, "reverse", wraps=reverse) as reverse_spy:
        render(source, request=RequestFactory().get("/"), pks=pks[:1])
    assert reverse_spy.call_count == 2


def test_without_a_request_or_a_uuid_it_is_plain_reverse():
    pk = uuid.uuid4()

    assert render("{% object_url 'media_share' pk %}", pk=pk) == f"/i/{pk}/"
    assert render("{% object_url 'media_share' pk %}", request=RequestFactory().get("/"), pk=str(pk)) == f"/i/{pk}/"


def test_the_as_form_stores_the_address_for_reuse():
    pk = uuid.uuid4()

    out = render(
        "{% object_url 'generation_delete' pk as url %}{{ url }}|{{ url }}", request=RequestFactory().get("/"), pk=pk
    )

    assert out == f"/g/{pk}/delete/|/g/{pk}/delete/"


def test_an_address_that_needs_no_escaping_comes_back_safe_and_renders_once():
    request = RequestFactory().get("/history/")
    pk = uuid.uuid4()

    address = stefna_urls.object_url({"request": request}, "media_share", pk)

    assert isinstance(address, SafeString)
    assert render("{% object_url 'media_share' pk as u %}<a href=\"{{ u }}\">", request=request, pk=pk) == (
        f'<a href="{reverse("media_share", args=[pk])}">'
    )


def test_an_address_that_html_would_change_is_left_to_autoescape():
    set_script_prefix("/a&b/")
    try:
        pk = uuid.uuid4()
        request = RequestFactory().get("/")
        address = stefna_urls.object_url({"request": request}, "media_share", pk)
        ours = render("{% object_url 'media_share' pk %}", request=request, pk=pk)
    finally:
        clear_script_prefix()

    assert not isinstance(address, SafeString)
    assert ours == f"/a&amp;b/i/{pk}/"
