"""What Django answers before any view (a Host the site does not serve): JSON under /api/,
the site's page elsewhere, in the visitor's language."""

from __future__ import annotations

import pytest


@pytest.mark.django_db
@pytest.mark.parametrize("path", ["/api/feed", "/api/generations"])
def test_an_api_request_for_a_host_we_do_not_serve_gets_json(client, path):
    response = client.get(path, HTTP_HOST="evil.example")

    assert response.status_code == 400
    assert response["Content-Type"] == "application/json"
    assert response.json() == {"code": "bad_request", "message": "The request is not valid.", "detail": None}


@pytest.mark.django_db
def test_the_api_message_follows_accept_language(client):
    response = client.get("/api/feed", HTTP_HOST="evil.example", HTTP_ACCEPT_LANGUAGE="id")

    assert response.json()["code"] == "bad_request"
    assert response.json()["message"] == "Permintaannya tidak valid."


@pytest.mark.django_db
def test_a_page_for_a_host_we_do_not_serve_gets_the_sites_400_page(client):
    response = client.get("/feed/", HTTP_HOST="evil.example")

    assert response.status_code == 400
    assert response["Content-Type"].startswith("text/html")
    assert b"We couldn" in response.content
