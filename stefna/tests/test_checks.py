"""Start-up warnings for production misconfiguration, and a clean `check --deploy`."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from django.core import checks

from stefna.checks import W001, W002, W003, check_production_configuration

BASE_DIR = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _result_url_rule_on(settings):
    # The suite relaxes the result-URL rule for its local fakes; production does not.
    settings.ALLOW_PRIVATE_RESULT_URLS = False


@pytest.fixture
def production(settings):
    """Settings as a correct production deployment has them; each test breaks one thing."""
    settings.DEBUG = False
    settings.FAL_KEY = "key-id:key-secret"
    settings.CLOUDINARY_CLOUD_NAME = "demo"
    settings.CLOUDINARY_API_KEY = "123"
    settings.CLOUDINARY_API_SECRET = "abc"
    settings.FAL_WEBHOOK_BASE_URL = "https://stefna.example.com"
    return settings


def ids(settings_in_use=None) -> list[str | None]:
    return [message.id for message in check_production_configuration()]


def test_a_correct_production_configuration_has_no_warnings(production):
    assert ids() == []


def test_it_warns_when_private_result_urls_are_allowed_with_debug_off(production):
    from stefna.checks import W006, check_operations_configuration

    production.ALLOW_PRIVATE_RESULT_URLS = True
    assert W006 in [message.id for message in check_operations_configuration()]
    production.DEBUG = True
    assert W006 not in [message.id for message in check_operations_configuration()]


def test_the_default_cache_without_redis_is_shared_so_it_is_not_flagged(production):
    from stefna.checks import W004, check_operations_configuration

    assert production.CACHES["default"]["BACKEND"] == "django.core.cache.backends.db.DatabaseCache"
    assert W004 not in [message.id for message in check_operations_configuration()]


def test_it_warns_when_fal_key_is_missing_with_debug_off(production):
    production.FAL_KEY = ""
    warnings = check_production_configuration()
    assert [w.id for w in warnings] == [W001]
    assert warnings[0].level == checks.WARNING
    assert "FAL_KEY" in warnings[0].msg


def test_a_missing_fal_key_is_fine_in_development(production):
    production.FAL_KEY = ""
    production.DEBUG = True
    assert ids() == []


@pytest.mark.parametrize("missing", ["CLOUDINARY_CLOUD_NAME", "CLOUDINARY_API_KEY", "CLOUDINARY_API_SECRET"])
def test_it_warns_when_cloudinary_credentials_are_incomplete(production, missing):
    setattr(production, missing, "")
    warnings = check_production_configuration()
    assert [w.id for w in warnings] == [W002]
    # The warning names what is missing and never prints what is there.
    assert "abc" not in warnings[0].msg and "123" not in warnings[0].msg


def test_no_cloudinary_at_all_is_a_valid_choice(production):
    production.CLOUDINARY_CLOUD_NAME = production.CLOUDINARY_API_KEY = production.CLOUDINARY_API_SECRET = ""
    assert ids() == []


@pytest.mark.parametrize("url", ["http://stefna.example.com", "stefna.example.com", "ftp://x"])
def test_it_warns_when_the_webhook_base_url_is_not_https(production, url):
    production.FAL_WEBHOOK_BASE_URL = url
    assert ids() == [W003]


def test_no_webhook_base_url_means_polling_and_is_fine(production):
    production.FAL_WEBHOOK_BASE_URL = ""
    assert ids() == []


def test_the_checks_are_registered_with_django(production):
    production.FAL_KEY = ""
    found = [message.id for message in checks.run_checks(tags=[checks.Tags.security])]
    assert W001 in found


def production_env(**overrides: str) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        # Start from the caller's environment (PATH, DATABASE_URL) minus everything
        # Stefna reads and pytest-env's DJANGO_ALLOW_ASYNC_UNSAFE, a test-only switch.
        if not key.startswith(
            (
                "SECRET_KEY",
                "DEBUG",
                "ALLOWED_HOSTS",
                "SECURE_",
                "SESSION_",
                "CSRF_",
                "FAL_",
                "CLOUDINARY_",
                "DJANGO_ALLOW_ASYNC_UNSAFE",
                "ALLOW_PRIVATE_RESULT_URLS",
                "EMAIL_",
            )
        )
    }
    env.update(
        SECRET_KEY=secrets.token_urlsafe(64),
        DEBUG="0",
        ALLOWED_HOSTS="stefna.example.com",
        CSRF_TRUSTED_ORIGINS="https://stefna.example.com",
        SECURE_SSL_REDIRECT="1",
        SECURE_HSTS_SECONDS="31536000",
        SECURE_HSTS_INCLUDE_SUBDOMAINS="1",
        SECURE_HSTS_PRELOAD="1",
        SESSION_COOKIE_SECURE="1",
        CSRF_COOKIE_SECURE="1",
        FAL_KEY="key-id:key-secret",
        FAL_WEBHOOK_BASE_URL="https://stefna.example.com",
        CLOUDINARY_URL="cloudinary://123:abc@demo",
        # Django 6.1's deploy checks refuse the console mailer; production sends real mail.
        EMAIL_HOST="smtp.example.com",
        # A cache every process shares (stefna.W004); nothing connects to it during checks.
        REDIS_URL="redis://127.0.0.1:6379/5",
    )
    env.update(overrides)
    return env


def run_check_deploy(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy"],
        cwd=BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.slow
def test_check_deploy_is_clean_with_a_proper_production_environment():
    result = run_check_deploy(production_env())
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout
    assert "WARNINGS" not in result.stdout + result.stderr


@pytest.mark.slow
def test_check_deploy_reports_our_warnings_for_a_broken_environment():
    result = run_check_deploy(
        production_env(
            FAL_KEY="", CLOUDINARY_URL="cloudinary://123@demo", FAL_WEBHOOK_BASE_URL="http://stefna.example.com"
        )
    )
    output = result.stdout + result.stderr
    assert W001 in output and W002 in output and W003 in output
    # Only the API key's position is printed: the partial credentials stay out of the output.
    assert "cloudinary://123@demo" not in output
