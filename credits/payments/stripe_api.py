"""The Stripe SDK, configured from settings. The only module that talks to Stripe.

Calls return plain dicts (`to_dict()`), so the rest of the code reads a session the
same way whether it came from the API or inside a webhook event.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.conf import settings

from credits.exceptions import PaymentProviderError, PaymentsUnavailable

if TYPE_CHECKING:
    import stripe

# `import stripe` is done where the SDK is used, not here: the SDK (with the httpx and
# requests it loads) was 0.16 s of the project's import under `-X importtime`, and
# `manage.py check` went from 0.78 to 0.70 s of CPU without it (7 Dec). Every web
# process, worker and management command paid it, and most of them never talk to Stripe.


class SignatureInvalid(Exception):
    """A webhook's Stripe-Signature is missing, wrong or too old (the SDK's
    SignatureVerificationError, so callers need not import the SDK)."""


def stripe_configured() -> bool:
    return bool(settings.STRIPE_SECRET_KEY)


def _client() -> stripe.StripeClient:
    import stripe

    if not stripe_configured():
        raise PaymentsUnavailable()
    base_addresses: dict[str, str] = {"api": settings.STRIPE_API_BASE} if settings.STRIPE_API_BASE else {}
    return stripe.StripeClient(
        settings.STRIPE_SECRET_KEY,
        base_addresses=base_addresses,  # type: ignore[arg-type]
        # The SDK retries network errors and 409/5xx with the same idempotency key,
        # so a retry never creates a second session or refund.
        max_network_retries=2,
        http_client=stripe.RequestsClient(timeout=settings.STRIPE_TIMEOUT_SECONDS),
    )


def _call(function: Any, *args: Any, **kwargs: Any) -> dict[str, Any]:
    import stripe

    try:
        return function(*args, **kwargs).to_dict()
    except stripe.StripeError as error:
        raise PaymentProviderError(detail={"stripe_error": type(error).__name__}) from error


def checkout_session_create(*, params: dict[str, Any], idempotency_key: str) -> dict[str, Any]:
    return _call(_client().v1.checkout.sessions.create, params=params, options={"idempotency_key": idempotency_key})


def checkout_session_retrieve(*, session_id: str) -> dict[str, Any]:
    return _call(_client().v1.checkout.sessions.retrieve, session_id)


def checkout_session_expire(*, session_id: str, idempotency_key: str) -> dict[str, Any]:
    """Close an open Checkout Session so it can no longer be paid; Stripe refuses one that
    is not open (PaymentProviderError)."""
    return _call(_client().v1.checkout.sessions.expire, session_id, options={"idempotency_key": idempotency_key})


def payment_intent_retrieve(*, payment_intent_id: str) -> dict[str, Any]:
    """The payment intent with its latest charge expanded (the receipt URL lives there)."""
    return _call(_client().v1.payment_intents.retrieve, payment_intent_id, params={"expand": ["latest_charge"]})


def dispute_retrieve(*, dispute_id: str) -> dict[str, Any]:
    return _call(_client().v1.disputes.retrieve, dispute_id)


def refund_create(*, payment_intent_id: str, idempotency_key: str) -> dict[str, Any]:
    return _call(
        _client().v1.refunds.create,
        params={"payment_intent": payment_intent_id},
        options={"idempotency_key": idempotency_key},
    )


# A refund in these states returned nothing: it failed (the card was closed, say) or was
# canceled before it went out, and its amount is back in our Stripe balance.
REFUND_STATES_RETURNING_NOTHING = frozenset({"failed", "canceled"})


def amount_refunded(*, payment_intent_id: str) -> int:
    """What Stripe's refunds of the payment have returned or are returning now (pending and
    succeeded ones), in the minor unit: the sum over the refunds list, not the charge's
    `amount_refunded`, so a refund that failed or was canceled never counts, however
    Stripe's charge totals treat it."""
    import stripe

    try:
        refunds = _client().v1.refunds.list(params={"payment_intent": payment_intent_id, "limit": 100})
        listed = [refund.to_dict() for refund in refunds.auto_paging_iter()]
    except stripe.StripeError as error:
        raise PaymentProviderError(detail={"stripe_error": type(error).__name__}) from error
    return sum(
        int(refund.get("amount") or 0)
        for refund in listed
        if refund.get("status") not in REFUND_STATES_RETURNING_NOTHING
    )


def construct_event(*, payload: bytes, signature: str) -> dict[str, Any]:
    """Verify a webhook's `Stripe-Signature` (the SDK's scheme and tolerance) and parse it.

    Raises ValueError for a body that is not JSON and SignatureInvalid for a bad, missing
    or too old signature.
    """
    import stripe

    try:
        event = stripe.Webhook.construct_event(payload, signature, settings.STRIPE_WEBHOOK_SECRET)
    except stripe.SignatureVerificationError as error:
        raise SignatureInvalid(str(error)) from error
    return event.to_dict()
