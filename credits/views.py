"""Pages for buying credits: the packs, the offline test checkout, and the success page
that turns into the new balance by itself (htmx polling its status partial)."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.cache import cache
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from stefna.errors import DomainError, NotFound

from . import selectors
from .models import Purchase
from .payments.purchases import checkout_available, purchase_complete_offline, purchase_reconcile, purchase_start
from .payments.resume import purchase_continue as continue_purchase
from .payments.stripe_api import stripe_configured

# The success page polls every 2 s; Stripe is asked at most this often per purchase.
RECONCILE_EVERY_SECONDS = 5
# The buy page's ?checkout= value after a checkout left without paying.
CHECKOUT_CANCELED = "canceled"


@login_required
def buy(request: HttpRequest) -> HttpResponse:
    return render(
        request,
        "credits/buy.html",
        {
            "packs": selectors.credit_packs_for_sale(),
            "checkout_available": checkout_available(),
            "test_checkout": settings.OFFLINE_CHECKOUT and not stripe_configured(),
            # Back from a checkout left without paying (Stripe's cancel_url, the test checkout's Cancel).
            "checkout_canceled": request.GET.get("checkout") == CHECKOUT_CANCELED,
        },
    )


@login_required
@require_POST
def checkout(request: HttpRequest) -> HttpResponse:
    try:
        purchase = purchase_start(
            user=request.user,  # type: ignore[arg-type]
            pack_slug=request.POST.get("pack", "").strip(),
            site_url=request.build_absolute_uri("/"),
        )
    except DomainError as error:
        messages.error(request, error.message)
        return redirect("credits:buy")
    return redirect(purchase.checkout_url)


def _owned(request: HttpRequest, purchase_id: uuid.UUID) -> Purchase:
    purchase = selectors.purchase_get_owned(user=request.user, purchase_id=purchase_id)  # type: ignore[arg-type]
    if purchase is None:
        raise Http404
    return purchase


def _status_context(request: HttpRequest, purchase: Purchase) -> dict[str, object]:
    if purchase.status == Purchase.Status.PENDING and cache.add(
        f"purchase-reconcile:{purchase.pk}", 1, RECONCILE_EVERY_SECONDS
    ):
        # The webhook may be late or lost: ask Stripe ourselves (the same grant path).
        try:
            purchase_reconcile(purchase=purchase)
        except DomainError:
            pass  # Stripe unreachable: the next poll, or the upkeep, tries again
        purchase = _owned(request, purchase.pk)
    quota = selectors.header_quota_for(user=request.user)  # type: ignore[arg-type]
    # An htmx poll also swaps the page header's balance in (out of band).
    return {"purchase": purchase, "quota": quota, "header_quota": quota, "oob_header": "HX-Request" in request.headers}


@login_required
def purchase_done(request: HttpRequest, purchase_id: uuid.UUID) -> HttpResponse:
    return render(request, "credits/done.html", _status_context(request, _owned(request, purchase_id)))


@login_required
def purchase_status(request: HttpRequest, purchase_id: uuid.UUID) -> HttpResponse:
    return render(request, "credits/_purchase_status.html", _status_context(request, _owned(request, purchase_id)))


@login_required
@require_POST
def purchase_continue(request: HttpRequest, purchase_id: uuid.UUID) -> HttpResponse:
    """ "Continue to payment" on a pending purchase: back to its checkout while it can still
    take the money, else the purchase's page with how it ended (see `purchase_continue`)."""
    try:
        continuation = continue_purchase(user=request.user, purchase_id=purchase_id)  # type: ignore[arg-type]
    except NotFound:
        raise Http404 from None
    except DomainError as error:
        # Stripe unreachable, the test checkout switched off: nothing changed, say so.
        messages.error(request, error.message)
        return redirect(reverse("accounts:account") + "#purchases")
    return redirect(continuation.checkout_url or reverse("credits:purchase_done", args=[purchase_id]))


@login_required
def test_checkout(request: HttpRequest, purchase_id: uuid.UUID) -> HttpResponse:
    purchase = _owned(request, purchase_id)
    if purchase.provider != Purchase.Provider.OFFLINE or not settings.OFFLINE_CHECKOUT:
        raise Http404
    if request.method == "POST":
        try:
            purchase_complete_offline(user=request.user, purchase_id=purchase.pk)  # type: ignore[arg-type]
        except DomainError as error:
            messages.error(request, error.message)
        return redirect("credits:purchase_done", purchase.pk)
    if purchase.status != Purchase.Status.PENDING:
        # Back to a checkout already paid (the browser's Back button) or ended: its page says how it stands.
        return redirect("credits:purchase_done", purchase.pk)
    return render(request, "credits/test_checkout.html", {"purchase": purchase, "price_label": purchase.price_label})
