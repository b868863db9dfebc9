"""Deleting an account for good (`DELETE /api/me`, "Delete my account").

Apart from the rest of the account services because it reaches into every app: it
cancels the account's generations, removes its photos and images (owed to storage until
storage confirms), anonymises its money records and closes its checkouts, and removes
Google sign-in's records. Nothing imports this module back.
"""

from __future__ import annotations

import logging
from importlib import import_module

from allauth.account.models import EmailAddress
from allauth.socialaccount.models import SocialAccount
from django.conf import settings
from django.contrib.sessions.models import Session
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext_lazy

from credits.models import Purchase
from credits.payments.purchases import purchases_expire_for_closed_account
from generation import result_urls
from generation import services as generation_services
from generation.exceptions import InvalidTransition
from generation.models import Attempt, Generation, Media, StoredRemoval
from generation.services import revoke
from stefna.errors import InvalidInput

from .models import ApiToken, LoginCode, User

logger = logging.getLogger("stefna.accounts")


class ConfirmationMismatch(InvalidInput):
    code = "invalid_input"
    default_message = gettext_lazy("Type your account's email address exactly to confirm.")


def account_delete(*, user: User, confirm: str) -> None:
    """Delete `user`'s account for good. `confirm` must be the account's email.

    Photos and images go from storage and Cloudinary; tokens, sign-in codes and every
    session die; the account can't sign in and its email is free to sign up again as
    a new account. Money records stay (the ledger is append-only and generations are
    its job records), attached to the anonymised row with prompts, logs and every
    other personal field blanked. Generations still running are canceled (refunded)
    first, so no result arrives after the account is gone.
    """
    if (confirm or "").strip().lower() != user.email.lower():
        raise ConfirmationMismatch(detail={"field": "confirm"})
    # First on their own, each in its own transaction: a job at fal is canceled there
    # without the account's lock held across the call.
    _cancel_active(user)
    email = user.email
    with transaction.atomic():
        # The charge's lock (credits.ledger.lock_open_account), taken first: a request
        # charged before this waits to be seen here, one charged after finds the account
        # closed. FOR NO KEY UPDATE lets a worker finishing one of these generations write
        # its ledger entry (a foreign key to this row) while this waits for that generation.
        locked = User.objects.select_for_update(no_key=True).get(pk=user.pk)
        if account_is_deleted(locked):
            # Deleted already, by a second press of "Delete" that waited for the first: run
            # again, it would delete sign-in codes of whoever asked for one with the freed
            # address since, and sweep every session once more. (An account staff closed,
            # inactive but not anonymised, is still deleted for good here.)
            return
        # Requests charged between the cancels above and this lock: stopped here as well,
        # so no job of a closed account reaches fal.
        _cancel_active(locked)
        stored = _stored_objects_of(locked)
        Media.objects.filter(user=locked).delete()
        Generation.objects.filter(user=locked).update(
            prompt="",
            prompt_sent="",
            logs=[],
            error_message="",
            request_payload=None,
            source_image="",
            idempotency_key=None,
            request_fingerprint="",
            is_public=False,
            deleted_at=timezone.now(),
        )
        Attempt.objects.filter(generation__user=locked).update(payload=None, error="")
        # Purchases are money records: they stay, without the buyer's email or the receipt's
        # address (Stripe's receipt page opens for anyone holding it and shows the buyer).
        Purchase.objects.filter(user=locked).update(email="", checkout_url="", receipt_url="")
        # Checkouts still open end here (and at Stripe once this commits): a payment that
        # arrives anyway is flagged for a refund, never credited to the closed account.
        purchases_expire_for_closed_account(user=locked)
        # Google sign-in's records: the provider's id, email and name (allauth's tables). Left
        # behind, they would sign the next Google sign-in into this closed account.
        SocialAccount.objects.filter(user=locked).delete()
        EmailAddress.objects.filter(user=locked).delete()
        ApiToken.objects.filter(user=locked).delete()
        LoginCode.objects.filter(email=email).delete()
        locked.email = _deleted_address(locked)
        locked.display_name = ""
        locked.language = ""  # the switcher's choice: nothing the money records need
        locked.is_active = False
        locked.is_staff = locked.is_superuser = False
        # A new unusable password changes the session auth hash: every session of the
        # account stops authenticating, wherever it is stored.
        locked.set_unusable_password()
        locked.save()
        # Owed in this transaction, tried once it commits: no crash can lose the debt; what
        # storage refuses, the worker retries until it is gone.
        revoke.stored_removal_owe(objects=stored, reason=StoredRemoval.Reason.ACCOUNT_DELETED)
    # Sessions are also removed outright (the hash change alone would leave rows), through
    # the session engine so a cached copy (cached_db with Redis) goes too.
    store = import_module(settings.SESSION_ENGINE).SessionStore
    for session in Session.objects.filter(expire_date__gt=timezone.now()).iterator():
        if session.get_decoded().get("_auth_user_id") == str(user.pk):
            store(session_key=session.session_key).delete()
    logger.info("account deleted", extra={"user_id": str(user.pk)})


def account_is_deleted(user: User) -> bool:
    """True once `account_delete` has anonymised the row."""
    return user.email == _deleted_address(user)


def _deleted_address(user: User) -> str:
    return f"deleted-{user.pk.hex}@deleted.invalid"


def _cancel_active(user: User) -> None:
    """Cancel (and refund) the account's queued and running generations."""
    for generation_id in Generation.objects.filter(user=user, status__in=Generation.ACTIVE_STATUSES).values_list(
        "pk", flat=True
    ):
        try:
            generation_services.generation_cancel(generation_id=generation_id, user=user)
        except InvalidTransition:
            pass  # it finished meanwhile; its images are removed below like the others


def _stored_objects_of(user: User) -> list[tuple[str, str]]:
    """("storage" | "cloudinary", name) for every photo and image the user has stored."""
    found: list[tuple[str, str]] = []
    for name in Generation.objects.filter(user=user).exclude(source_image="").values_list("source_image", flat=True):
        found.append(("storage", name))
    # The images are locked as their stored keys are read, as in media_delete: a copy retry
    # committing in between would leave its copy owed by nobody.
    images = Media.objects.select_for_update().filter(user=user)
    for key, moving_to, original in images.values_list("storage_key", "move_to", "original_url"):
        found += revoke.where_stored([key, moving_to])  # an owed move's target may already hold the image
        found += revoke.previews_of([key])
        offline = result_urls.local_name(original) if original else None
        if offline:
            found.append(("storage", offline))
    return found
