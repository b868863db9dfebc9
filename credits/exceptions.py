from __future__ import annotations

from django.utils.translation import gettext_lazy as _

from stefna.errors import DomainError, Unauthorized


class InsufficientCredits(DomainError):
    code = "insufficient_credits"
    status = 402
    default_message = _("You don't have enough credits for this.")


class AccountClosed(Unauthorized):
    """The account was deleted (or closed by staff) while this request was on its way: it
    was authenticated a moment before. Nothing is charged or kept."""

    default_message = _("This account is closed.")


class AlreadySettled(DomainError):
    code = "already_settled"
    status = 409
    default_message = _("This generation's credits were already captured or refunded.")


class AlreadyReserved(DomainError):
    code = "already_reserved"
    status = 409
    default_message = _("This generation's credits are already reserved and not yet settled.")


class AlreadyGranted(DomainError):
    """A staff grant form sent again (a double click, a browser resubmit): its one-time
    key is already on the ledger, so nothing more is added."""

    code = "already_granted"
    status = 409
    default_message = _("already granted (this form was sent before); nothing was added.")


class PaymentsUnavailable(DomainError):
    code = "payments_unavailable"
    status = 503
    default_message = _("Buying credits is not available on this site right now.")


class PaymentProviderError(DomainError):
    code = "payment_provider_error"
    status = 502
    default_message = _("The payment provider did not answer. Nothing was charged; please try again.")


class CheckoutNotResumable(DomainError):
    """A pending Stripe purchase without a Checkout Session (its creation failed, or is
    still under way): there is nothing to continue; the upkeep expires it after a day."""

    code = "checkout_not_resumable"
    status = 409
    default_message = _("This checkout can't be continued. Nothing was charged; you can buy the pack again.")


class InvalidWebhook(DomainError):
    code = "invalid_webhook"
    status = 400
    default_message = _("This webhook could not be verified.")
