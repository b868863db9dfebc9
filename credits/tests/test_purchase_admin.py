"""Purchases in the admin: refunds ask first, and a purchase leads to its money records."""

from __future__ import annotations

from django.urls import reverse

from credits.models import Purchase

PURCHASES = reverse("admin:credits_purchase_changelist")


def refund_action(client, purchase: Purchase, **extra):  # type: ignore[no-untyped-def]
    return client.post(
        PURCHASES, {"action": "refund", "index": "0", "_selected_action": [str(purchase.pk)], **extra}, follow=True
    )


def test_refunding_a_purchase_asks_first_and_names_the_sum(staff_client, paid_purchase, fake_stripe):
    asked = refund_action(staff_client, paid_purchase)
    page = asked.content.decode()
    assert asked.status_code == 200 and "Refund purchases" in page
    assert "$4.99 to refund" in page and "cannot be recalled" in page
    assert fake_stripe.refunds == [], "choosing the action alone refunds nothing"

    done = refund_action(staff_client, paid_purchase, apply="1")
    assert [str(message) for message in done.context["messages"]] == ["Refund requested for 1 purchase."]
    assert [refund["payment_intent"] for refund in fake_stripe.refunds] == [paid_purchase.stripe_payment_intent_id]


def test_the_refund_is_offered_on_the_purchase_page_too(staff_client, paid_purchase, fake_stripe):
    url = reverse("admin:credits_purchase_change", args=[paid_purchase.pk])
    assert b'value="refund"' in staff_client.get(url).content
    selection = {"CHANGE_FORM-action": "refund", "_selected_action": [str(paid_purchase.pk)]}
    asked = staff_client.post(url, selection)
    assert b"Yes, refund" in asked.content and fake_stripe.refunds == []
    staff_client.post(url, {**selection, "apply": "1"})
    assert len(fake_stripe.refunds) == 1
