"""Writes for accounts: sign-in codes and API tokens."""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import uuid
from datetime import timedelta

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.mail import send_mail
from django.core.validators import validate_email
from django.db import transaction
from django.db.models import F
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, ngettext

from stefna import ratelimit
from stefna.errors import InvalidInput

from .models import ApiToken, LoginCode, User

logger = logging.getLogger("stefna.accounts")

CODE_LIFETIME = timedelta(minutes=10)
MAX_CODE_ATTEMPTS = 5
TOKEN_PREFIX = "stf_"  # noqa: S105 (a public prefix, not a secret)


class CodeInvalid(InvalidInput):
    code = "invalid_code"
    default_message = gettext_lazy("That code is not right. Check the email and try again.")


def normalize_email(email: str) -> str:
    email = (email or "").strip().lower()
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
        ratelimit.hit(f"code-ip:{ip_address}", limit=per_ip, window=ip_window, message=too_many)

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


def login_code_verify(*, email: str, code: str) -> User:
    """Check `code` for `email`; on success mark it used and return the (new or existing) user."""
    email = normalize_email(email)
    code = (code or "").strip().replace(" ", "")
    now = timezone.now()
    login_code = (
        LoginCode.objects.filter(email=email, used_at__isnull=True, expires_at__gt=now).order_by("-created_at").first()
    )
    if login_code is None:
        raise CodeInvalid(_("That code has expired or was already used. Ask for a new one."))
    if login_code.failed_attempts >= MAX_CODE_ATTEMPTS:
        raise CodeInvalid(_("Too many wrong tries for this code. Ask for a new one."))
    if not hmac.compare_digest(login_code.code_hash, _code_hash(email, code)):
        LoginCode.objects.filter(pk=login_code.pk).update(failed_attempts=F("failed_attempts") + 1)
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


def user_update_profile(*, user: User, display_name: str) -> User:
    display_name = (display_name or "").strip()
    if len(display_name) > 60:
        raise InvalidInput(_("Display name can be at most 60 characters."), detail={"field": "display_name"})
    user.display_name = display_name
    user.save(update_fields=["display_name"])
    return user


def user_set_language(*, user: User, language: str) -> None:
    """Remember the language `user` picked; it wins over Accept-Language from now on."""
    if language not in dict(settings.LANGUAGES):
        raise InvalidInput(_("That language is not available."), detail={"field": "language"})
    if user.language != language:
        user.language = language
        user.save(update_fields=["language"])


def user_remember_language(*, user: User, language: str) -> None:
    """On sign-in: keep the language the visitor browsed in, unless the account chose one."""
    if not user.language and language in dict(settings.LANGUAGES):
        user_set_language(user=user, language=language)


def hash_token(token: str) -> str:
    # Tokens carry 256 bits of randomness, so a fast hash is enough; a slow one would
    # only make every API call slower.
    return hashlib.sha256(token.encode()).hexdigest()


def api_token_create(*, user: User, name: str = "") -> tuple[ApiToken, str]:
    """Create a token; returns the row and the plain token, which is never stored."""
    plain = TOKEN_PREFIX + secrets.token_urlsafe(32)
    token = ApiToken.objects.create(
        user=user, name=(name or "").strip()[:80], prefix=plain[:10], token_hash=hash_token(plain)
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
