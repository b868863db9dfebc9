"""`POST /api/stripe/webhook`: verify Stripe's signature, then act on each event once.

Each event id is inserted into `StripeEvent` in the same transaction that acts on it:
a second delivery (Stripe's retry, a duplicate, twenty at once) fails that insert and
does nothing, and a failure while acting rolls the record back too, so Stripe's retry
is processed. Granting is idempotent per purchase on top of that (`purchase_grant`), so
two different events about one session (completed, then async_payment_succeeded) grant
once; giving back what a won dispute took is likewise once per purchase
(`purchase_dispute_won`), whichever of its events comes first. Events about purchases we
do not know are acknowledged and recorded, not retried forever.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction

from credits.exceptions import InvalidWebhook
from credits.models import Purchase, StripeEvent
from credits.selectors import purchase_for_payment

from . import stripe_api
from .purchases import (
    Outcome,
    purchase_apply_session,
    purchase_expire,
    purchase_id_of,
    purchase_reconcile,
)
from .refunds import (
    DISPUTE_ENDINGS_FOR_THE_MERCHANT,
    purchase_dispute_open,
    purchase_dispute_won,
    purchase_refunds_apply,
)

logger = logging.getLogger("credits.payments")

DUPLICATE = "duplicate"


def stripe_webhook_handle(*, payload: bytes, signature: str) -> str:
    """Verify and apply one delivery. Returns the outcome (or "duplicate"); raises
    InvalidWebhook (400) for a forged, stale or malformed one, nothing recorded."""
    if not settings.STRIPE_WEBHOOK_SECRET:
        # Nothing can be verified, so nothing is accepted: a 400 (Stripe's dashboard shows
        # the failed deliveries and retries them once the secret is set), logged for operators.
        logger.error("a Stripe webhook arrived but STRIPE_WEBHOOK_SECRET is not set; refused")
        raise InvalidWebhook("Stripe webhooks are not configured on this site (STRIPE_WEBHOOK_SECRET).")
    try:
        event = stripe_api.construct_event(payload=payload, signature=signature)
    except ValueError as error:
        raise InvalidWebhook("The webhook body is not a Stripe event.") from error
    except stripe_api.SignatureInvalid as error:
        raise InvalidWebhook("The Stripe-Signature header is missing, wrong or too old.") from error
    try:
        event_id, event_type, data = str(event["id"]), str(event["type"]), event["data"]["object"]
    except (KeyError, TypeError) as error:
        raise InvalidWebhook("The webhook body is not a Stripe event.") from error
    if not isinstance(data, dict) or not event_id:
        raise InvalidWebhook("The webhook body is not a Stripe event.")
    with transaction.atomic():
        try:
            with transaction.atomic():
                StripeEvent.objects.create(id=event_id[:255], type=event_type[:100])
        except IntegrityError:
            logger.info("stripe event %s (%s) already handled", event_id, event_type)
            return DUPLICATE
        handler = HANDLERS.get(event_type)
        outcome, purchase_id = handler(data) if handler else (Outcome.IGNORED, None)
        StripeEvent.objects.filter(pk=event_id[:255]).update(outcome=str(outcome), purchase_id=purchase_id)
    logger.info("stripe event %s (%s): %s", event_id, event_type, outcome)
    return str(outcome)


Handled = tuple[Outcome, Any]


def _on_session(session: dict[str, Any]) -> Handled:
    outcome = purchase_apply_session(session=session)
    return outcome, _known(session)


def _on_session_failed(session: dict[str, Any]) -> Handled:
    purchase_id = _known(session)
    if purchase_id is None:
        return Outcome.UNKNOWN, None
    return purchase_expire(purchase_id=purchase_id, note="asynchronous payment failed"), purchase_id


def _known(session: dict[str, Any]) -> Any:
    purchase_id = purchase_id_of(session)
    return purchase_id if purchase_id and Purchase.objects.filter(pk=purchase_id).exists() else None


def _paid_purchase(payment_intent_id: str, metadata: dict[str, Any]) -> Purchase | None:
    """The purchase a charge or dispute is about; a pending one is first reconciled with
    Stripe, because a refund can be delivered before the checkout's completion event. So
    is an expired one: an account deleted after its checkout was paid expired it here, and
    a refund or dispute applied to it unpaid was recorded as "never paid" (nothing
    refunded), then flagged "refund it" by the completion that came after."""
    purchase_id = metadata.get("purchase_id")
    purchase = purchase_for_payment(payment_intent_id=payment_intent_id, purchase_id=purchase_id)
    if purchase is None and payment_intent_id and not purchase_id and stripe_api.stripe_configured():
        # Not paid here yet and the charge carries no metadata: the payment intent names
        # the purchase (the checkout set payment_intent_data.metadata).
        intent = stripe_api.payment_intent_retrieve(payment_intent_id=payment_intent_id)
        purchase = purchase_for_payment(
            payment_intent_id="", purchase_id=(intent.get("metadata") or {}).get("purchase_id")
        )
    if purchase is not None and purchase.status in (Purchase.Status.PENDING, Purchase.Status.EXPIRED):
        purchase_reconcile(purchase=purchase)
    return purchase


def _on_charge_refunded(charge: dict[str, Any]) -> Handled:
    payment_intent_id = str(charge.get("payment_intent") or "")
    purchase = _paid_purchase(payment_intent_id, charge.get("metadata") or {})
    if purchase is None:
        return Outcome.UNKNOWN, None
    outcome = purchase_refunds_apply(
        purchase_id=purchase.pk,
        payment_intent_id=payment_intent_id,
        reported=int(charge.get("amount_refunded") or 0),
    )
    return outcome, purchase.pk


def _on_refund_updated(refund: dict[str, Any]) -> Handled:
    """`charge.refund.updated`: a refund changed, typically to `failed` (the card was closed)
    or `canceled`. Its money stayed with us, so what its `charge.refunded` took comes back.
    Every update is applied the same way, from Stripe's current refunds of the payment, so
    one that arrives before that `charge.refunded`, or twice, changes nothing wrongly."""
    payment_intent_id = str(refund.get("payment_intent") or "")
    if not payment_intent_id:
        # Refunds of Checkout payments always name their payment intent.
        return Outcome.IGNORED, None
    purchase = _paid_purchase(payment_intent_id, refund.get("metadata") or {})
    if purchase is None:
        return Outcome.UNKNOWN, None
    return purchase_refunds_apply(purchase_id=purchase.pk, payment_intent_id=payment_intent_id), purchase.pk


def _on_dispute(dispute: dict[str, Any]) -> Handled:
    purchase = _paid_purchase(str(dispute.get("payment_intent") or ""), dispute.get("metadata") or {})
    if purchase is None:
        return Outcome.UNKNOWN, None
    return purchase_dispute_open(purchase_id=purchase.pk, dispute_id=str(dispute.get("id") or "")), purchase.pk


def _on_dispute_closed(dispute: dict[str, Any]) -> Handled:
    if dispute.get("status") not in DISPUTE_ENDINGS_FOR_THE_MERCHANT:
        return Outcome.DISPUTE_LOST, _disputed_purchase_id(dispute)
    return _dispute_won(dispute)


def _dispute_won(dispute: dict[str, Any]) -> Handled:
    # `charge.dispute.funds_reinstated` comes only when Stripe gives a won dispute's money
    # back, alongside `charge.dispute.closed`: whichever arrives first gives the credits
    # back, the other finds the purchase no longer disputed.
    purchase_id = _disputed_purchase_id(dispute)
    if purchase_id is None:
        return Outcome.UNKNOWN, None
    return purchase_dispute_won(purchase_id=purchase_id, dispute=str(dispute.get("id") or "closed")), purchase_id


def _disputed_purchase_id(dispute: dict[str, Any]) -> Any:
    purchase = _paid_purchase(str(dispute.get("payment_intent") or ""), dispute.get("metadata") or {})
    return purchase.pk if purchase is not None else None


HANDLERS: dict[str, Callable[[dict[str, Any]], Handled]] = {
    "checkout.session.completed": _on_session,
    "checkout.session.async_payment_succeeded": _on_session,
    "checkout.session.expired": _on_session,
    "checkout.session.async_payment_failed": _on_session_failed,
    "charge.refunded": _on_charge_refunded,
    "charge.refund.updated": _on_refund_updated,
    "charge.dispute.created": _on_dispute,
    "charge.dispute.closed": _on_dispute_closed,
    "charge.dispute.funds_reinstated": _dispute_won,
}
