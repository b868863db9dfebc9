"""Rate limits on sign-in codes and generation starts (429 + Retry-After, at no cost), and
the production security settings: secure cookies, HSTS, `check --deploy` clean."""

from __future__ import annotations

import base64
import itertools
import json
import os
import secrets
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client

from tests.images import make_jpeg

from .conftest import STYLE_SLUG, assert_error, snapshot

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parents[2]


def _retry_after(response) -> int:
    value = response.headers.get("Retry-After")
    assert value is not None, f"429 without Retry-After ({response.request['PATH_INFO']})"
    assert value.isdigit(), value
    seconds = int(value)
    assert 1 <= seconds <= 3600
    return seconds


def _start_json(client):
    body = {"image_base64": base64.b64encode(make_jpeg(64, 64)).decode(), "preset": STYLE_SLUG}
    return client.post("/api/generations", data=json.dumps(body), content_type="application/json")


# --- Generation starts ---------------------------------------------------------------------


@pytest.mark.usefixtures("clear_of_rate_window_end")
def test_generation_starts_over_the_limit_are_429_with_retry_after_and_cost_nothing(
    api_client, user, style, funded, settings
):
    settings.RATE_LIMIT_GENERATIONS = (2, 60)
    assert _start_json(api_client).status_code == 202
    assert _start_json(api_client).status_code == 202
    before = snapshot(user)

    refused = _start_json(api_client)

    body = assert_error(refused, 429, "rate_limited")
    assert _retry_after(refused) <= 60
    assert body["detail"]["retry_after"] == int(refused["Retry-After"])
    assert snapshot(user) == before


@pytest.mark.usefixtures("clear_of_rate_window_end")
def test_the_one_call_studio_shares_the_generation_limit(api_client, user, style, funded, settings):
    settings.RATE_LIMIT_GENERATIONS = (1, 60)
    assert _start_json(api_client).status_code == 202
    before = snapshot(user)
    body = {"image_base64": base64.b64encode(make_jpeg(64, 64)).decode(), "prompt": "a cat"}

    refused = api_client.post("/api/generate-image", data=json.dumps(body), content_type="application/json")

    assert_error(refused, 429, "rate_limited")
    _retry_after(refused)
    assert snapshot(user) == before


@pytest.mark.usefixtures("clear_of_rate_window_end")
def test_the_studio_form_over_the_limit_is_429_with_retry_after(signed_in, user, style, funded, settings):
    settings.RATE_LIMIT_GENERATIONS = (1, 60)

    def post():
        photo = SimpleUploadedFile("me.jpg", make_jpeg(64, 64), content_type="image/jpeg")
        return signed_in.post("/", {"image": photo, "preset": STYLE_SLUG})

    assert post().status_code == 302
    before = snapshot(user)

    refused = post()

    assert refused.status_code == 429
    assert b"Too many" in refused.content or b"too many" in refused.content
    assert snapshot(user) == before
    _retry_after(refused)


@pytest.mark.usefixtures("clear_of_rate_window_end")
def test_one_users_limit_does_not_touch_another_user(api_client, other_user, style, funded, settings):
    settings.RATE_LIMIT_GENERATIONS = (1, 60)
    assert _start_json(api_client).status_code == 202
    assert _start_json(api_client).status_code == 429
    from stefna.accounts.services import api_token_create

    _, token = api_token_create(user=other_user, name="t")

    assert _start_json(Client(HTTP_AUTHORIZATION=f"Bearer {token}")).status_code == 202


# --- Sign-in codes -------------------------------------------------------------------------


@pytest.mark.usefixtures("clear_of_rate_window_end")
def test_sign_in_codes_per_email_are_limited_with_retry_after(db, mailoutbox):
    client = Client()
    answers = [client.post("/accounts/sign-in/", {"email": "target@example.com"}) for _ in range(6)]

    assert [answer.status_code for answer in answers[:5]] == [302] * 5
    assert answers[5].status_code == 429
    assert len(mailoutbox) == 5, "the refused request sent no mail"
    _retry_after(answers[5])


@pytest.mark.usefixtures("clear_of_rate_window_end")
def test_sign_in_codes_per_ip_are_limited_across_emails(db, mailoutbox):
    client = Client(REMOTE_ADDR="203.0.113.9")
    answers = [client.post("/accounts/sign-in/", {"email": f"person{n}@example.com"}) for n in range(21)]

    assert all(answer.status_code == 302 for answer in answers[:20])
    assert answers[20].status_code == 429
    assert len(mailoutbox) == 20
    _retry_after(answers[20])


def test_guessing_codes_locks_the_code(db, mailoutbox):
    client = Client()
    client.post("/accounts/sign-in/", {"email": "guess@example.com"})
    guesses = [client.post("/accounts/code/", {"code": f"{n:06d}"}) for n in range(8)]

    assert all(guess.status_code >= 400 for guess in guesses)
    # Even the right code no longer works once the tries are used up.
    code = next(word for word in mailoutbox[0].body.split() if word.isdigit() and len(word) >= 6)
    assert client.post("/accounts/code/", {"code": code}).status_code >= 400
    assert "_auth_user_id" not in client.session


# --- Production settings -------------------------------------------------------------------

PRODUCTION_ENV = {
    "DEBUG": "0",
    "SECRET_KEY": secrets.token_urlsafe(64),
    "ALLOWED_HOSTS": "stefna.example",
    "CSRF_TRUSTED_ORIGINS": "https://stefna.example",
    "SECURE_SSL_REDIRECT": "1",
    "SECURE_PROXY_SSL_HEADER": "1",
    "SECURE_HSTS_SECONDS": "31536000",
    "SECURE_HSTS_INCLUDE_SUBDOMAINS": "1",
    "SECURE_HSTS_PRELOAD": "1",
    "FAL_KEY": "prod-key-id:prod-key-secret",
    "EMAIL_HOST": "smtp.stefna.example",
    "DATABASE_URL": "sqlite:////tmp/stefna-deploy-check.sqlite3",
    # A cache every process shares (stefna.W004 flags a per-process one); checks don't connect.
    "REDIS_URL": "redis://127.0.0.1:6379/5",
}


def _run(args: list[str], extra_env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    env = {"PATH": os.environ.get("PATH", ""), "HOME": os.environ.get("HOME", "/tmp"), **extra_env}
    return subprocess.run(
        [sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False
    )


def test_check_deploy_is_clean_in_a_production_environment():
    result = _run(["manage.py", "check", "--deploy", "--fail-level", "WARNING"], PRODUCTION_ENV)

    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff_security_rules_are_on_and_every_exception_is_justified():
    text = (ROOT / "pyproject.toml").read_text()
    lint = tomllib.loads(text)["tool"]["ruff"]["lint"]
    assert "S" in lint["select"]
    lines = text.splitlines()
    for code in lint["ignore"]:
        line = next(line for line in lines if line.strip().startswith(f'"{code}"'))
        assert "#" in line and len(line.split("#", 1)[1].strip()) > 10, f"{code} is ignored without a reason"
    for pattern, codes in lint["per-file-ignores"].items():
        if any(code.startswith("S") for code in codes):
            at = next(n for n, line in enumerate(lines) if line.startswith(f'"{pattern}"'))
            # A comment on the line, or one heading its block of patterns.
            block = itertools.takewhile(lambda line: line.strip() and not line.startswith("["), reversed(lines[:at]))
            justified = "#" in lines[at] or any(line.lstrip().startswith("#") for line in block)
            assert justified, f"{pattern} skips the S rules without a reason"


def test_production_settings_are_secure_by_default():
    """Only DEBUG=0 and a key: cookies are secure and HTTP-only without anyone asking."""
    script = (
        "import json, django; django.setup(); from django.conf import settings as s; print(json.dumps({k: getattr(s, k)"
        " for k in ['SESSION_COOKIE_SECURE','CSRF_COOKIE_SECURE','SESSION_COOKIE_HTTPONLY','DEBUG',"
        "'SECURE_CONTENT_TYPE_NOSNIFF','X_FRAME_OPTIONS','ALLOWED_HOSTS']}))"
    )
    minimal = {"DEBUG": "0", "SECRET_KEY": secrets.token_urlsafe(64), "DJANGO_SETTINGS_MODULE": "stefna.settings"}

    result = _run(["-c", script], minimal)

    assert result.returncode == 0, result.stderr
    values = json.loads(result.stdout.strip().splitlines()[-1])
    assert values["SESSION_COOKIE_SECURE"] and values["CSRF_COOKIE_SECURE"] and values["SESSION_COOKIE_HTTPONLY"]
    assert values["DEBUG"] is False and values["ALLOWED_HOSTS"] == []
    assert values["SECURE_CONTENT_TYPE_NOSNIFF"] and values["X_FRAME_OPTIONS"] == "DENY"


def test_without_a_secret_key_production_refuses_to_start():
    result = _run(["manage.py", "check"], {"DEBUG": "0", "SECRET_KEY": ""})

    assert result.returncode != 0
    assert "SECRET_KEY" in result.stderr


def test_https_answers_carry_hsts_and_cookies_are_secure_and_http_only(db, settings):
    settings.SECURE_HSTS_SECONDS = 31536000
    settings.SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    client = Client()

    page = client.get("/accounts/sign-in/", secure=True)
    signed = client.post("/accounts/sign-in/", {"email": "cookie@example.com"}, secure=True)

    assert page["Strict-Transport-Security"] == "max-age=31536000; includeSubDomains"
    assert page["Referrer-Policy"] == "same-origin"
    csrf_cookie = page.cookies["csrftoken"]
    assert csrf_cookie["secure"] is True
    session_cookie = signed.cookies["sessionid"]
    assert session_cookie["secure"] is True and session_cookie["httponly"] is True
    assert session_cookie["samesite"].lower() in ("lax", "strict")
