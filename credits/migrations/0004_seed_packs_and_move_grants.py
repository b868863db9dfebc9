"""Seed three credit packs, and move existing grants into the purchased bucket.

Before two buckets, a wallet's credits above the daily allowance were kept at the top-up
(they were grants). Now granted credits live in the purchased bucket, which the top-up
never touches: each wallet moves min(balance, net granted and adjusted credits) there,
recorded as a `bucket_move` entry (it moves no credits in total, so balances are
unchanged and the ledger stays append-only).
"""

from __future__ import annotations

from django.db import migrations
from django.db.models import Sum

PACKS = [
    # slug, name, credits, price (cents), sort order. A generation costs 2 credits.
    ("starter", "Starter", 50, 499, 10),
    ("creator", "Creator", 150, 1199, 20),
    ("studio", "Studio", 400, 2499, 30),
]


def seed_packs(apps, schema_editor):  # type: ignore[no-untyped-def]
    CreditPack = apps.get_model("credits", "CreditPack")
    for slug, name, credits, price, sort_order in PACKS:
        CreditPack.objects.get_or_create(
            slug=slug,
            defaults={"name": name, "credits": credits, "price": price, "currency": "usd", "sort_order": sort_order},
        )


def move_grants(apps, schema_editor):  # type: ignore[no-untyped-def]
    Wallet = apps.get_model("credits", "Wallet")
    CreditEntry = apps.get_model("credits", "CreditEntry")
    granted = dict(
        CreditEntry.objects.filter(reason__in=["grant", "adjust"])
        .values("user_id")
        .annotate(total=Sum("amount"))
        .values_list("user_id", "total")
    )
    for wallet in Wallet.objects.filter(pk__in=list(granted), purchased_balance=0):
        moved = max(0, min(wallet.balance, granted[wallet.pk] or 0))
        if not moved:
            continue
        Wallet.objects.filter(pk=wallet.pk).update(purchased_balance=moved)
        CreditEntry.objects.create(
            user_id=wallet.pk,
            amount=0,
            purchased_amount=moved,
            reason="bucket_move",
            balance_after=wallet.balance,
            purchased_after=moved,
            note="Granted credits moved to the purchased bucket (they never expire)",
        )


class Migration(migrations.Migration):
    dependencies = [("credits", "0003_purchases_and_buckets")]

    operations = [
        migrations.RunPython(seed_packs, migrations.RunPython.noop),
        migrations.RunPython(move_grants, migrations.RunPython.noop),
    ]
