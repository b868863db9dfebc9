"""Refunds and disputes: taking back what a refunded or disputed purchase granted.

Stripe's `charge.refunded` (full or partial) and `charge.dispute.created` events, and an
offline purchase refunded by staff, all end in `purchase_take_back`; staff's refund
button (`purchase_refund`) only asks Stripe, and the credits follow from Stripe's event.
"""

from __future__ import annotations

import math
import uuid

from django.db import transaction
from django.db.models import F
from django.utils import timezone
from django.utils.translation import gettext as _

from credits import ledger
from credits.models import Purchase, format_price
from stefna.errors import DomainError

from . import stripe_api
from .purchases import Outcome, flag_for_staff

Status = Purchase.Status


def purchase_take_back(
    *, purchase_id: uuid.UUID | str, amount_refunded: int | None = None, dispute: str = ""
) -> Outcome:
    """Take back a refunded or disputed purchase's unspent credits, never below zero.

    `amount_refunded` is Stripe's running total for the charge (so events in any order or
    repeated are harmless: only an increase does anything); a dispute takes back
    everything. Credits already spent are recorded on the purchase and flagged for staff.
    A purchase paid after its account was closed was never credited: it changes status
    and takes nothing.
    """
    with transaction.atomic():
        purchase = Purchase.objects.select_for_update().filter(pk=purchase_id).first()
        if purchase is None:
            return Outcome.UNKNOWN
        if purchase.status in (Status.PENDING, Status.EXPIRED):
            flag_for_staff(
                purchase, f"Stripe reports a {'dispute' if dispute else 'refund'} but the purchase was never paid."
            )
            return Outcome.NOT_PAID
        new_status: str
        if dispute:
            target, new_status = purchase.credits, Status.DISPUTED
            refunded = purchase.amount_refunded
        else:
            refunded = min(int(amount_refunded or 0), purchase.price)
            if refunded <= purchase.amount_refunded:
                return Outcome.ALREADY_DONE
            # Credits to remove, in proportion to the money returned (rounded up: a
            # refund never leaves the buyer with credits they got their money back for).
            target = math.ceil(purchase.credits * refunded / purchase.price)
            new_status = Status.REFUNDED if refunded >= purchase.price else purchase.status
            if purchase.status == Status.DISPUTED:
                new_status = Status.DISPUTED
        if purchase.paid_after_account_closed:
            target = 0  # never credited: nothing to take back, nothing spent
        due = max(0, target - purchase.credits_taken_back - purchase.credits_already_spent)
        why = f"dispute {dispute}" if dispute else f"refund of {format_price(refunded, purchase.currency)}"
        taken = ledger.claw_back(purchase=purchase, credits=due, note=why)
        spent = due - taken
        Purchase.objects.filter(pk=purchase.pk).update(
            status=new_status,
            amount_refunded=refunded,
            credits_taken_back=F("credits_taken_back") + taken,
            credits_already_spent=F("credits_already_spent") + spent,
            updated_at=timezone.now(),
        )
        if spent or dispute:
            flag_for_staff(
                purchase,
                f"{why.capitalize()}: took back {taken} credits; {spent} were already spent.",
            )
    return Outcome.TAKEN_BACK


def purchase_refund(*, purchase: Purchase) -> str:
    """Staff's refund (admin action): asks Stripe to refund the payment in full. The
    credits are taken back when Stripe's `charge.refunded` event arrives, by the same
    code as a refund made in Stripe's dashboard. An offline purchase has no money to
    return: its refund is applied at once."""
    if purchase.status not in (Status.PAID, Status.DISPUTED):
        raise DomainError(_("Only a paid purchase can be refunded."))
    if purchase.provider == Purchase.Provider.OFFLINE:
        purchase_take_back(purchase_id=purchase.pk, amount_refunded=purchase.price)
        return "applied"
    if not purchase.stripe_payment_intent_id:
        raise DomainError(_("This purchase has no Stripe payment to refund."))
    refund = stripe_api.refund_create(
        payment_intent_id=purchase.stripe_payment_intent_id, idempotency_key=f"stefna-refund-{purchase.pk}"
    )
    return str(refund.get("id", ""))
