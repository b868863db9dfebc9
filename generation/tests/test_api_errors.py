"""The API's error mapping (stefna/api.py): one JSON body for every failure."""

from __future__ import annotations

import json

import pytest
from django.core.exceptions import PermissionDenied, TooManyFieldsSent
from django.http import Http404
from django.test import RequestFactory

from stefna.api import api
from stefna.errors import NotFound

from .api_support import assert_error


@pytest.mark.parametrize("method", ["get", "post", "delete", "patch"])
@pytest.mark.parametrize("path", ["/api/nope", "/api/generations/abc/def", "/api/presets/", "/api/v2/feed"])
def test_unknown_routes_under_api_are_json_404s(client, db, method, path):
    response = getattr(client, method)(path)

    assert_error(response, 404, "not_found")


def test_the_wrong_method_on_a_known_route_is_a_json_405_with_allow(api_client):
    response = api_client.put("/api/quota")

    body = assert_error(response, 405, "method_not_allowed")
    assert response["Allow"] == "GET"
    assert body["detail"] == {"allowed": ["GET"]}


def test_the_wrong_method_on_the_async_studio_route_is_a_json_405(api_client):
    response = api_client.get("/api/generate-image")

    assert_error(response, 405, "method_not_allowed")
    assert response["Allow"] == "POST"


@pytest.mark.parametrize(
    ("exc", "status", "code"),
    [
        (Http404("gone"), 404, "not_found"),
        (NotFound(), 404, "not_found"),
        (PermissionDenied(), 403, "forbidden"),
        (TooManyFieldsSent("too many"), 422, "invalid_input"),
        (RuntimeError("a bug with a secret in it"), 500, "server_error"),
    ],
)
def test_exceptions_map_to_the_json_error_body(exc, status, code):
    request = RequestFactory().get("/api/anything")

    response = api.on_exception(request, exc)

    assert_error(response, status, code)
    assert b"secret" not in response.content


def test_the_openapi_document_has_no_duplicate_keys(client, db):
    # Swagger UI (/api/docs) refuses a document with a key twice in one object ("duplicated
    # mapping key"): an `openapi_extra` response keyed "200" beside ninja's 200 did that.
    duplicates: list[str] = []

    def no_duplicates(pairs: list[tuple[str, object]]) -> dict[str, object]:
        keys = [key for key, _ in pairs]
        duplicates.extend(sorted({key for key in keys if keys.count(key) > 1}))
        return dict(pairs)

    json.loads(client.get("/api/openapi.json").content, object_pairs_hook=no_duplicates)
    assert duplicates == []


def test_every_operation_declares_the_answers_of_the_layers_in_front_of_it(client, db):
    # The body bound (413) and the NUL guard (422) answer on every route, and CSRF (403) on
    # every write a browser session may make: a generated client must know them.
    paths = client.get("/api/openapi.json").json()["paths"]
    for path, item in paths.items():
        for method, operation in item.items():
            declared = set(operation["responses"])
            assert {"413", "422"} <= declared, (method, path)
            if method in {"post", "patch", "delete"} and operation.get("security"):
                assert "403" in declared, (method, path)
            assert operation["responses"]["413"]["content"]["application/json"]["schema"]["$ref"].endswith("/ErrorOut")


def test_docs_and_openapi_are_served(client, db):
    assert client.get("/api/docs").status_code == 200
    schema = client.get("/api/openapi.json").json()
    paths = schema["paths"]
    for path in [
        "/api/presets",
        "/api/generations",
        "/api/generations/{generation_id}",
        "/api/generations/{generation_id}/cancel",
        "/api/quota",
        "/api/feed",
        "/api/media/{media_id}",
        "/api/generate-image",
    ]:
        assert path in paths
    create = paths["/api/generations"]["post"]
    assert set(create["requestBody"]["content"]) == {"multipart/form-data", "application/json"}
    assert {"202", "401", "402", "409", "413", "415", "422", "429"} <= set(create["responses"])
    assert "200" not in create["responses"], "a replay answers 202 too (CONTRACT)"
    assert create["responses"]["413"]["content"]["application/json"]["schema"]["$ref"].endswith("/ErrorOut")


def test_the_error_schema_says_every_error_carries_code_message_and_detail(client, db):
    # CONTRACT: errors answer `{"code", "message", "detail"}`; detail is null when empty, never missing.
    error = client.get("/api/openapi.json").json()["components"]["schemas"]["ErrorOut"]

    assert set(error["properties"]) == {"code", "message", "detail"}
    assert set(error["required"]) == {"code", "message", "detail"}


def test_the_document_declares_the_headers_clients_act_on(client, db):
    paths = client.get("/api/openapi.json").json()["paths"]

    for path, item in paths.items():
        for method, operation in item.items():
            responses = operation["responses"]
            assert "503" in responses, (method, path)  # the database down: any route
            for status in ("429", "503"):
                if status in responses:
                    assert "Retry-After" in responses[status].get("headers", {}), (method, path, status)
            if "401" in responses:
                assert "WWW-Authenticate" in responses["401"].get("headers", {}), (method, path)
            # CONTRACT: API messages follow the request's Accept-Language.
            assert ("header", "Accept-Language") in {(p["in"], p["name"]) for p in operation["parameters"]}
    detail = paths["/api/generations/{generation_id}"]["get"]
    assert {"ETag"} <= set(detail["responses"]["200"]["headers"]) & set(detail["responses"]["304"]["headers"])
    assert ("header", "If-None-Match") in {(p["in"], p["name"]) for p in detail["parameters"]}
    create = paths["/api/generations"]["post"]
    assert "Idempotent-Replayed" in create["responses"]["202"]["headers"]
    assert ("header", "Idempotency-Key") in {(p["in"], p["name"]) for p in create["parameters"]}


def test_a_purchase_status_is_one_of_the_contracts_five(client, db):
    from credits.models import Purchase

    contract = ["pending", "paid", "refunded", "disputed", "expired"]
    purchase = client.get("/api/openapi.json").json()["components"]["schemas"]["PurchaseOut"]

    assert purchase["properties"]["status"]["enum"] == contract
    assert sorted(Purchase.Status.values) == sorted(contract)
