"""fal's completion webhook: `POST /api/fal/webhook`.

fal signs each delivery with Ed25519. The signed message is four lines:

    <X-Fal-Webhook-Request-Id>\\n<X-Fal-Webhook-User-Id>\\n<X-Fal-Webhook-Timestamp>\\n<hex SHA-256 of the raw body>

and `X-Fal-Webhook-Signature` is the signature in hex. The public keys come from
`FAL_WEBHOOK_JWKS_URL` as a JWKS (`kty` OKP, `crv` Ed25519, `x` base64url), cached
in Django's cache for a day. A signature no cached key verifies triggers one refetch
(at most every five minutes, so forged calls can't make us hammer fal), in case fal
rotated its keys. A timestamp more than five minutes off is refused, which bounds
replays. Forged or stale calls get 401 and change nothing.

The endpoint is idempotent per request id: the services move an attempt only out of
an in-flight state, so a repeated delivery answers 200 and does nothing.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import time
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from django.conf import settings
from django.core.cache import cache
from django.http import HttpRequest
from ninja import Router

from stefna.api_support import errors
from stefna.errors import DomainError, InvalidInput, Unauthorized

from . import services

logger = logging.getLogger("generation.webhooks")

router = Router(tags=["fal"])

MAX_SKEW_SECONDS = 5 * 60
JWKS_CACHE_KEY = "fal-webhook-jwks"
JWKS_CACHE_SECONDS = 24 * 60 * 60
JWKS_REFRESH_KEY = "fal-webhook-jwks-refreshed"
JWKS_REFRESH_SECONDS = 5 * 60
HEADERS = ("X-Fal-Webhook-Request-Id", "X-Fal-Webhook-User-Id", "X-Fal-Webhook-Timestamp", "X-Fal-Webhook-Signature")


class KeysUnavailable(DomainError):
    code = "service_unavailable"  # as every other 503 of the API (stefna/unavailable.py)
    status = 503
    default_message = "fal's webhook keys could not be fetched; please deliver again later."


def _fetch_keys() -> list[str]:
    import httpx

    try:
        response = httpx.get(settings.FAL_WEBHOOK_JWKS_URL, timeout=10)
        response.raise_for_status()
        keys = response.json().get("keys", [])
    except (httpx.HTTPError, ValueError, AttributeError) as exc:
        logger.error("could not fetch fal's webhook keys: %s", type(exc).__name__)
        raise KeysUnavailable() from None
    found = [
        key["x"]
        for key in keys
        if isinstance(key, dict) and key.get("kty") == "OKP" and key.get("crv") == "Ed25519" and key.get("x")
    ]
    cache.set(JWKS_CACHE_KEY, found, JWKS_CACHE_SECONDS)
    return found


def _public_keys(*, refresh: bool = False) -> list[Ed25519PublicKey]:
    encoded = None if refresh else cache.get(JWKS_CACHE_KEY)
    if encoded is None:
        encoded = _fetch_keys()
    keys = []
    for x in encoded:
        try:
            keys.append(Ed25519PublicKey.from_public_bytes(base64.urlsafe_b64decode(x + "=" * (-len(x) % 4))))
        except ValueError:
            logger.warning("ignoring a malformed key in fal's JWKS")
    return keys


def verify_signature(headers: Any, body: bytes, *, now: float | None = None) -> str:
    """Check a delivery's signature; return its request id or raise Unauthorized."""
    values = {name: (headers.get(name) or "").strip() for name in HEADERS}
    missing = [name for name, value in values.items() if not value]
    if missing:
        raise Unauthorized("This call is not signed by fal.", detail={"reason": "missing_headers", "missing": missing})
    request_id, user_id, timestamp, signature_hex = (values[name] for name in HEADERS)
    try:
        stamp = int(timestamp)
    except ValueError:
        raise Unauthorized("The webhook timestamp is not a number.", detail={"reason": "bad_timestamp"}) from None
    skew = abs((now if now is not None else time.time()) - stamp)
    if skew > MAX_SKEW_SECONDS:
        raise Unauthorized(
            "The webhook timestamp is more than 5 minutes off; refusing a stale or replayed call.",
            detail={"reason": "stale_timestamp"},
        )
    try:
        signature = bytes.fromhex(signature_hex)
    except ValueError:
        raise Unauthorized("The webhook signature is not hex.", detail={"reason": "bad_signature"}) from None
    message = "\n".join([request_id, user_id, timestamp, hashlib.sha256(body).hexdigest()]).encode()
    if _verifies(_public_keys(), signature, message):
        return request_id
    # Maybe fal rotated its keys: refetch, but not more than once every few minutes.
    if cache.add(JWKS_REFRESH_KEY, True, JWKS_REFRESH_SECONDS) and _verifies(
        _public_keys(refresh=True), signature, message
    ):
        return request_id
    logger.warning("fal webhook for %s: signature does not verify", request_id[:100])
    raise Unauthorized("The webhook signature does not verify.", detail={"reason": "bad_signature"})


def _verifies(keys: list[Ed25519PublicKey], signature: bytes, message: bytes) -> bool:
    for key in keys:
        try:
            key.verify(signature, message)
            return True
        except InvalidSignature:
            continue
    return False


@router.post(
    "/webhook",
    auth=None,
    summary="fal completion webhook (signed by fal)",
    response={200: dict, **errors(401, 422, 503)},
)
def fal_webhook(request: HttpRequest) -> dict[str, str]:
    body = request.body
    request_id = verify_signature(request.headers, body)
    try:
        data = json.loads(body)
    except ValueError:
        raise InvalidInput("The webhook body is not JSON.") from None
    if not isinstance(data, dict) or data.get("request_id", request_id) != request_id:
        raise InvalidInput("The webhook body does not match its signed request id.")
    outcome = services.generation_webhook(
        request_id=request_id,
        status=str(data.get("status") or ""),
        payload=data.get("payload"),
        error=data.get("error"),
    )
    logger.info("fal webhook for %s: %s", request_id, outcome)
    return {"status": outcome}
