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
