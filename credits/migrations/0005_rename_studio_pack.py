"""Rename the seeded "Studio" credit pack to "Pro".

"Studio" is also the name of the app's main tab (the same word in Indonesian), so "Buy
Studio" on the buy page read like buying the studio itself. Pro follows Starter and
Creator as the biggest pack, and reads the same in both languages.

Only a pack still wearing the seeded name is renamed: one an admin has named otherwise is
theirs. The slug stays "studio": API clients send it to /api/checkout and purchases
already point at the row, and no visitor sees it.
"""

from __future__ import annotations

from django.db import migrations

SLUG = "studio"
SEEDED_NAME = "Studio"
NEW_NAME = "Pro"


def rename_pack(apps, schema_editor):  # type: ignore[no-untyped-def]
    CreditPack = apps.get_model("credits", "CreditPack")
    CreditPack.objects.filter(slug=SLUG, name=SEEDED_NAME).update(name=NEW_NAME)


def restore_name(apps, schema_editor):  # type: ignore[no-untyped-def]
    CreditPack = apps.get_model("credits", "CreditPack")
    CreditPack.objects.filter(slug=SLUG, name=NEW_NAME).update(name=SEEDED_NAME)


class Migration(migrations.Migration):
    dependencies = [("credits", "0004_seed_packs_and_move_grants")]

    operations = [migrations.RunPython(rename_pack, restore_name)]
