"""The database unreachable (down, restarting, or every pooled connection busy) is a 503
with a stable code, not a 500: JSON under /api/, a page elsewhere."""

from __future__ import annotations

import pytest
from django.test import Client

pytestmark = pytest.mark.django_db(transaction=True)


def test_the_api_answers_503_service_unavailable(api_token, database_down):
    response = Client().get("/api/generations", headers={"Authorization": f"Bearer {api_token}"})

    assert response.status_code == 503
    body = response.json()
    assert body["code"] == "service_unavailable"
    assert body["message"] and body["detail"] is None
    assert response["Retry-After"] == "5"


def test_the_api_code_does_not_change_with_the_language(api_token, database_down):
    response = Client().get(
        "/api/generations", headers={"Authorization": f"Bearer {api_token}", "Accept-Language": "id"}
    )

    assert response.status_code == 503
    assert response.json()["code"] == "service_unavailable"


@pytest.fixture
def signed_in(user) -> Client:
    browser = Client(raise_request_exception=False)
    browser.force_login(user)
    return browser


def test_a_page_answers_the_503_page(signed_in, database_down):
    response = signed_in.get("/history/")

    assert response.status_code == 503
    assert b"503" in response.content
    assert response["Retry-After"] == "5"


def test_the_503_page_offers_to_try_the_same_page_again(signed_in, database_down):
    """It said "try again in a few seconds" and its one button left for the studio."""
    page = signed_in.get("/history/?status=failed", HTTP_ACCEPT_LANGUAGE="id").content.decode()
    assert '<a class="button primary" href="" data-testid="try-again">Coba lagi</a>' in page
    assert 'href="/">Kembali ke studio</a>' in page


BANNER = b"Offline preview mode:"


def test_the_503_page_says_offline_preview_mode_like_every_page(signed_in, database_down, settings):
    settings.OFFLINE_MODE = True

    assert BANNER in signed_in.get("/history/").content


def test_the_500_page_says_offline_preview_mode_too(rf, settings):
    from stefna.unavailable import server_error

    settings.OFFLINE_MODE = True
    try:
        raise RuntimeError("a bug")
    except RuntimeError:
        response = server_error(rf.get("/"))

    assert response.status_code == 500
    assert BANNER in response.content
    settings.OFFLINE_MODE = False
    try:
        raise RuntimeError("a bug")
    except RuntimeError:
        assert BANNER not in server_error(rf.get("/")).content


def test_admin_pages_say_offline_preview_mode(client, settings):
    from stefna.accounts.models import User

    settings.OFFLINE_MODE = True
    client.force_login(User.objects.create_superuser(email="staff@example.com", password="x" * 20))

    assert BANNER in client.get("/admin/").content
    settings.OFFLINE_MODE = False
    assert BANNER not in client.get("/admin/").content
