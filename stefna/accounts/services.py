"""Writes for accounts: sign-in codes and API tokens."""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import uuid
from datetime import datetime, timedelta

from allauth.account.models import EmailAddress
from django.conf import settings
from django.contrib.sessions.models import Session
from django.core.exceptions import ValidationError
from django.core.mail import send_mail
from django.core.validators import validate_email
from django.db import transaction
from django.db.models import F
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, ngettext

from credits.exceptions import AccountClosed
from credits.ledger import lock_open_account
from stefna import ratelimit
from stefna.errors import InvalidInput

from .models import ApiToken, LoginCode, User

logger = logging.getLogger("stefna.accounts")

CODE_LIFETIME = timedelta(minutes=10)
# Expired codes are never read again. They are kept a day, for staff looking into "my
# code did not work" in the admin, then deleted: each names an email address.
CODE_RETENTION = timedelta(days=1)
MAX_CODE_ATTEMPTS = 5
MAX_EMAIL_LENGTH = 254
TOKEN_PREFIX = "stf_"  # noqa: S105 (a public prefix, not a secret)


class CodeInvalid(InvalidInput):
    code = "invalid_code"
    default_message = gettext_lazy("That code is not right. Check the email and try again.")


def normalize_email(email: str) -> str:
    email = (email or "").strip().lower()
    if len(email) > MAX_EMAIL_LENGTH:
        # The column holds 254 characters (RFC 5321's limit); longer would be a 500 on PostgreSQL.
        raise InvalidInput(
            f"An email address can be at most {MAX_EMAIL_LENGTH} characters.",
            detail={"field": "email", "max_length": MAX_EMAIL_LENGTH},
        )
    try:
        validate_email(email)
    except ValidationError as exc:
        raise InvalidInput(_("Enter a valid email address."), detail={"field": "email"}) from exc
    return email


def _code_hash(email: str, code: str) -> str:
    # HMAC with the site secret: a leaked table alone cannot be brute-forced over the
    # million possible codes.
    message = f"{email}:{code}".encode()
    return hmac.new(settings.SECRET_KEY.encode(), message, hashlib.sha256).hexdigest()


def login_code_send(*, email: str, ip_address: str | None) -> None:
    """Email a fresh 6-digit code to `email`. Earlier unused codes for it stop working.

    Rate limited per email and per IP so the form cannot be used to spam an inbox.
    """
    email = normalize_email(email)
    per_email, email_window = settings.RATE_LIMIT_CODES_PER_EMAIL
    per_ip, ip_window = settings.RATE_LIMIT_CODES_PER_IP
    too_many = _("Too many codes were requested. Please wait a few minutes and try again.")
    ratelimit.hit(f"code-email:{email}", limit=per_email, window=email_window, message=too_many)
    if ip_address:
        ratelimit.hit(f"code-ip:{ratelimit.ip_key(ip_address)}", limit=per_ip, window=ip_window, message=too_many)

    code = f"{secrets.randbelow(1_000_000):06d}"
    now = timezone.now()
    with transaction.atomic():
        LoginCode.objects.filter(email=email, used_at__isnull=True).update(used_at=now)
        LoginCode.objects.create(email=email, code_hash=_code_hash(email, code), expires_at=now + CODE_LIFETIME)
    # Written in the language of the request that asked for it (the sign-in page's).
    send_mail(
        subject=_("Your %(site)s sign-in code: %(code)s") % {"site": settings.SITE_NAME, "code": code},
        message=_(
            "Your sign-in code is %(code)s\n\n"
            "It works once and expires in 10 minutes. If you did not ask for it, ignore this email."
        )
        % {"code": code},
        from_email=None,
        recipient_list=[email],
    )
    logger.info("sign-in code sent", extra={"email_domain": email.rsplit("@", 1)[-1]})


def login_code_verify(*, email: str, code: str, ip_address: str | None = None) -> User:
    """Check `code` for `email`; on success mark it used and return the (new or existing) user.

    Each try is reserved in the database *before* the code is compared: one
    conditional UPDATE that succeeds only while the code has tries left. However many
    guesses arrive at once, at most MAX_CODE_ATTEMPTS of them are ever compared.
    """
    email = normalize_email(email)
    if ip_address:
        per_ip, ip_window = settings.RATE_LIMIT_CODE_ENTRIES_PER_IP
        ratelimit.hit(
            f"code-entry-ip:{ratelimit.ip_key(ip_address)}",
            limit=per_ip,
            window=ip_window,
            message=_("Too many sign-in attempts from your network. Please wait a few minutes and try again."),
        )
    code = (code or "").strip().replace(" ", "")[:32]
    now = timezone.now()
    live = LoginCode.objects.filter(email=email, used_at__isnull=True, expires_at__gt=now)
    login_code = live.order_by("-created_at").first()
    if login_code is None:
        raise CodeInvalid(_("That code has expired or was already used. Ask for a new one."))
    # `failed_attempts` counts every try (the one that succeeds included); the UPDATE
    # is the reservation, so it happens before the comparison, never after.
    reserved = live.filter(pk=login_code.pk, failed_attempts__lt=MAX_CODE_ATTEMPTS).update(
        failed_attempts=F("failed_attempts") + 1
    )
    if not reserved:
        raise CodeInvalid(_("Too many wrong tries for this code. Ask for a new one."))
    if not hmac.compare_digest(login_code.code_hash, _code_hash(email, code)):
        remaining = MAX_CODE_ATTEMPTS - login_code.failed_attempts - 1
        if remaining <= 0:
            raise CodeInvalid(_("Too many wrong tries for this code. Ask for a new one."))
        raise CodeInvalid(
            ngettext(
                "That code is not right. %(count)d try left.",
                "That code is not right. %(count)d tries left.",
                remaining,
            )
            % {"count": remaining}
        )
    # The conditional update makes a code single-use even if two requests race.
    claimed = LoginCode.objects.filter(pk=login_code.pk, used_at__isnull=True).update(used_at=now)
    if not claimed:
        raise CodeInvalid(_("That code was already used. Ask for a new one."))
    user, _created = User.objects.get_or_create(email=email)
    return user


def user_get_or_create(*, email: str) -> tuple[User, bool]:
    email = normalize_email(email)
    user = User.objects.filter(email=email).first()
    if user:
        return user, False
    return User.objects.create_user(email=email), True


def email_addresses_follow(*, user: User) -> None:
    """Bring allauth's address rows (EmailAddress) in line after staff change an email.

    allauth keeps its own record of a user's addresses. Left naming the old address, it
    told Google sign-in that address still belonged to this account, so whoever holds
    that mailbox now could never start an account with Google. The linked Google account
    itself (SocialAccount, found by Google's id) stays: the owner still signs in with it.
    """
    with transaction.atomic():
        deleted, _rows = EmailAddress.objects.filter(user=user).exclude(email=user.email).delete()
        if deleted and not EmailAddress.objects.filter(user=user).exists():
            # The account had allauth rows (it signed in with Google): one for the new
            # address, unverified, as staff typed it and no one proved they read it.
            EmailAddress.objects.create(user=user, email=user.email, primary=True, verified=False)


def _refuse_nul(value: str, field: str) -> None:
    # PostgreSQL text cannot hold U+0000: a form error here, not a 500 at the database.
    if "\x00" in value:
        raise InvalidInput(_("That contains a NUL character, which isn't allowed."), detail={"field": field})


def user_update_profile(*, user: User, display_name: str) -> User:
    display_name = (display_name or "").strip()
    _refuse_nul(display_name, "display_name")
    if len(display_name) > 60:
        raise InvalidInput(_("Display name can be at most 60 characters."), detail={"field": "display_name"})
    with transaction.atomic():
        # Under the account's lock: `user` was read when the request signed in, and
        # saving it over a deletion committed since put the name back on the anonymised row.
        if not lock_open_account(user.pk):
            raise AccountClosed()
        user.display_name = display_name
        user.save(update_fields=["display_name"])
    return user


def user_set_language(*, user: User, language: str) -> None:
    """Remember the language `user` picked; it wins over Accept-Language from now on."""
    if language not in dict(settings.LANGUAGES):
        raise InvalidInput(_("That language is not available."), detail={"field": "language"})
    if user.language != language:
        # Only on an open account: `user` was read when the request signed in, and saving
        # it over a deletion committed since put the choice back on the anonymised row.
        User.objects.filter(pk=user.pk, is_active=True).update(language=language)
        user.language = language


def user_remember_language(*, user: User, language: str) -> None:
    """On sign-in: keep the language the visitor browsed in, unless the account chose one."""
    if not user.language and language in dict(settings.LANGUAGES):
        user_set_language(user=user, language=language)


def hash_token(token: str) -> str:
    # Tokens carry 256 bits of randomness, so a fast hash is enough; a slow one would
    # only make every API call slower.
    return hashlib.sha256(token.encode()).hexdigest()


# Live (unrevoked) tokens an account may hold: far more than any person's scripts need,
# and a bound on what a stolen session can mint.
MAX_LIVE_TOKENS = 20


class TokenAlreadyCreated(Exception):
    """The form with this one-time key already made its token (a double click, a resend)."""


def api_token_create(*, user: User, name: str = "", create_key: uuid.UUID | None = None) -> tuple[ApiToken, str]:
    """Create a token; returns the row and the plain token, which is never stored.

    `create_key` is the one-time key of the account page's form: a second call with it
    raises TokenAlreadyCreated and creates nothing (the first call's token is the one shown).
    """
    _refuse_nul(name or "", "name")
    with transaction.atomic():
        # The account's row, locked before counting: two requests at once each counted
        # the other's token not yet there, and both were created past the bound. Read
        # under that lock, the account may have been deleted since the request signed in:
        # the deletion removed every token, so none is made after it. The same lock
        # orders two sends of one form, so the second sees the first's key.
        if not lock_open_account(user.pk):
            raise AccountClosed()
        if create_key is not None and ApiToken.objects.filter(user=user, create_key=create_key).exists():
            raise TokenAlreadyCreated()
        if ApiToken.objects.filter(user=user, revoked_at__isnull=True).count() >= MAX_LIVE_TOKENS:
            raise InvalidInput(
                _("You have %(count)d API tokens already. Revoke one you no longer use, then create a new one.")
                % {"count": MAX_LIVE_TOKENS},
                detail={"field": "name", "max_live_tokens": MAX_LIVE_TOKENS},
            )
        plain = TOKEN_PREFIX + secrets.token_urlsafe(32)
        token = ApiToken.objects.create(
            user=user,
            name=(name or "").strip()[:80],
            prefix=plain[:10],
            token_hash=hash_token(plain),
            create_key=create_key,
        )
    return token, plain


def api_token_revoke(*, user: User, token_id: uuid.UUID | str) -> bool:
    return bool(
        ApiToken.objects.filter(user=user, pk=token_id, revoked_at__isnull=True).update(revoked_at=timezone.now())
    )


def api_token_authenticate(plain: str) -> User | None:
    """The active user a token belongs to, or None."""
    if not plain or not plain.startswith(TOKEN_PREFIX):
        return None
    token = (
        ApiToken.objects.select_related("user")
        .filter(token_hash=hash_token(plain), revoked_at__isnull=True, user__is_active=True)
        .first()
    )
    if token is None:
        return None
    now = timezone.now()
    # Touch last_used_at at most once a minute so a busy client costs no write per call.
    if token.last_used_at is None or now - token.last_used_at > timedelta(minutes=1):
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
    return token.user


def sign_ins_prune(*, now: datetime | None = None) -> dict[str, int]:
    """Delete what sign-ins leave behind for good: sessions past their expiry (Django
    keeps the rows until `clearsessions`, which nothing else runs) and sign-in codes
    that expired more than CODE_RETENTION ago. The worker runs this hourly
    (`generation.services.upkeep_prune`)."""
    now = now or timezone.now()
    # The rows themselves: with the cached engine a cached copy outlives its row only
    # until its own expiry, which is the session's.
    sessions, _ = Session.objects.filter(expire_date__lt=now).delete()
    codes, _ = LoginCode.objects.filter(expires_at__lt=now - CODE_RETENTION).delete()
    return {"sessions": sessions, "login_codes": codes}
