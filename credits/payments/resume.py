"""Continuing a pending purchase: the account page's "Continue to payment".

A buyer who left Stripe Checkout (or whose confirmation is late) must never be led to pay
twice. So only a checkout that can still take this purchase's money is reopened: Stripe's
own open session (Stripe never takes a completed session's payment twice), or the offline
test checkout's page. A session Stripe reports paid or expired is applied through the
same writers the webhook and the return page use (`purchase_apply_session` →
`purchase_grant` / `purchase_expire`), never a second one; they lock the purchase and
decide from its state then, so a webhook that settled it while Stripe was being asked
wins, and this finds it done.

No lock is held while Stripe is asked: a row lock would make the webhook for this very
purchase wait on our network call, and on SQLite (transactions take the write lock when
they start) every write of the whole site would.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING

from django.conf import settings
from django.urls import reverse
from django.utils.translation import gettext as _

from credits.exceptions import CheckoutNotResumable, PaymentsUnavailable
from credits.models import Purchase
from stefna.errors import NotFound

from . import stripe_api
from .purchases import Outcome, purchase_apply_session

if TYPE_CHECKING:
    from stefna.accounts.models import User


@dataclass(frozen=True)
class Continuation:
    purchase: Purchase
    # Where the buyer pays (Stripe's open session, or the test checkout's page); empty
    # when there is nothing left to pay and the purchase's own page shows how it stands.
    checkout_url: str = ""
    outcome: Outcome | None = None


def purchase_continue(*, user: User, purchase_id: uuid.UUID | str) -> Continuation:
    """Take the buyer back to a pending purchase's checkout, or settle it if it ended.

    Raises NotFound for a purchase that is not `user`'s, PaymentProviderError when Stripe
    does not answer (nothing changed), PaymentsUnavailable when the test checkout is off,
    CheckoutNotResumable for a Stripe purchase that never got its session.
    """
    purchase = Purchase.objects.filter(pk=purchase_id, user=user).select_related("pack").first()
    if purchase is None:
        raise NotFound(_("No such purchase."))
    if purchase.status != Purchase.Status.PENDING:
        return Continuation(purchase=purchase)
    if purchase.provider == Purchase.Provider.OFFLINE:
        if not settings.OFFLINE_CHECKOUT:
            raise PaymentsUnavailable(_("The test checkout is switched off on this site."))
        return Continuation(
            purchase=purchase,
            checkout_url=reverse("credits:test_checkout", args=[purchase.pk]),
        )
    if not purchase.stripe_session_id:
        raise CheckoutNotResumable()
    # Unlocked (see the module docstring); bounded by STRIPE_TIMEOUT_SECONDS, two retries.
    session = stripe_api.checkout_session_retrieve(session_id=purchase.stripe_session_id)
    if session.get("status") == "open" and session.get("url"):
        return Continuation(purchase=purchase, checkout_url=str(session["url"]))
    # Complete and paid → granted; expired → expired; complete but not yet paid (a
    # delayed payment method) stays pending for its webhook. All through the writers
    # every other path uses, which lock the purchase and act only if it is still open.
    outcome = purchase_apply_session(session=session)
    purchase.refresh_from_db()
    return Continuation(purchase=purchase, outcome=outcome)
