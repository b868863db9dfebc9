"""Sign-in by emailed code, sign-out, and the account page's token actions."""

from __future__ import annotations

import uuid
from urllib.parse import urlsplit

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import login, logout
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.urls import Resolver404, resolve, reverse
from django.utils import timezone, translation
from django.utils.http import url_has_allowed_host_and_scheme, urlencode
from django.utils.translation import gettext as _
from django.views.decorators.http import require_http_methods, require_POST, require_safe

from stefna import ratelimit
from stefna.errors import DomainError, RateLimited
from stefna.i18n import keep_language_after_session, supported_language
from stefna.requests import AuthenticatedRequest

from . import deletion, services
from .models import User

# The session key holding a refused account deletion's error and what was typed, for the
# account page's next view.
DELETE_REFUSED = "account_delete_refused"


def welcome(request: HttpRequest, user: User) -> None:
    """The greeting after any sign-in (email code or Google). Someone who has not chosen a
    display name yet learns what their public images are signed with, and where to change
    it: "Welcome, artist-4f1c9a!" alone read like a mistake.

    Written in the language of the page that shows it: the account's saved one, which the
    next page takes, else the one the sign-in page spoke. (An account saved in English and
    signed into from an Indonesian browser was greeted in Indonesian on an English page.)"""
    with translation.override(supported_language(user.language) or translation.get_language()):
        messages.success(request, _("Welcome, %(name)s!") % {"name": user.public_name})
        if not user.display_name:
            messages.info(
                request,
                _("Your public images are signed “%(name)s”. Choose your own name on your account page.")
                % {"name": user.public_name},
            )


def _next_url(request: HttpRequest) -> str:
    candidate = request.POST.get("next") or request.GET.get("next") or ""
    if url_has_allowed_host_and_scheme(candidate, allowed_hosts={request.get_host()}):
        return candidate
    return "/"


def _sign_in_reason(request: HttpRequest) -> str:
    """Why a visitor is asked to sign in: a signed-out visit to a private page (`?next=`)
    landed here without a word of why. Empty when the page was asked for directly."""
    path = urlsplit(_next_url(request)).path
    if not request.GET.get("next") or path == "/":
        return ""
    try:
        name = resolve(path).view_name
    except Resolver404:
        name = ""
    if name == "history":
        return _("Sign in to see your history.")
    if name == "accounts:account":
        return _("Sign in to see your account.")
    return _("Sign in to continue.")


@require_http_methods(["GET", "HEAD", "POST"])  # HEAD: link checkers probe it
def sign_in(request: HttpRequest) -> HttpResponse:
    """Step 1: ask for an email and send a code."""
    if request.user.is_authenticated:
        return redirect(_next_url(request))
    if request.method == "POST":
        email = request.POST.get("email", "")
        try:
            services.login_code_send(email=email, ip_address=ratelimit.client_ip(request))
        except DomainError as exc:
            response = render(
                request,
                "accounts/sign_in.html",
                {"email": email, "error": exc.message, "next": _next_url(request)},
                status=exc.status,
            )
            if isinstance(exc, RateLimited):
                response["Retry-After"] = str(exc.retry_after)
            return response
        request.session["sign_in_email"] = services.normalize_email(email)
        # Escaped: a page asked for with a query of its own (`?a=1&b=2`) kept only its first part.
        return redirect(f"{reverse('accounts:enter_code')}?{urlencode({'next': _next_url(request)})}")
    return render(request, "accounts/sign_in.html", {"next": _next_url(request), "reason": _sign_in_reason(request)})


def _code_in_terminal() -> bool:
    """True when codes go to the console mail backend (DEBUG, `make run`): the page says so,
    because a developer waiting for an email that never comes is the first support question."""
    backend = str(settings.MAILERS.get("default", {}).get("BACKEND", ""))
    return backend.endswith("console.EmailBackend")


@require_http_methods(["GET", "POST"])
def enter_code(request: HttpRequest) -> HttpResponse:
    """Step 2: check the code and sign in (creating the account on first sign-in)."""
    email = request.session.get("sign_in_email")
    if not email:
        return redirect("accounts:sign_in")
    if request.method == "POST":
        try:
            user = services.login_code_verify(
                email=email, code=request.POST.get("code", ""), ip_address=ratelimit.client_ip(request)
            )
        except DomainError as exc:
            return render(
                request,
                "accounts/enter_code.html",
                {"email": email, "error": exc.message, "next": _next_url(request),
                 "code_in_terminal": _code_in_terminal()},
                status=exc.status,
            )  # fmt: skip
        login(request, user, backend="django.contrib.auth.backends.ModelBackend")
        request.session.pop("sign_in_email", None)
        services.user_remember_language(user=user, language=translation.get_language() or "")
        welcome(request, user)
        return redirect(_next_url(request))
    context = {"email": email, "next": _next_url(request), "code_in_terminal": _code_in_terminal()}
    return render(request, "accounts/enter_code.html", context)


@require_POST
def sign_out(request: HttpRequest) -> HttpResponse:
    logout(request)
    return keep_language_after_session(request, redirect("/"))


@login_required
@require_POST
def token_create(request: AuthenticatedRequest) -> HttpResponse:
    try:
        create_key: uuid.UUID | None = uuid.UUID(request.POST.get("create_key", ""))
    except ValueError:
        create_key = None  # a form shown before the key existed, or an API-style client
    try:
        _token, plain = services.api_token_create(
            user=request.user, name=request.POST.get("name", ""), create_key=create_key
        )
    except services.TokenAlreadyCreated:
        # A double click: the first send left its token in the session, and this one does not
        # touch the session (messages go in a cookie), so the account page still shows it.
        messages.info(request, _("This form was already sent: one token was created."))
        return redirect(f"{reverse('accounts:account')}#new-token")
    except DomainError as exc:
        messages.error(request, exc.message)
        return redirect("accounts:account")
    # Shown once, on the next page view, then gone; the fragment brings it into view, far
    # down the page, so that a phone does not come back at the top and hide it.
    request.session["new_api_token"] = plain
    return redirect(f"{reverse('accounts:account')}#new-token")


@login_required
@require_POST
def token_revoke(request: AuthenticatedRequest, token_id: str) -> HttpResponse:
    if services.api_token_revoke(user=request.user, token_id=token_id):
        messages.success(request, _("Token revoked. Clients using it will get 401 from now on."))
    return redirect("accounts:account")


@login_required
def account(request: AuthenticatedRequest) -> HttpResponse:
    from credits.selectors import purchase_history, quota_for
    from credits.statement import statement_page

    from .selectors import api_tokens_for

    if request.method == "POST":
        try:
            services.user_update_profile(user=request.user, display_name=request.POST.get("display_name", ""))
            messages.success(request, _("Profile saved."))
        except DomainError as exc:
            messages.error(request, exc.message)
        return redirect("accounts:account")
    return render(
        request,
        "accounts/account.html",
        {
            "tokens": api_tokens_for(user=request.user),
            "new_token": request.session.pop("new_api_token", None),
            "create_key": uuid.uuid4(),  # the "Create token" form's one-time key (token_create)
            # A refused "Delete my account", said beside its field once (see account_delete).
            "delete_refused": request.session.pop(DELETE_REFUSED, None),
            "statement": statement_page(user=request.user, page_number=request.GET.get("page")),
            "quota": quota_for(user=request.user),
            "purchases": purchase_history(user=request.user).items,
        },
    )


@login_required
@require_safe
def account_export(request: AuthenticatedRequest) -> HttpResponse:
    """ "Download my data": the same JSON as GET /api/me/export, as a file."""
    from .selectors import account_export as export_for

    data = export_for(user=request.user, absolute=request.build_absolute_uri)
    response = JsonResponse(data, json_dumps_params={"indent": 2, "ensure_ascii": False})
    response["Content-Disposition"] = f'attachment; filename="stefna-data-{timezone.now():%Y-%m-%d}.json"'
    response["Cache-Control"] = "private, no-store"
    return response


@login_required
@require_POST
def account_delete(request: AuthenticatedRequest) -> HttpResponse:
    """ "Delete my account": typed email to confirm, then gone and signed out."""
    try:
        deletion.account_delete(user=request.user, confirm=request.POST.get("confirm", ""))
    except DomainError as exc:
        # Said beside the field, which the page focuses (autofocus, which also scrolls it
        # into view; browsers skip autofocus on an address with a #fragment): a message at
        # the top of a page that jumped to its bottom went unseen.
        request.session[DELETE_REFUSED] = {"error": exc.message, "typed": request.POST.get("confirm", "")[:254]}
        return redirect("accounts:account")
    logout(request)
    messages.success(request, _("Your account was deleted. Thank you for trying Stefna."))
    return keep_language_after_session(request, redirect("/"))
