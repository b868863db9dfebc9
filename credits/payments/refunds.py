"""Refunds and disputes: taking back what a refunded or disputed purchase granted, and
giving back what a dispute took when the merchant wins it.

Stripe's `charge.refunded` (full or partial) and `charge.dispute.created` events, and an
offline purchase refunded by staff, all end in `purchase_take_back`; staff's refund
button (`purchase_refund`) only asks Stripe, and the credits follow from Stripe's event.
A dispute that ends in the merchant's favour (`charge.dispute.closed` won, its
`charge.dispute.funds_reinstated`, or an inquiry closed without a chargeback) ends in
`purchase_dispute_won`, the one writer of that return.
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
    everything, and what it took is recorded apart (`credits_taken_by_dispute`,
    `credits_spent_at_dispute`) for `purchase_dispute_won`. Credits already spent are
    recorded on the purchase and flagged for staff. A purchase paid after its account was
    closed was never credited: it changes status and takes nothing.
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
            credits_taken_by_dispute=F("credits_taken_by_dispute") + (taken if dispute else 0),
            credits_spent_at_dispute=F("credits_spent_at_dispute") + (spent if dispute else 0),
            updated_at=timezone.now(),
        )
        if spent or dispute:
            flag_for_staff(
                purchase,
                f"{why.capitalize()}: took back {taken} credits; {spent} were already spent.",
            )
    return Outcome.TAKEN_BACK


def purchase_dispute_won(*, purchase_id: uuid.UUID | str, dispute: str) -> Outcome:
    """The merchant won the dispute (or the inquiry closed without a chargeback): the buyer
    paid after all, so what the dispute took comes back and the purchase is paid again.

    Acts once, on a disputed purchase, under its row lock: a repeated or second event
    (`charge.dispute.closed` and `charge.dispute.funds_reinstated` both come) finds it no
    longer disputed and does nothing. What comes back is exactly the dispute's share
    (`credits_taken_by_dispute` through the ledger; `credits_spent_at_dispute` is no
    longer owed), less what a refund made while the dispute was open would have taken:
    the result is what the refunds alone would have left. It ends `refunded` when those
    refunds returned the whole price, else `paid`.
    """
    with transaction.atomic():
        purchase = Purchase.objects.select_for_update().filter(pk=purchase_id).first()
        if purchase is None:
            return Outcome.UNKNOWN
        if purchase.status != Status.DISPUTED:
            return Outcome.ALREADY_DONE
        before_taken = purchase.credits_taken_back - purchase.credits_taken_by_dispute
        before_spent = purchase.credits_already_spent - purchase.credits_spent_at_dispute
        refunds_share = (
            0
            if purchase.paid_after_account_closed
            else math.ceil(purchase.credits * purchase.amount_refunded / purchase.price)
        )
        # A refund while the dispute was open took nothing (the dispute had taken it all):
        # its share stays taken, credits actually removed first, as `purchase_take_back` does.
        keep = max(0, refunds_share - before_taken - before_spent)
        keep_taken = min(keep, purchase.credits_taken_by_dispute)
        keep_spent = min(keep - keep_taken, purchase.credits_spent_at_dispute)
        give_back = purchase.credits_taken_by_dispute - keep_taken
        forgive = purchase.credits_spent_at_dispute - keep_spent
        ledger.dispute_give_back(purchase=purchase, credits=give_back, note=f"dispute {dispute} won")
        Purchase.objects.filter(pk=purchase.pk).update(
            status=Status.REFUNDED if purchase.amount_refunded >= purchase.price else Status.PAID,
            credits_taken_back=F("credits_taken_back") - give_back,
            credits_already_spent=F("credits_already_spent") - forgive,
            credits_taken_by_dispute=0,
            credits_spent_at_dispute=0,
            updated_at=timezone.now(),
        )
        flag_for_staff(
            purchase,
            f"Dispute {dispute} won: gave back {give_back} credits; {forgive} spent are paid for after all.",
        )
    return Outcome.RESTORED


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
