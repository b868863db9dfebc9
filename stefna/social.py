"""Google sign-in through django-allauth's social account part, over OpenID Connect.

Email-code sign-in stays our own (stefna.accounts); allauth handles only the OAuth
dance with Google. What we add on top, and why:
- The ID token's signature is always checked against the provider's JWKS. allauth
  (like the OpenID Connect spec) skips it when the token came straight from the token
  endpoint over TLS; we check anyway, so a token endpoint that answers with a forged
  or foreign-signed token signs nobody in.
- Only an email the provider says it verified (`email_verified`) is accepted. It signs
  into the Stefna account with that email, if there is one; otherwise one is made.
- Every refusal returns to the sign-in page with a message in the visitor's language.
"""

from __future__ import annotations

import logging
from typing import Any

import jwt
import requests
from allauth.account.adapter import DefaultAccountAdapter
from allauth.core.exceptions import ImmediateHttpResponse
from allauth.socialaccount.adapter import DefaultSocialAccountAdapter
from allauth.socialaccount.internal import jwtkit
from allauth.socialaccount.models import SocialApp, SocialLogin
from allauth.socialaccount.providers.base.constants import AuthError
from allauth.socialaccount.providers.oauth2.client import OAuth2Error
from allauth.socialaccount.providers.oauth2.views import OAuth2CallbackView, OAuth2LoginView
from allauth.socialaccount.providers.openid_connect.views import OpenIDConnectOAuth2Adapter
from django.conf import settings
from django.contrib import messages
from django.db import transaction
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.urls import path
from django.utils import translation
from django.utils.translation import gettext as _

from credits.ledger import lock_open_account
from stefna.accounts.selectors import user_by_email
from stefna.accounts.services import user_remember_language
from stefna.accounts.views import welcome

logger = logging.getLogger("stefna.accounts")

GOOGLE = "google"


def google_sign_in_enabled() -> bool:
    return bool(settings.GOOGLE_CLIENT_ID and settings.GOOGLE_CLIENT_SECRET)


def context(request: HttpRequest) -> dict[str, Any]:
    return {"google_sign_in": google_sign_in_enabled()}


def _back_to_sign_in(request: HttpRequest, message: str) -> ImmediateHttpResponse:
    messages.error(request, message)
    return ImmediateHttpResponse(redirect("accounts:sign_in"))


def _verified_email(sociallogin: SocialLogin) -> tuple[str, bool]:
    for address in sociallogin.email_addresses:
        if address.email:
            return address.email.strip().lower(), bool(address.verified)
    return "", False


class AccountAdapter(DefaultAccountAdapter):
    def is_open_for_signup(self, request: HttpRequest) -> bool:
        # No allauth email/password sign-up: new accounts come from the email code or Google.
        return False

    def respond_user_inactive(self, request: HttpRequest, user: Any) -> HttpResponse:
        # allauth's own answer is a page this site does not have (`account_inactive`): a 500.
        # A closed account (deleted, or closed by staff) is told so on the sign-in page.
        messages.error(request, _("This account is closed. You can start a new one with an email code."))
        return redirect("accounts:sign_in")

    def login(self, request: HttpRequest, user: Any) -> None:
        super().login(request, user)
        # As the email-code sign-in does (accounts.views): an account that never chose a
        # language keeps the one its owner signed in with, so the emails the worker and
        # webhooks send later (a finished image, a receipt) are not English by default.
        user_remember_language(user=user, language=translation.get_language() or "")

    def add_message(
        self, request: HttpRequest, level: int, message_template: str | None = None, *args: Any, **kwargs: Any
    ) -> None:
        # allauth's own notices ("Successfully signed in as …") are replaced by ours.
        if message_template and message_template.endswith("logged_in.txt") and request.user.is_authenticated:
            welcome(request, request.user)  # type: ignore[arg-type]


class SocialAccountAdapter(DefaultSocialAccountAdapter):
    def is_open_for_signup(self, request: HttpRequest, sociallogin: SocialLogin) -> bool:
        return True

    def pre_social_login(self, request: HttpRequest, sociallogin: SocialLogin) -> None:
        email, verified = _verified_email(sociallogin)
        if not email:
            raise _back_to_sign_in(
                request, _("Google did not share an email address, so we can't sign you in with it.")
            )
        if not verified:
            raise _back_to_sign_in(
                request,
                _("Google has not verified %(email)s, so we can't sign you in with it. Use an email code instead.")
                % {"email": email},
            )
        if sociallogin.is_existing:
            return
        existing = user_by_email(email=email)
        if existing is not None:
            with transaction.atomic():
                # Linked under the account's lock, the one its deletion takes: found open a
                # moment ago, the account may be closing, its Google records already removed,
                # and a link made then kept Google's id, email and name on the anonymised row.
                # Closed by now, its address is free: the sign-in goes on as a new account.
                if lock_open_account(existing.pk):
                    # The provider vouches for the address, which is all our email code proves too.
                    sociallogin.connect(request, existing)

    def populate_user(self, request: HttpRequest, sociallogin: SocialLogin, data: dict[str, Any]) -> Any:
        user = super().populate_user(request, sociallogin, data)
        user.email = (user.email or "").strip().lower()
        # The public name stays the email's first part until the person sets one: a
        # Google profile name would otherwise appear in the public feed unasked.
        user.language = (
            (translation.get_language() or "") if translation.get_language() in dict(settings.LANGUAGES) else ""
        )
        return user

    def on_authentication_error(
        self,
        request: HttpRequest,
        provider: Any,
        error: str | None = None,
        exception: Exception | None = None,
        extra_context: dict[str, Any] | None = None,
    ) -> None:
        extra_context = extra_context or {}
        cause = exception.__cause__ if exception is not None else None
        if error == AuthError.CANCELLED:
            message = _("Google sign-in was cancelled.")
        elif exception is None and "state_id" in extra_context:
            message = _("This sign-in link has expired or was opened in another browser. Please start again.")
        elif isinstance(cause, jwt.InvalidAudienceError):
            message = _("Google issued this sign-in for another app, so it was refused.")
        elif isinstance(exception, OAuth2Error) and isinstance(cause, jwt.PyJWTError):
            message = _("Google's answer could not be verified, so you were not signed in.")
        elif isinstance(exception, requests.RequestException):
            message = _("Google could not be reached. Please try again in a moment.")
        else:
            message = _("Google sign-in did not work. Please try again, or use an email code.")
        logger.info(
            "google sign-in refused",
            extra={"auth_error": error, "exception": type(exception).__name__ if exception else None},
        )
        raise _back_to_sign_in(request, message)


class VerifiedOpenIDConnectAdapter(OpenIDConnectOAuth2Adapter):
    def _decode_id_token(self, app: SocialApp, id_token: str) -> dict[str, Any]:
        return jwtkit.verify_and_decode(
            credential=id_token,
            keys_url=self.openid_config["jwks_uri"],
            issuer=self.openid_config["issuer"],
            audience=app.client_id,
            lookup_kid=jwtkit.lookup_kid_jwk,
            verify_signature=True,
        )


def oidc_login(request: HttpRequest, provider_id: str) -> HttpResponse:
    try:
        return OAuth2LoginView.adapter_view(VerifiedOpenIDConnectAdapter(request, provider_id))(request)
    except SocialApp.DoesNotExist:
        raise Http404 from None


def oidc_callback(request: HttpRequest, provider_id: str) -> HttpResponse:
    try:
        return OAuth2CallbackView.adapter_view(VerifiedOpenIDConnectAdapter(request, provider_id))(request)
    except SocialApp.DoesNotExist:
        raise Http404 from None


def login_cancelled(request: HttpRequest) -> HttpResponse:
    messages.info(request, _("Google sign-in was cancelled."))
    return redirect("accounts:sign_in")


def login_failed(request: HttpRequest) -> HttpResponse:
    # allauth sends a social sign-up it could not finish automatically here; with a
    # verified email that never happens, so this is only a clear dead end.
    messages.error(request, _("Google sign-in did not work. Please try again, or use an email code."))
    return redirect("accounts:sign_in")


# Names allauth reverses: `<provider>_login`/`_callback` and `socialaccount_*`.
urlpatterns = [
    path("oidc/<str:provider_id>/login/", oidc_login, name="openid_connect_login"),
    path("oidc/<str:provider_id>/login/callback/", oidc_callback, name="openid_connect_callback"),
    path("social/login/cancelled/", login_cancelled, name="socialaccount_login_cancelled"),
    path("social/login/error/", login_failed, name="socialaccount_login_error"),
    path("social/signup/", login_failed, name="socialaccount_signup"),
]
