"""Property-based fuzzing of the JSON API from its own OpenAPI schema (schemathesis 4).

Every operation in /api/openapi.json is called with generated inputs, authenticated with
a real API token, through the WSGI app in-process (no server, no network). A run passes
when nothing answers 5xx and every answer matches what the schema declares: its status
code, content type, headers and body. Bounded (max_examples) to stay well under a minute.

The schema is built at import from the NinjaAPI object (the very function that serves
/api/openapi.json; the first test proves they are identical), because schemathesis 4's
fixture-based lazy loader does not work with pytest 9.
"""

from __future__ import annotations

import pytest
import schemathesis
from django.core import signals
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    ignored_auth,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from stefna.api import api

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    # Re-sends each request without credentials: a protected route must refuse it.
    ignored_auth,
]

OPENAPI = api.get_openapi_schema(path_prefix="/api/")
schema = schemathesis.openapi.from_dict(OPENAPI)
# Every call, including the checks' own probes (ignored_auth), goes to the WSGI app.
schema.app = get_wsgi_application()


@pytest.fixture
def wsgi_app(db, settings):
    """The app's settings for the run; the app itself is `schema.app`."""
    # A generated photo is never a real image, but a studio call must not wait anyway.
    settings.GENERATE_IMAGE_WAIT_SECONDS = 0
    settings.ALLOWED_HOSTS = ["localhost"]  # the host schemathesis' WSGI client sends
    # As Django's own test client does: a request must not close the test's connection
    # (and with it the test transaction) when it finishes.
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    try:
        yield schema.app
    finally:
        signals.request_started.connect(close_old_connections)
        signals.request_finished.connect(close_old_connections)


def test_the_fuzzed_schema_is_the_one_served(client, db):
    assert client.get("/api/openapi.json").json() == OPENAPI


FUZZ_SETTINGS = settings(
    max_examples=20,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.filter_too_much],
)


@schema.parametrize()
@FUZZ_SETTINGS
def test_the_api_honours_its_openapi_schema(case, wsgi_app, api_token):
    case.call_and_validate(app=wsgi_app, headers={"Authorization": f"Bearer {api_token}"}, checks=CHECKS)


# CONTRACT.md's JSON API (kept with the project's shared documents): each route, its
# success status and the fields it promises ("images.url": `url` in each of `images`).
GENERATION = (
    "id preset kind status prompt cost remaining_coins queue_position logs model attempts images error "
    "created_at completed_at debug_info logs.message logs.level logs.timestamp attempts.model "
    "attempts.fal_job_id attempts.status attempts.error attempts.started_at attempts.finished_at images.id "
    "images.url images.original_url images.fal_job_id images.model images.width images.height "
    "images.persisted images.is_public error.code error.message debug_info.prompt_sent debug_info.original_prompt"
)
CONTRACT_ROUTES = {
    ("get", "/api/presets", "200"): "slug name kind description requires_prompt num_images cost thumbnail_url",
    ("post", "/api/generations", "202"): GENERATION,
    ("get", "/api/generations", "200"): "items next_cursor "
    + " ".join(f"items.{field}" for field in GENERATION.split()),
    ("get", "/api/generations/{generation_id}", "200"): GENERATION,
    ("post", "/api/generations/{generation_id}/cancel", "200"): GENERATION,
    ("get", "/api/quota", "200"): (
        "daily_limit daily_used remaining weekly_used dailyReset currentBalance purchased_balance timestamp"
    ),
    ("get", "/api/credit-packs", "200"): "slug name credits price currency",
    ("post", "/api/checkout", "201"): "purchase_id checkout_url",
    ("get", "/api/purchases", "200"): (
        "items next_cursor items.id items.pack items.credits items.price items.currency items.status "
        "items.created_at items.paid_at items.receipt_url"
    ),
    ("post", "/api/stripe/webhook", "200"): "",
    ("get", "/api/me/export", "200"): "profile generations images purchases ledger images.url",
    ("delete", "/api/me", "204"): "",
    ("get", "/api/feed", "200"): "items next_cursor",
    ("patch", "/api/media/{media_id}", "200"): "",
    ("delete", "/api/media/{media_id}", "204"): "",
    ("post", "/api/fal/webhook", "200"): "",
    ("get", "/api/generations/{generation_id}/events", "200"): "",
    ("post", "/api/generate-image", "200"): (
        "generation_id images remaining_coins debug_info debug_info.prompt_sent debug_info.original_prompt"
    ),
    ("post", "/api/generate-image", "202"): "generation_id",
}
CONTRACT_ERROR_STATUSES = {"401", "403", "404", "402", "413", "415", "422", "409", "429"}


def _resolve(schema: dict) -> dict:
    if "$ref" in schema:
        return _resolve(OPENAPI["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]])
    for branch in schema.get("anyOf", []):
        if branch.get("type") != "null":
            return _resolve(branch)
    return _resolve(schema["items"]) if schema.get("type") == "array" else schema


def _promised_fields(schema: dict, prefix: str = "") -> set[str]:
    """Every field the schema requires, nested ones dotted (absent optional ones are no promise)."""
    schema = _resolve(schema)
    fields = set()
    for name in schema.get("required", []):
        fields |= {prefix + name} | _promised_fields(schema["properties"][name], f"{prefix}{name}.")
    return fields


def test_the_schema_promises_every_contract_route_and_field():
    """What API clients rely on, checked against the schema that the fuzzing above holds
    every answer to: a CONTRACT field the schema did not require could vanish unnoticed."""
    for (method, path, status), fields in CONTRACT_ROUTES.items():
        operation = OPENAPI["paths"].get(path, {}).get(method)
        assert operation, f"{method.upper()} {path} is not in the API"
        assert status in operation["responses"], f"{method.upper()} {path} does not answer {status}"
        body = operation["responses"][status].get("content", {}).get("application/json", {}).get("schema")
        missing = set(fields.split()) - (_promised_fields(body) if body else set())
        assert not missing, f"{method.upper()} {path} {status} does not promise {sorted(missing)}"
    errors = {
        status: response["content"]["application/json"]["schema"]
        for operation in (op for ops in OPENAPI["paths"].values() for op in ops.values())
        for status, response in operation["responses"].items()
        if status in CONTRACT_ERROR_STATUSES and "application/json" in response.get("content", {})
    }
    assert set(errors) == CONTRACT_ERROR_STATUSES
    for status, body in errors.items():
        assert _promised_fields(body) >= {"code", "message"}, f"a {status} answer does not promise code and message"
        assert "detail" in _resolve(body)["properties"], f"a {status} answer has no detail"
