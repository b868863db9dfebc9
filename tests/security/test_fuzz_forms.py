"""Every field fuzzed: whatever arrives in an email, code, prompt, preset, name or id
(too long, malformed, control characters, NUL, hostile markup), the answer is a clear
4xx or a form error, never a 500, on SQLite and PostgreSQL alike."""

from __future__ import annotations

import json

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from tests.images import make_jpeg

from .conftest import STYLE_SLUG

pytestmark = pytest.mark.django_db

FUZZ = hypothesis_settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture], database=None
)
# Text that breaks naive code: any code point (NUL and lone surrogates' neighbours included),
# over-long values, markup and SQL-looking strings.
hostile = st.one_of(
    st.text(max_size=300),
    st.text(min_size=250, max_size=3000),
    st.sampled_from(
        [
            "",
            "\x00",
            "a\x00b@example.com",
            "<script>alert(1)</script>",
            "'; DROP TABLE auth_otps; --",
            "a" * 255 + "@example.com",
            "ada@" + "x" * 300 + ".com",
            "../../etc/passwd",
            "%00",
            "😀" * 100,
            "\u202e\u200b",
        ]
    ),
)


def _ok(response) -> None:
    assert response.status_code < 500, (response.status_code, response.content[:300])


@FUZZ
@given(email=hostile)
def test_sign_in_never_500s(email, mailoutbox):
    _ok(Client(REMOTE_ADDR="198.51.100.200").post("/accounts/sign-in/", {"email": email}))


@FUZZ
@given(code=hostile, email=st.sampled_from(["ada@example.com", "\x00", "x" * 300]))
def test_code_entry_never_500s(code, email):
    client = Client()
    session = client.session
    session["sign_in_email"] = email
    session.save()
    _ok(client.post("/accounts/code/", {"code": code}))


@FUZZ
@given(name=hostile, display_name=hostile, confirm=hostile)
def test_account_forms_never_500(user, name, display_name, confirm):
    client = Client()
    client.force_login(user)
    _ok(client.post("/accounts/tokens/", {"name": name}))
    _ok(client.post("/accounts/", {"display_name": display_name}))
    if confirm.strip().lower() != user.email:
        _ok(client.post("/accounts/delete/", {"confirm": confirm}))


@FUZZ
@given(prompt=hostile, preset=st.one_of(hostile, st.just(STYLE_SLUG)), public=hostile)
def test_the_studio_form_never_500s(signed_in, style, funded, settings, prompt, preset, public):
    settings.RATE_LIMIT_GENERATIONS = (10_000, 60)
    photo = SimpleUploadedFile("me.jpg", make_jpeg(32, 32), content_type="image/jpeg")
    _ok(signed_in.post("/", {"image": photo, "preset": preset, "prompt": prompt, "is_public": public}))


@FUZZ
@given(prompt=hostile, preset=st.one_of(hostile, st.just(STYLE_SLUG)), key=hostile, source=hostile)
def test_the_api_never_500s(api_client, style, funded, settings, prompt, preset, key, source):
    settings.RATE_LIMIT_GENERATIONS = (10_000, 60)
    body = {"preset": preset, "prompt": prompt, "source_generation": source}
    headers = {"HTTP_IDEMPOTENCY_KEY": key} if key and "\n" not in key and "\r" not in key else {}
    _ok(api_client.post("/api/generations", data=json.dumps(body), content_type="application/json", **headers))
    _ok(api_client.delete("/api/me", data=json.dumps({"confirm": prompt}), content_type="application/json"))


@FUZZ
@given(identifier=st.one_of(hostile, st.uuids().map(str)))
def test_ids_in_paths_and_queries_never_500(api_client, identifier):
    from urllib.parse import quote

    quoted = quote(identifier, safe="")
    for url in (
        f"/api/generations/{quoted}",
        f"/api/generations?cursor={quoted}",
        f"/api/feed?cursor={quoted}",
        f"/g/{quoted}/",
        f"/i/{quoted}/",
        f"/media/generated/{quoted}",
        f"/images/{quoted}",
    ):
        _ok(api_client.get(url))
    _ok(api_client.patch(f"/api/media/{quoted}", data=json.dumps({"is_public": True}), content_type="application/json"))
