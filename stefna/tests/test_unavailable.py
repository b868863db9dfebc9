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
