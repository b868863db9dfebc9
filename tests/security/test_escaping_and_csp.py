"""Whatever a user typed is rendered escaped on every page that shows it, and every page
carries a Content Security Policy that would block an inline script even if one slipped in."""

from __future__ import annotations

import base64
import json
from html.parser import HTMLParser

import pytest
from django.test import Client

from generation.models import Generation
from generation.tests.factories import MediaFactory
from tests.data.corpus import SCRIPT_PROMPT
from tests.images import make_jpeg

from .conftest import STYLE_SLUG

pytestmark = pytest.mark.django_db

HOSTILE_NAME = "<script>alert('name')</script>"
# Any of these in a page means user text reached the HTML unescaped.
RAW_MARKERS = ["<script>alert", "<img src=x onerror", "alert('name')</script>"]
ESCAPED_PROMPT = "&lt;script&gt;alert(&quot;stefna&quot;)&lt;/script&gt;"


@pytest.fixture
def hostile_generation(api_client, user, style, funded):
    """A generation started through the API with a script prompt, by a user whose display
    name is a script, with one public image (as if the pipeline had delivered it)."""
    user.display_name = HOSTILE_NAME
    user.save()
    body = {"image_base64": base64.b64encode(make_jpeg(64, 64)).decode(), "preset": STYLE_SLUG, "prompt": SCRIPT_PROMPT}
    response = api_client.post("/api/generations", data=json.dumps(body), content_type="application/json")
    assert response.status_code == 202, response.content
    generation = Generation.objects.get(pk=response.json()["id"])
    # The pipeline isn't under test here: mark it delivered the way a finished job looks.
    Generation.objects.filter(pk=generation.pk).update(status=Generation.Status.SUCCEEDED)
    generation.refresh_from_db()
    media = MediaFactory(generation=generation, user=user, is_public=True)
    return generation, media


def _assert_escaped(response, *, shows_prompt: bool) -> str:
    assert response.status_code == 200, (response.status_code, response.content[:300])
    page = response.content.decode()
    for marker in RAW_MARKERS:
        assert marker not in page, f"unescaped user text ({marker!r}) in {response.request['PATH_INFO']}"
    if shows_prompt:
        assert ESCAPED_PROMPT in page or "&lt;script&gt;alert(&quot;stefna" in page
    return page


def test_the_api_returns_the_prompt_as_json_data_never_as_html(api_client, hostile_generation):
    generation, _ = hostile_generation

    response = api_client.get(f"/api/generations/{generation.pk}")

    assert response["Content-Type"].startswith("application/json")
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response.json()["prompt"] == SCRIPT_PROMPT


def test_history_detail_and_card_escape_the_prompt(user, hostile_generation):
    generation, _ = hostile_generation
    client = Client()
    client.force_login(user)

    _assert_escaped(client.get("/history/"), shows_prompt=True)
    _assert_escaped(client.get(f"/g/{generation.pk}/"), shows_prompt=True)
    _assert_escaped(client.get(f"/g/{generation.pk}/card/", HTTP_HX_REQUEST="true"), shows_prompt=True)


def test_the_share_page_and_feed_escape_the_prompt_and_the_author_name(client, hostile_generation):
    _, media = hostile_generation

    share = _assert_escaped(client.get(f"/i/{media.share_id}"), shows_prompt=True)
    assert "&lt;script&gt;alert(&#x27;name&#x27;)" in share, "the author's name is shown, escaped"
    _assert_escaped(client.get("/feed/"), shows_prompt=False)
    _assert_escaped(client.get("/feed/", HTTP_HX_REQUEST="true"), shows_prompt=False)


def test_the_account_page_escapes_the_display_name(user, hostile_generation):
    client = Client()
    client.force_login(user)

    _assert_escaped(client.get("/accounts/"), shows_prompt=False)


def test_the_admin_escapes_the_prompt_and_the_name(hostile_generation, django_user_model):
    generation, media = hostile_generation
    staff = django_user_model.objects.create_user(email="staff@example.com", is_staff=True, is_superuser=True)
    client = Client()
    client.force_login(staff)

    for url in [
        "/admin/generation/generation/",
        f"/admin/generation/generation/{generation.pk}/change/",
        "/admin/generation/media/",
        f"/admin/generation/media/{media.pk}/change/",
        "/admin/accounts/user/",
    ]:
        response = client.get(url)
        if response.status_code == 404:
            continue  # that model isn't registered (yet); the others still must be safe
        _assert_escaped(response, shows_prompt=False)


# --- Content Security Policy ---------------------------------------------------------------


def _csp_directives(response) -> dict[str, list[str]]:
    header = response.headers.get("Content-Security-Policy")
    assert header, f"no CSP on {response.request['PATH_INFO']}"
    directives = {}
    for part in header.split(";"):
        words = part.split()
        if words:
            directives[words[0]] = words[1:]
    return directives


class _ScriptFinder(HTMLParser):
    """Inline <script> bodies, on* handler attributes and javascript: URLs in a page."""

    def __init__(self) -> None:
        super().__init__()
        self.problems: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        names = dict(attrs)
        if tag == "script" and not names.get("src"):
            self.problems.append("inline <script>")
        for name, value in attrs:
            if name.startswith("on"):
                self.problems.append(f"<{tag} {name}=…>")
            if name in ("href", "src", "action", "formaction") and (value or "").strip().lower().startswith(
                "javascript:"
            ):
                self.problems.append(f"<{tag} {name}=javascript:…>")


def inline_script_problems(page: str) -> list[str]:
    finder = _ScriptFinder()
    finder.feed(page)
    return finder.problems


def test_every_page_has_a_csp_that_forbids_inline_script_and_uses_none(user, hostile_generation, django_user_model):
    generation, media = hostile_generation
    staff = django_user_model.objects.create_user(email="staff2@example.com", is_staff=True, is_superuser=True)
    visitor, owner, admin = Client(), Client(), Client()
    owner.force_login(user)
    admin.force_login(staff)
    pages = [
        (visitor, "/"),
        (visitor, "/feed/"),
        (visitor, f"/i/{media.share_id}"),
        (visitor, "/accounts/sign-in/"),
        (visitor, "/no-such-page/"),
        (owner, "/"),
        (owner, "/history/"),
        (owner, f"/g/{generation.pk}/"),
        (owner, "/accounts/"),
        (admin, "/admin/"),
        (admin, "/admin/generation/generation/"),
    ]
    for client, url in pages:
        response = client.get(url)
        assert response.status_code in (200, 404), (url, response.status_code)
        directives = _csp_directives(response)
        script_src = directives.get("script-src") or directives.get("default-src")
        assert script_src, url
        assert "'unsafe-inline'" not in script_src and "'unsafe-eval'" not in script_src, (url, script_src)
        assert directives.get("object-src") == ["'none'"], url
        assert "frame-ancestors" in directives, url
        if response["Content-Type"].startswith("text/html") and not url.startswith("/admin/"):
            assert inline_script_problems(response.content.decode()) == [], url


def test_json_answers_and_errors_are_not_sniffable_or_frameable(api_client):
    response = api_client.get("/api/generations/not-a-uuid")

    assert response["Content-Type"].startswith("application/json")
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["X-Frame-Options"] == "DENY"
