"""Refunds and disputes: taking back what a refunded or disputed purchase granted, and
giving back what a dispute took when the merchant wins it.

Stripe's refund events (`charge.refunded`, full or partial, and `charge.refund.updated`)
end in `purchase_refunds_apply`, which asks Stripe what the payment's refunds return now
and takes credits back when that grew (`purchase_take_back`, where `charge.dispute.created`
(through `purchase_dispute_open`) and an offline purchase refunded by staff also end) or
gives them back when it shrank (a refund failed or was canceled: `_refund_reverse`, the
one writer of that return). Staff's refund button (`purchase_refund`) only asks Stripe,
and the credits follow from its event. A dispute that ends in the merchant's favour
(`charge.dispute.closed` won, its `charge.dispute.funds_reinstated`, or an inquiry closed
without a chargeback) ends in `purchase_dispute_won`, the one writer of that return.
Bought credits a take-back found reserved for generations still running are taken when
those generations are refunded (`generation_charge_refund`, which every generation
refund goes through).
"""

from __future__ import annotations

import logging
import math
import uuid
from typing import TYPE_CHECKING

from django.db import transaction
from django.db.models import F
from django.db.models.functions import Least
from django.utils import timezone
from django.utils.translation import gettext as _

from credits import ledger, selectors
from credits.models import CreditEntry, Purchase, format_price
from stefna.errors import DomainError

from . import stripe_api
from .purchases import Outcome, flag_for_staff, flag_settled

if TYPE_CHECKING:
    from generation.models import Generation
    from stefna.accounts.models import User

logger = logging.getLogger("credits.payments")

Status = Purchase.Status


def purchase_take_back(
    *, purchase_id: uuid.UUID | str, amount_refunded: int | None = None, dispute: str = ""
) -> Outcome:
    """Take back a refunded or disputed purchase's unspent credits, never below zero.

    `amount_refunded` is what the payment's refunds return in all (so events in any order or
    repeated are harmless: only an increase does anything; a decrease, a refund that failed,
    is `purchase_refunds_apply`'s to give back); a dispute takes back
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
            # A dispute takes back everything, as if the whole price had been returned.
            target, new_status = _credits_owed_back(purchase, purchase.price), Status.DISPUTED
            refunded = purchase.amount_refunded
        else:
            refunded = min(int(amount_refunded or 0), purchase.price)
            if refunded <= purchase.amount_refunded:
                return Outcome.ALREADY_DONE
            target = _credits_owed_back(purchase, refunded)
            new_status = Status.REFUNDED if refunded >= purchase.price else purchase.status
            if purchase.status == Status.DISPUTED:
                new_status = Status.DISPUTED
        due = purchase.credits_left_to_settle(target)
        why = f"dispute {dispute}" if dispute else f"refund of {format_price(refunded, purchase.currency)}"
        taken = ledger.claw_back(purchase=purchase, credits=due, note=why)
        spent = due - taken
        in_flight = purchase.credits_in_flight
        if spent and purchase.user_id is not None:
            # Read under the wallet lock `claw_back` took (held until this commits): of the
            # credits "spent", those only reserved for generations still running come back
            # to this purchase if those generations are refunded (`generation_charge_refund`).
            reserved = selectors.purchased_credits_reserved(user_id=purchase.user_id)
            in_flight = min(purchase.credits_already_spent + spent, reserved)
        now = timezone.now()
        Purchase.objects.filter(pk=purchase.pk).update(
            status=new_status,
            amount_refunded=refunded,
            credits_taken_back=F("credits_taken_back") + taken,
            credits_already_spent=F("credits_already_spent") + spent,
            credits_taken_by_dispute=F("credits_taken_by_dispute") + (taken if dispute else 0),
            credits_spent_at_dispute=F("credits_spent_at_dispute") + (spent if dispute else 0),
            credits_in_flight=in_flight,
            taken_back_at=now if due else F("taken_back_at"),
            updated_at=now,
        )
        if new_status == Status.REFUNDED and purchase.paid_after_account_closed:
            # The refund the grant flagged it for ("Refund it") is made: nothing owed.
            flag_settled(purchase, "Refunded in full at Stripe: nothing is owed.")
        if spent or dispute:
            running = f" ({in_flight} reserved for generations still running: taken back if they fail)"
            flag_for_staff(
                purchase,
                f"{why.capitalize()}: took back {taken} credits; {spent} were already spent"
                f"{running if in_flight else ''}.",
            )
    return Outcome.TAKEN_BACK


def _credits_owed_back(purchase: Purchase, returned: int) -> int:
    """The credits a purchase owes back when `returned` of its price has gone back to the
    buyer: in proportion, rounded up (a refund never leaves the buyer with credits they got
    their money back for); none for a purchase paid after its account was closed, which
    was never credited (nothing to take back, nothing spent)."""
    if purchase.paid_after_account_closed:
        return 0
    return math.ceil(purchase.credits * returned / purchase.price)


def purchase_refunds_apply(
    *, purchase_id: uuid.UUID | str, payment_intent_id: str = "", reported: int | None = None
) -> Outcome:
    """Bring a purchase in line with what Stripe's refunds of its payment return now: more
    than recorded takes credits back (`purchase_take_back`); less, because a refund failed
    or was canceled and its money stayed with us, gives back what it took (`_refund_reverse`).

    Stripe is asked while the purchase's row is locked, so the refund events of one
    purchase (repeated, out of order, or at once) queue and each acts on Stripe's latest
    word, never on the figure an older event carried: a `charge.refunded` delivered after
    its refund failed finds nothing left to take. Only when no payment intent is known is
    `reported` (the event's own total) used. Stripe unreachable: PaymentProviderError, the
    webhook answers an error and Stripe delivers the event again later.
    """
    with transaction.atomic():
        purchase = Purchase.objects.select_for_update().filter(pk=purchase_id).first()
        if purchase is None:
            return Outcome.UNKNOWN
        payment_intent_id = payment_intent_id or purchase.stripe_payment_intent_id
        if payment_intent_id:
            refunded = stripe_api.amount_refunded(payment_intent_id=payment_intent_id)
        elif reported is not None:
            refunded = reported
        else:
            return Outcome.IGNORED
        refunded = min(refunded, purchase.price)
        if refunded < purchase.amount_refunded:
            return _refund_reverse(purchase, refunded=refunded)
        if refunded == purchase.amount_refunded:
            return Outcome.ALREADY_DONE
        return purchase_take_back(purchase_id=purchase.pk, amount_refunded=refunded)


def _refund_reverse(purchase: Purchase, *, refunded: int) -> Outcome:
    """Stripe's refunds now return `refunded`, less than recorded: a refund failed or was
    canceled. The purchase ends as if only the refunds still standing had been made: the
    credits taken beyond their share come back (`ledger.refund_reversed_give_back`, the one
    writer of that return) and the spent credits beyond it are no longer owed (forgiven
    first: they were never taken). It reads `paid` again (`refunded` only if the refunds
    standing still return the whole price): the money is ours and the credits are the
    buyer's, and `paid` is the state that says so. While a dispute is open it keeps every
    credit: what the failed refund had taken becomes the dispute's share instead, given
    back if the dispute is won (`purchase_dispute_won`), kept if it is lost. Staff are told
    either way: the buyer did not get the money back. Caller holds the row lock.
    """
    before = purchase.amount_refunded
    share = _credits_owed_back(purchase, refunded)
    disputed = purchase.status == Status.DISPUTED
    taken, spent = purchase.credits_taken_back, purchase.credits_already_spent
    if disputed:
        # Only the part the refunds took before the dispute opened is theirs to undo.
        taken -= purchase.credits_taken_by_dispute
        spent -= purchase.credits_spent_at_dispute
    excess = max(0, taken + spent - share)
    forgive = min(excess, spent)
    give_back = min(excess - forgive, taken)
    now = timezone.now()
    money = format_price(before - refunded, purchase.currency)
    if disputed:
        Purchase.objects.filter(pk=purchase.pk).update(
            amount_refunded=refunded,
            credits_taken_by_dispute=F("credits_taken_by_dispute") + give_back,
            credits_spent_at_dispute=F("credits_spent_at_dispute") + forgive,
            updated_at=now,
        )
        result = f"the open dispute now holds those {give_back + forgive} credits (given back if it is won)"
    else:
        ledger.refund_reversed_give_back(
            purchase=purchase, credits=give_back, note=f"refund of {money} failed or was canceled"
        )
        Purchase.objects.filter(pk=purchase.pk).update(
            status=Status.REFUNDED if refunded >= purchase.price else Status.PAID,
            amount_refunded=refunded,
            credits_taken_back=F("credits_taken_back") - give_back,
            credits_already_spent=F("credits_already_spent") - forgive,
            credits_in_flight=Least(F("credits_in_flight"), F("credits_already_spent") - forgive),
            updated_at=now,
        )
        result = f"gave back {give_back} credits; {forgive} spent are paid for after all"
    flag_for_staff(
        purchase,
        f"A refund of {money} failed or was canceled at Stripe: the buyer did not get that money back. "
        f"Refunds now return {format_price(refunded, purchase.currency)}; {result}.",
    )
    return Outcome.REFUND_REVERSED


def generation_charge_refund(*, generation: Generation, note: str = "", by: User | None = None) -> CreditEntry | None:
    """Refund a failed or canceled generation's charge (`ledger.refund`, once), and hand the
    bought credits it returns to refunded or disputed purchases owed them.

    A refund or dispute that arrived while bought credits were reserved for generations
    still running counted them as spent (`credits_in_flight`). When such a generation
    fails or is canceled its bought credits come back: they belong to that purchase, whose
    buyer has the money back, so they are taken back at once (the refund and the clawback
    in one transaction, so the buyer never holds them). Only charges reserved before the
    take-back qualify: credits bought or granted since are the buyer's.

    Lock order as everywhere: the purchase rows, then (inside the ledger) the wallet.
    """
    with transaction.atomic():
        # Every purchase that may owe, locked, then filtered: a lock on `credits_in_flight > 0`
        # would skip a row whose take-back is committing right now (its committed version
        # does not match yet), and the returned credits would stay with the buyer.
        paid = (
            Purchase.objects.select_for_update()
            .filter(user_id=generation.user_id, status__in=(Status.PAID, Status.REFUNDED, Status.DISPUTED))
            .order_by("pk")
        )
        owed = sorted(
            (purchase for purchase in paid if purchase.credits_in_flight),
            key=lambda purchase: (purchase.taken_back_at, str(purchase.pk)),
        )
        entry = ledger.refund(generation=generation, note=note, by=by)
        if entry is None or entry.purchased_amount <= 0 or not owed:
            return entry
        assert entry.charge_number is not None  # noqa: S101  (a refund always names its charge)
        reserved_at = selectors.charge_reserved_at(generation_id=generation.pk, charge_number=entry.charge_number)
        returned = entry.purchased_amount
        for purchase in owed:
            if returned <= 0:
                break
            if reserved_at is None or purchase.taken_back_at is None or reserved_at >= purchase.taken_back_at:
                continue
            taken = ledger.claw_back(
                purchase=purchase,
                credits=min(returned, purchase.credits_in_flight),
                note=f"generation {generation.pk} refunded after this purchase's take-back",
            )
            returned -= taken
            # Spent credits turn into taken ones. While disputed, the dispute's share first:
            # if it is won, everything it took comes back (`purchase_dispute_won`).
            disputed = min(taken, purchase.credits_spent_at_dispute) if purchase.status == Status.DISPUTED else 0
            Purchase.objects.filter(pk=purchase.pk).update(
                credits_taken_back=F("credits_taken_back") + taken,
                credits_already_spent=F("credits_already_spent") - taken,
                credits_in_flight=F("credits_in_flight") - taken,
                credits_taken_by_dispute=F("credits_taken_by_dispute") + disputed,
                credits_spent_at_dispute=F("credits_spent_at_dispute") - disputed,
                updated_at=timezone.now(),
            )
            flag_for_staff(purchase, f"Took back {taken} more credits: generation {generation.pk} was refunded.")
    return entry


# How a dispute ends in the merchant's favour: won, or an inquiry (no money was withdrawn)
# closed without becoming a chargeback. `lost` leaves the dispute's take as it is: the
# cardholder got the money back. A closed inquiry's purchase refunded in full meanwhile
# stays without credits (`purchase_dispute_won` keeps the refunds' share).
DISPUTE_ENDINGS_FOR_THE_MERCHANT = frozenset({"won", "warning_closed"})


def purchase_dispute_open(*, purchase_id: uuid.UUID | str, dispute_id: str) -> Outcome:
    """A dispute opened (`charge.dispute.created`): take back what it takes
    (`purchase_take_back`), unless Stripe says it has already ended in our favour. Stripe
    does not deliver in order: an opening that comes after the favourable ending, which
    found nothing disputed and gave nothing back, must not keep the credits from a buyer
    whose payment we kept.

    Stripe is asked while the purchase's row is locked, as for refund events
    (`purchase_refunds_apply`): unlocked, an ending handled while Stripe's answer (still
    open) was on its way found nothing disputed, and the opening then took the credits
    for good. Locked, that ending waits for this and gives back what it took.
    """
    with transaction.atomic():
        if Purchase.objects.select_for_update().filter(pk=purchase_id).first() is None:
            return Outcome.UNKNOWN
        if _already_ended_for_the_merchant(dispute_id):
            return Outcome.ALREADY_DONE
        return purchase_take_back(purchase_id=purchase_id, dispute=dispute_id or "opened")


def _already_ended_for_the_merchant(dispute_id: str) -> bool:
    """Whether Stripe says the dispute has already ended in our favour. When Stripe cannot
    say (unreachable, an unknown id), the opening is acted on, as it almost always should be."""
    if not dispute_id:
        return False
    try:
        current = stripe_api.dispute_retrieve(dispute_id=dispute_id)
    except DomainError:
        logger.warning("dispute %s: could not ask Stripe how it stands; taking back", dispute_id, exc_info=True)
        return False
    return current.get("status") in DISPUTE_ENDINGS_FOR_THE_MERCHANT


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
            # What the dispute found reserved is forgiven with the rest of its share.
            credits_in_flight=Least(F("credits_in_flight"), F("credits_already_spent") - forgive),
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
