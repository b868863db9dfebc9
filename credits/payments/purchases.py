"""Purchases: the services that write `Purchase` rows.

Money has one writer: `purchase_grant` is the only function that marks a purchase paid
and credits it, whether the news came from Stripe's webhook, from reconciliation
(the success page or the upkeep asking Stripe), or from the offline test checkout. It
locks the purchase row and acts only on a pending (or expired) one, so any number of
calls, in any order or at once, grant once; the ledger's unique constraint (one
`purchase` entry per purchase) backs that up in the database.

Lock order everywhere: the purchase row, then (inside the ledger) the wallet row.
"""

from __future__ import annotations

import enum
import logging
import uuid
from functools import partial
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.mail import send_mail
from django.db import transaction
from django.tasks import task
from django.urls import reverse
from django.utils import formats, timezone, translation
from django.utils.translation import gettext as _

from credits import ledger
from credits.exceptions import AccountClosed, PaymentsUnavailable
from credits.models import CreditPack, Purchase, format_price
from credits.selectors import purchases_to_reconcile
from stefna import mail, ratelimit
from stefna.errors import DomainError, NotFound
from stefna.i18n import language_for_user

from . import stripe_api

if TYPE_CHECKING:
    from stefna.accounts.models import User

logger = logging.getLogger("credits.payments")

Status = Purchase.Status


class Outcome(enum.StrEnum):
    GRANTED = "granted"
    ALREADY_DONE = "already_done"
    MISMATCH = "amount_mismatch"
    UNKNOWN = "unknown_purchase"
    NOT_PAID = "not_paid"
    EXPIRED = "expired"
    TAKEN_BACK = "taken_back"
    ACCOUNT_CLOSED = "account_closed"
    RESTORED = "restored"
    REFUND_REVERSED = "refund_reversed"
    DISPUTE_LOST = "dispute_lost"
    IGNORED = "ignored"


def checkout_available() -> bool:
    return stripe_api.stripe_configured() or settings.OFFLINE_CHECKOUT


def purchase_start(*, user: User, pack_slug: str, site_url: str) -> Purchase:
    """Start buying a pack: a pending Purchase plus a Stripe Checkout Session (or, with
    OFFLINE_CHECKOUT and no Stripe key, the local test checkout). Returns the purchase
    with its `checkout_url`.

    The price comes from the pack row, never from the client. The purchase is committed
    before Stripe is called, so the session can name it (client_reference_id, metadata)
    and a crash in between leaves a pending purchase the upkeep expires, not a session
    nobody knows. The idempotency key is the purchase id: the SDK's retries reuse it.
    """
    # A NUL can't be in a slug, and PostgreSQL refuses it in a query (a 500): no such pack.
    pack = None if "\x00" in pack_slug else CreditPack.objects.filter(slug=pack_slug, active=True).first()
    if pack is not None and not pack.price_chargeable:
        # Saved before the admin refused such prices: Stripe would refuse the session, so
        # it is not for sale (and not listed) until staff fix the price. Nothing is created.
        logger.error("pack %s: %s %s is not a price Stripe can charge; refused", pack.slug, pack.price, pack.currency)
        pack = None
    if pack is None:
        raise NotFound(
            _("No credit pack called “%(slug)s” is for sale.") % {"slug": pack_slug[:40].replace("\x00", "")}
        )
    if not checkout_available():
        raise PaymentsUnavailable()
    # Each checkout is a Stripe session and a purchase row: a loop must not make thousands.
    limit, window = settings.RATE_LIMIT_CHECKOUTS
    ratelimit.hit(f"checkout:{user.pk}", limit=limit, window=window)
    offline = not stripe_api.stripe_configured()
    with transaction.atomic():
        # The account's lock, as a charge takes it: a deletion that committed after this
        # request signed in has blanked the email on every purchase and expired the open
        # ones, so a purchase made after it would keep the email and could still be paid.
        if not ledger.lock_open_account(user.pk):
            raise AccountClosed()
        purchase = Purchase.objects.create(
            user=user,
            email=user.email,
            pack=pack,
            credits=pack.credits,
            price=pack.price,
            currency=pack.currency,
            provider=Purchase.Provider.OFFLINE if offline else Purchase.Provider.STRIPE,
        )
    site_url = site_url.rstrip("/")
    if offline:
        checkout_url = site_url + reverse("credits:test_checkout", args=[purchase.pk])
        Purchase.objects.filter(pk=purchase.pk).update(checkout_url=checkout_url)
        purchase.checkout_url = checkout_url
        return purchase
    done_url = site_url + reverse("credits:purchase_done", args=[purchase.pk])
    try:
        session = stripe_api.checkout_session_create(
            params=_session_params(
                purchase=purchase,
                pack=pack,
                done_url=done_url,
                cancel_url=site_url + reverse("credits:buy") + "?checkout=canceled",
            ),
            idempotency_key=f"stefna-checkout-{purchase.pk}",
        )
    except DomainError:
        # Nothing was charged: no session exists. The purchase ends expired, not pending forever.
        purchase_expire(purchase_id=purchase.pk, note="the checkout session could not be created")
        raise
    # Only onto a purchase still pending: an account deleted while Stripe answered has
    # expired this one and blanked its addresses, but could not expire at Stripe a session
    # it did not know yet (the buyer's email filled in, able to take money): done here.
    stored = Purchase.objects.filter(pk=purchase.pk, status=Purchase.Status.PENDING).update(
        stripe_session_id=session["id"], checkout_url=session["url"]
    )
    if not stored:
        _checkout_sessions_expire(sessions=[(purchase.pk, session["id"])])
        raise AccountClosed()
    purchase.stripe_session_id, purchase.checkout_url = session["id"], session["url"]
    return purchase


def _session_params(*, purchase: Purchase, pack: CreditPack, done_url: str, cancel_url: str) -> dict[str, Any]:
    names = {"purchase_id": str(purchase.pk), "pack": pack.slug}
    return {
        "mode": "payment",
        "line_items": [
            {
                "quantity": 1,
                "price_data": {
                    "currency": pack.currency,
                    "unit_amount": pack.price,
                    # In the buyer's language (the request's), as the pages name the pack.
                    "product_data": {
                        "name": _("%(site)s: %(credits)s credits (%(pack)s)")
                        % {"site": settings.SITE_NAME, "credits": pack.credits, "pack": pack.display_name}
                    },
                },
            }
        ],
        "client_reference_id": str(purchase.pk),
        "metadata": names,
        # The payment intent (and so its charges, refunds and disputes) names the purchase too.
        "payment_intent_data": {"metadata": names},
        "customer_email": purchase.email or None,
        # Stripe's own page in the buyer's language too (both of ours are Checkout locales),
        # not the browser's, which may differ from the language they chose here.
        "locale": (translation.get_language() or settings.LANGUAGE_CODE).split("-")[0],
        "success_url": done_url + "?session_id={CHECKOUT_SESSION_ID}",
        "cancel_url": cancel_url,
    }


def purchase_grant(
    *,
    purchase_id: uuid.UUID | str,
    amount: int,
    currency: str,
    payment_intent_id: str = "",
    session_id: str = "",
) -> Outcome:
    """Mark a purchase paid and credit it, once. THE grant function (see the module docstring).

    `amount` and `currency` are what was actually paid; when they differ from the
    purchase (or the session is not the purchase's), nothing is granted and the purchase
    is flagged for staff. A purchase already paid, refunded or disputed is left alone.

    Paid for an account that is closed (deleted, or deactivated by staff): the money was
    taken but no one can use credits there, so the purchase is recorded paid without
    crediting it (`paid_after_account_closed`) and flagged for staff to refund.
    """
    with transaction.atomic():
        purchase = (
            Purchase.objects.select_for_update(of=("self",)).filter(pk=purchase_id).select_related("pack").first()
        )
        if purchase is None:
            return Outcome.UNKNOWN
        if purchase.status not in (Status.PENDING, Status.EXPIRED):
            return Outcome.ALREADY_DONE
        problem = mismatch = None
        if session_id and purchase.stripe_session_id and session_id != purchase.stripe_session_id:
            problem = f"paid session {session_id} is not this purchase's session {purchase.stripe_session_id}"
            mismatch = Purchase.mismatch_key(session_id=session_id)
        elif amount != purchase.price or (currency or "").lower() != purchase.currency:
            problem = (
                f"paid {amount} {(currency or '?').upper()} but the purchase costs "
                f"{purchase.price} {purchase.currency.upper()}"
            )
            mismatch = Purchase.mismatch_key(amount=amount, currency=currency or "")
        if problem and mismatch:
            # It stays pending (staff refund it or grant by hand), so reconciliation and the
            # success page meet it again: flag each mismatch once, or "mark as reviewed"
            # would not stick. Recorded as a fact, not found in the note's words.
            if purchase.mismatch_flagged != mismatch:
                Purchase.objects.filter(pk=purchase.pk).update(mismatch_flagged=mismatch)
                flag_for_staff(purchase, f"Not granted: {problem}.")
                logger.error("purchase %s: %s; nothing granted", purchase.pk, problem)
            return Outcome.MISMATCH
        # Read, not locked: `account_delete` locks the user, then (expiring pending
        # purchases) this row, so locking the user here would be the reverse order. The
        # two still serialise on this row: a deletion that committed first is seen
        # here; one that comes after finds the purchase paid and credited, as it finds
        # any credits the account holds. Read in a query of its own, after the row lock:
        # on PostgreSQL the locking query above, had it waited for a deletion's commit,
        # returns this row as the deletion left it but the joined user as it was when
        # the query began, still active, and the closed account would be credited.
        account_closed = (
            purchase.user_id is None
            or not get_user_model().objects.filter(pk=purchase.user_id, is_active=True).exists()
        )
        now = timezone.now()
        Purchase.objects.filter(pk=purchase.pk).update(
            status=Status.PAID,
            paid_at=now,
            stripe_payment_intent_id=payment_intent_id or purchase.stripe_payment_intent_id,
            # Known now if the process died between creating the session and saving its id.
            stripe_session_id=purchase.stripe_session_id or session_id or None,
            paid_after_account_closed=account_closed,
            updated_at=now,
        )
        purchase.status, purchase.paid_at, purchase.paid_after_account_closed = Status.PAID, now, account_closed
        if account_closed:
            # Money must not be lost: the record stays paid (so the refund's event finds
            # it) and staff refund it. Nothing credited, so no receipt either.
            flag_for_staff(
                purchase,
                "Paid after the account was closed: no credits were granted. "
                "Refund it (Refund through Stripe); the purchase stays paid until Stripe confirms.",
            )
            logger.error("purchase %s: paid after its account was closed; flagged for a refund", purchase.pk)
            return Outcome.ACCOUNT_CLOSED
        ledger.purchase_credit(purchase=purchase)
        # Queued in this transaction, not after its commit: django-tasks-db keeps tasks in
        # this database, so the receipt owed commits with the grant. Sent after the commit
        # instead, a process that died in between left paid credits with no receipt owed.
        purchase_receipt_task.enqueue(purchase_id=str(purchase.pk))
    logger.info("purchase %s: %s credits granted", purchase.pk, purchase.credits)
    return Outcome.GRANTED


def flag_for_staff(purchase: Purchase, note: str) -> None:
    """Alert staff (the admin's "needs attention" filter and banner). Caller holds the row lock."""
    stamp = timezone.now().strftime("%Y-%m-%d %H:%M UTC")
    line = f"{stamp}: {note}"
    notes = f"{purchase.attention_note}\n{line}".strip() if purchase.attention_note else line
    Purchase.objects.filter(pk=purchase.pk).update(needs_attention=True, attention_note=notes[-5000:])
    purchase.needs_attention, purchase.attention_note = True, notes


def flag_settled(purchase: Purchase, note: str) -> None:
    """What a flag asked staff to do is done (and said so in the notes): off the "needs
    attention" list, the notes kept. Caller holds the row lock."""
    flag_for_staff(purchase, note)
    Purchase.objects.filter(pk=purchase.pk).update(needs_attention=False)
    purchase.needs_attention = False


def purchase_send_receipt(*, purchase_id: uuid.UUID | str, attempt: int = 0, claim: str = "") -> bool:
    """The task the grant queued: fetch Stripe's receipt link (best effort) and email the
    buyer, at least once (see stefna/mail.py). True when this call sent it. `attempt` and
    `claim` are the retries': the first attempt is called with neither."""
    purchase = Purchase.objects.filter(pk=purchase_id).select_related("pack", "user").first()
    expected = mail.claim_of(claim)
    # Gone with a closed account's email; sent already; or another attempt's to send.
    if purchase is None or not purchase.email or purchase.receipt_sent_at != expected:
        return False
    # Asked before the claim and under no lock: Stripe may be slow or down.
    _fetch_receipt_url(purchase)
    # A reconciliation and a webhook both reporting the payment grant once (so queue one
    # task), but a task may still run twice: the conditional update lets one send.
    owed = mail.claim(
        Purchase,
        purchase.pk,
        field="receipt_sent_at",
        attempt=attempt,
        claim=claim,
        task=purchase_receipt_task,
        arguments={"purchase_id": str(purchase.pk)},
    )
    if owed is None:
        return False
    # Sent after a webhook from Stripe (whose request has no say in the buyer's language)
    # or the checkout page: written in the buyer's own language either way.
    with translation.override(language_for_user(purchase.user)):
        return mail.send_owed(
            owed, partial(_send_receipt, purchase), what=f"purchase {purchase.pk}: the receipt email", logger=logger
        )


@task()
def purchase_receipt_task(*, purchase_id: str, attempt: int = 0, claim: str = "") -> None:
    purchase_send_receipt(purchase_id=purchase_id, attempt=attempt, claim=claim)


def _fetch_receipt_url(purchase: Purchase) -> None:
    if purchase.provider == Purchase.Provider.STRIPE and purchase.stripe_payment_intent_id and not purchase.receipt_url:
        try:
            intent = stripe_api.payment_intent_retrieve(payment_intent_id=purchase.stripe_payment_intent_id)
            charge = intent.get("latest_charge")
            receipt_url = charge.get("receipt_url") if isinstance(charge, dict) else None
            if receipt_url:
                # Not over an account deletion committed while Stripe answered: it blanks the
                # link with the email (Stripe's receipt page shows the buyer to anyone holding
                # it). The purchase's own column, so PostgreSQL checks it again after waiting.
                Purchase.objects.filter(pk=purchase.pk).exclude(email="").update(receipt_url=receipt_url[:2000])
                purchase.receipt_url = receipt_url
        except DomainError:
            logger.warning("purchase %s: could not fetch the receipt link", purchase.pk, exc_info=True)


def _send_receipt(purchase: Purchase) -> None:
    lines = [
        _("Thank you for your purchase."),
        "",
        _("%(credits)s credits (%(pack)s) were added to your %(site)s account. Bought credits never expire.")
        % {"credits": purchase.credits, "pack": purchase.pack.display_name, "site": settings.SITE_NAME},
        _("Amount: %(price)s") % {"price": format_price(purchase.price, purchase.currency)},
        _("Date: %(date)s") % {"date": formats.date_format(purchase.paid_at or timezone.now(), "DATE_FORMAT")},
        _("Purchase: %(id)s") % {"id": purchase.pk},
    ]
    if purchase.provider == Purchase.Provider.OFFLINE:
        lines.append(_("This was a test checkout: no money moved."))
    if purchase.receipt_url:
        lines.append(_("Stripe's receipt: %(url)s") % {"url": purchase.receipt_url})
    if settings.SITE_URL:
        # A way back from the inbox to the balance and every purchase (the email is kept; the tab is not).
        account = f"{settings.SITE_URL.rstrip('/')}{reverse('accounts:account')}#purchases"
        lines += ["", _("Your balance and purchases: %(link)s") % {"link": account}]
    # A refusal raises to purchase_send_receipt, which tries again later; the credits are
    # granted already, in a transaction of their own, and a failed email never undoes that.
    send_mail(
        _("Your %(site)s receipt: %(credits)s credits") % {"site": settings.SITE_NAME, "credits": purchase.credits},
        "\n".join(lines),
        None,
        [purchase.email],
    )


def purchase_expire(*, purchase_id: uuid.UUID | str, note: str = "") -> Outcome:
    """A checkout that ended unpaid (session expired, async payment failed): pending → expired."""
    updated = Purchase.objects.filter(pk=purchase_id, status=Status.PENDING).update(
        status=Status.EXPIRED, updated_at=timezone.now()
    )
    if updated and note:
        logger.info("purchase %s expired: %s", purchase_id, note)
    return Outcome.EXPIRED if updated else Outcome.ALREADY_DONE


def purchases_expire_for_closed_account(*, user: User) -> None:
    """Account deletion: the account's pending purchases end `expired`, in the deletion's
    transaction (so a payment that still arrives is known to be for a closed account, and
    the reconciliation stops asking Stripe about them); once it commits, their Checkout
    Sessions are expired at Stripe, so the buyer's open checkout page can no longer take
    money. Best effort: Stripe refuses a session that is no longer open (paid meanwhile:
    its event then finds the account closed and the purchase is flagged for a refund).
    """
    pending = list(Purchase.objects.filter(user=user, status=Status.PENDING).values_list("pk", "stripe_session_id"))
    for purchase_id, _session_id in pending:
        purchase_expire(purchase_id=purchase_id, note="its account was closed")  # the one writer of → expired
    sessions = [(purchase_id, session_id) for purchase_id, session_id in pending if session_id]
    if sessions and stripe_api.stripe_configured():
        transaction.on_commit(partial(_checkout_sessions_expire, sessions=sessions))


def _checkout_sessions_expire(*, sessions: list[tuple[uuid.UUID, str]]) -> None:
    for purchase_id, session_id in sessions:
        try:
            stripe_api.checkout_session_expire(session_id=session_id, idempotency_key=f"stefna-expire-{purchase_id}")
        except DomainError:
            logger.warning(
                "purchase %s: Stripe did not expire checkout session %s (paid or closed already?)",
                purchase_id,
                session_id,
                exc_info=True,
            )


def purchase_apply_session(*, session: dict[str, Any]) -> Outcome:
    """Act on a Checkout Session as Stripe describes it (from a webhook or a retrieve):
    paid → `purchase_grant`; expired → `purchase_expire`; anything else waits."""
    purchase_id = purchase_id_of(session)
    if purchase_id is None:
        return Outcome.UNKNOWN
    if session.get("payment_status") in ("paid", "no_payment_required") and session.get("status") == "complete":
        payment_intent = session.get("payment_intent")
        if isinstance(payment_intent, dict):
            payment_intent = payment_intent.get("id")
        return purchase_grant(
            purchase_id=purchase_id,
            amount=int(session.get("amount_total") or 0),
            currency=str(session.get("currency") or ""),
            payment_intent_id=str(payment_intent or ""),
            session_id=str(session.get("id") or ""),
        )
    if session.get("status") == "expired":
        return purchase_expire(purchase_id=purchase_id, note="checkout session expired")
    return Outcome.NOT_PAID


def purchase_id_of(session: dict[str, Any]) -> uuid.UUID | None:
    metadata = session.get("metadata") or {}
    for candidate in (metadata.get("purchase_id"), session.get("client_reference_id")):
        try:
            return uuid.UUID(str(candidate))
        except ValueError:
            continue
    return None


def purchase_reconcile(*, purchase: Purchase) -> Outcome:
    """Ask Stripe how a pending purchase's checkout ended, and act on it through the same
    functions the webhook uses (never "paid but no credits" when a webhook is lost).

    An expired one too, when asked (a refund or dispute event about it): a checkout paid
    before its account's deletion expired it here is paid at Stripe all the same."""
    if purchase.status not in (Status.PENDING, Status.EXPIRED) or purchase.provider != Purchase.Provider.STRIPE:
        return Outcome.ALREADY_DONE
    if not purchase.stripe_session_id:
        return Outcome.NOT_PAID
    session = stripe_api.checkout_session_retrieve(session_id=purchase.stripe_session_id)
    return purchase_apply_session(session=session)


def purchase_reconcile_pending(*, limit: int = 50) -> dict[str, int]:
    """The upkeep: reconcile pending Stripe purchases older than PURCHASE_RECONCILE_AFTER_SECONDS,
    least recently checked first.

    Also expires pending purchases that never got a checkout session (a crash between
    creating the purchase and calling Stripe) once a day has passed. One failing call is
    logged and the rest go on. Returns counts by outcome.
    """
    counts: dict[str, int] = {}
    if not stripe_api.stripe_configured():
        return counts
    for purchase in purchases_to_reconcile(older_than_seconds=settings.PURCHASE_RECONCILE_AFTER_SECONDS, limit=limit):
        try:
            outcome = purchase_reconcile(purchase=purchase)
            if outcome == Outcome.NOT_PAID and not purchase.stripe_session_id:
                if (timezone.now() - purchase.created_at).total_seconds() > 24 * 3600:
                    outcome = purchase_expire(purchase_id=purchase.pk, note="no checkout session after a day")
        except DomainError:
            logger.warning("purchase %s: reconciliation failed; will try again", purchase.pk, exc_info=True)
            outcome = Outcome.IGNORED
        if outcome in (Outcome.NOT_PAID, Outcome.IGNORED, Outcome.MISMATCH):
            # Checked: to the back of the line, so abandoned checkouts (open for up to a
            # day) and payments flagged for staff never crowd out a paid one whose webhook
            # was lost.
            Purchase.objects.filter(pk=purchase.pk, status=Status.PENDING).update(updated_at=timezone.now())
        counts[outcome] = counts.get(outcome, 0) + 1
    return counts


def purchase_complete_offline(*, user: User, purchase_id: uuid.UUID | str) -> Outcome:
    """The offline test checkout's "Pay" button: completes the purchase through `purchase_grant`."""
    purchase = Purchase.objects.filter(pk=purchase_id, user=user).first()
    if purchase is None:
        raise NotFound(_("No such purchase."))
    if not settings.OFFLINE_CHECKOUT or purchase.provider != Purchase.Provider.OFFLINE:
        raise PaymentsUnavailable(_("The test checkout is switched off on this site."))
    return purchase_grant(purchase_id=purchase.pk, amount=purchase.price, currency=purchase.currency)


def purchase_mark_reviewed(*, purchase: Purchase) -> None:
    """Staff looked at a flagged purchase: clear the alert (the notes stay)."""
    Purchase.objects.filter(pk=purchase.pk).update(needs_attention=False, updated_at=timezone.now())
