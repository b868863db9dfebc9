"""fal.ai through fal-client's synchronous queue client.

fal-client is imported lazily, on first use, for two reasons:
- it reads `FAL_QUEUE_RUN_HOST`/`FAL_RUN_HOST` when it is imported, so tests and
  benches can point it at a fake queue by setting them before the first call;
- its retry loop is configured through module constants, which we bound here.

fal-client retries a request up to 10 times with exponential backoff (up to 30 s
between tries) on connection errors, timeouts, 408/409/429 and ingress 502-504. In a
worker that checks hundreds of jobs, one unreachable fal would pin a thread for about
a minute per call. We cap it at `FAL_CLIENT_MAX_ATTEMPTS` tries and
`FAL_CLIENT_MAX_RETRY_DELAY_SECONDS` between them: the pipeline has its own, slower
retry (the job is simply checked again on the next round), so failing fast loses nothing.

The key travels only in the Authorization header fal-client sets; it is never logged
and never part of an error message.
"""

from __future__ import annotations

import json
import logging
import threading
from typing import Any

from django.conf import settings

from generation.exceptions import ProviderError

from .base import ProviderState, ProviderStatus

logger = logging.getLogger("generation.fal")

_configure_lock = threading.Lock()
_configured = False
_clients: dict[str, Any] = {}

# fal's "try again" answers: rate limited, request timeout, conflict. Anything else in
# 4xx means this model refuses this input; 5xx (after fal-client's own retries) means
# the model is failing right now. Both are worth the next model in the chain.
TRANSIENT_STATUSES = {408, 409, 429}


def _fal_client_module() -> Any:
    global _configured
    import fal_client.client as fal_client_module
    import httpx

    if not _configured:
        with _configure_lock:
            fal_client_module.MAX_ATTEMPTS = max(1, settings.FAL_CLIENT_MAX_ATTEMPTS)
            setattr(fal_client_module, "MAX_DELAY", settings.FAL_CLIENT_MAX_RETRY_DELAY_SECONDS)  # noqa: B010 (an int upstream)
            fal_client_module.QUEUE_POLL_TIMEOUT = httpx.Timeout(
                settings.FAL_HTTP_TIMEOUT_SECONDS, connect=min(5.0, settings.FAL_HTTP_TIMEOUT_SECONDS)
            )
            _configured = True
    return fal_client_module


def _client(key: str) -> Any:
    client = _clients.get(key)
    if client is None:
        module = _fal_client_module()
        with _configure_lock:
            client = _clients.get(key)
            if client is None:
                client = module.SyncClient(key=key, default_timeout=settings.FAL_HTTP_TIMEOUT_SECONDS)
                _clients[key] = client
    return client


def _short(text: Any, limit: int = 300) -> str:
    text = str(text)
    return text if len(text) <= limit else text[:limit] + "…"


def translate_error(exc: Exception, *, action: str) -> ProviderError:
    """A ProviderError for a fal-client/httpx failure, classified permanent or transient."""
    import httpx

    module = _fal_client_module()
    if isinstance(exc, module.FalClientHTTPError):
        status = exc.status_code
        message = f"fal answered HTTP {status} to {action}: {_short(exc.message)}"
        if status == 429:
            # The account's limit of jobs at once: the pipeline starts fewer for a while.
            return ProviderError(message, permanent=False, code="provider_rate_limited")
        if status in TRANSIENT_STATUSES:
            return ProviderError(message, permanent=False, code="provider_busy")
        if status == 422:
            return ProviderError(message, permanent=True, code="provider_invalid_input")
        if status >= 500:
            # A refused submission (after fal-client's own retries) means this model is
            # failing now: fall over. A 5xx while following a job fal already accepted is
            # a hiccup on the way to its result: ask again (bounded by the attempt timeout)
            # rather than abandon a job that may be done, and pay for another.
            submitting = action == "the submission"
            return ProviderError(message, permanent=submitting, code="provider_error")
        return ProviderError(message, permanent=True, code="provider_rejected")
    if isinstance(exc, httpx.TimeoutException):
        return ProviderError(f"fal did not answer {action} in time", permanent=False, code="provider_timeout")
    if isinstance(exc, httpx.TransportError):
        return ProviderError(
            f"fal could not be reached for {action} ({type(exc).__name__})",
            permanent=False,
            code="provider_unreachable",
        )
    return ProviderError(f"fal {action} failed: {_short(exc)}", permanent=True, code="provider_error")


def _detail(response: Any) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:300]
    return str(body.get("detail", body) if isinstance(body, dict) else body)


def privacy_headers() -> dict[str, str]:
    """Sent with every submission (CONTRACT, "What reaches fal"): fal keeps no history of
    the request's inputs and outputs, and deletes its own copies of them after
    FAL_RESULT_RETENTION_SECONDS, long enough for our copy (and its retries) to be made."""
    lifecycle = {"expiration_duration_seconds": settings.FAL_RESULT_RETENTION_SECONDS}
    return {"X-Fal-Store-IO": "0", "X-Fal-Object-Lifecycle-Preference": json.dumps(lifecycle)}


class FalProvider:
    name = "fal"

    def __init__(self, key: str) -> None:
        if not key:
            raise ProviderError("FAL_KEY is not set", permanent=True, code="provider_not_configured")
        self._key = key

    def __repr__(self) -> str:  # never show the key
        return "FalProvider()"

    def submit(self, endpoint: str, payload: dict[str, Any], webhook_url: str | None = None, *, kind: str = "") -> str:
        try:
            handle = _client(self._key).submit(endpoint, payload, webhook_url=webhook_url, headers=privacy_headers())
        except Exception as exc:
            raise translate_error(exc, action="the submission") from None
        return str(handle.request_id)

    def status(self, endpoint: str, request_id: str) -> ProviderStatus:
        module = _fal_client_module()
        try:
            status = _client(self._key).status(endpoint, request_id, with_logs=True)
        except Exception as exc:
            raise translate_error(exc, action="the status check") from None
        if isinstance(status, module.Queued):
            return ProviderStatus(ProviderState.IN_QUEUE, queue_position=status.position)
        if isinstance(status, module.InProgress):
            return ProviderStatus(ProviderState.IN_PROGRESS, logs=list(status.logs or []))
        if isinstance(status, module.Completed):
            return ProviderStatus(ProviderState.COMPLETED, logs=list(status.logs or []), error=status.error)
        raise ProviderError(f"fal answered an unknown status {status!r}", permanent=False)

    def result(self, endpoint: str, request_id: str) -> dict[str, Any]:
        # One GET of the response URL, through the handle fal-client builds for the
        # request (its HTTP client carries the key). `SyncClient.result()` would first
        # poll the status again, doubling the calls for every completed job.
        module = _fal_client_module()
        try:
            handle = _client(self._key).get_handle(endpoint, request_id)
            response = handle.client.get(handle.response_url, timeout=module.QUEUE_POLL_TIMEOUT)
            if response.status_code >= 400:
                raise module.FalClientHTTPError(
                    _detail(response), response.status_code, dict(response.headers), response=response
                )
            data = response.json()
        except ValueError:
            raise ProviderError("fal's result is not JSON", permanent=True, code="provider_bad_result") from None
        except Exception as exc:
            raise translate_error(exc, action="the result request") from None
        if not isinstance(data, dict):
            raise ProviderError("fal's result is not a JSON object", permanent=True, code="provider_bad_result")
        return data

    def cancel(self, endpoint: str, request_id: str) -> None:
        module = _fal_client_module()
        try:
            _client(self._key).cancel(endpoint, request_id)
        except module.FalClientHTTPError as exc:
            if exc.status_code == 400:  # ALREADY_COMPLETED: nothing left to stop
                return
            raise translate_error(exc, action="the cancellation") from None
        except Exception as exc:
            raise translate_error(exc, action="the cancellation") from None
