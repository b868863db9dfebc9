"""Credit packs get an Indonesian name (`name_id`; empty shows the English one), and the
seeded packs still wearing their seeded names get theirs. A pack an admin renamed, or
already named in Indonesian, is left alone."""

from django.db import migrations, models

# slug, seeded English name, Indonesian name
SEEDED = [("starter", "Starter", "Pemula"), ("creator", "Creator", "Kreator"), ("studio", "Pro", "Pro")]


def name_seeded_packs(apps, schema_editor):  # type: ignore[no-untyped-def]
    CreditPack = apps.get_model("credits", "CreditPack")
    for slug, name, name_id in SEEDED:
        CreditPack.objects.filter(slug=slug, name=name, name_id="").update(name_id=name_id)


class Migration(migrations.Migration):

    dependencies = [
        ('credits', '0011_refund_reversed_entries'),
    ]

    operations = [
        migrations.AddField(
            model_name='creditpack',
            name='name_id',
            field=models.CharField(blank=True, db_default='', default='', max_length=80, verbose_name='name (Bahasa Indonesia)'),
        ),
        migrations.RunPython(name_seeded_packs, migrations.RunPython.noop),
    ]
