"""A payment mismatch is flagged once by a recorded fact (`Purchase.mismatch_flagged`), no
longer by finding its words in the attention note. Purchases already flagged get that
fact from their note once, here, so a mismatch staff already reviewed is not raised again.
The patterns are the notes' wording up to this version; they are not used after it."""

import re

from django.db import migrations, models

SESSION = re.compile(r"Not granted: paid session (\S+) is not this purchase's session")
AMOUNT = re.compile(r"Not granted: paid (-?\d+) (\S+) but the purchase costs")


def record_flagged_mismatches(apps, schema_editor):  # type: ignore[no-untyped-def]
    Purchase = apps.get_model("credits", "Purchase")
    flagged = Purchase.objects.filter(attention_note__contains="Not granted: ").only("pk", "attention_note")
    for purchase in flagged.iterator():
        found = []  # (position in the note, key): the latest line wins, as the latest flag did
        for match in SESSION.finditer(purchase.attention_note):
            found.append((match.start(), f"session:{match.group(1)}"))
        for match in AMOUNT.finditer(purchase.attention_note):
            currency = "" if match.group(2) == "?" else match.group(2).lower()
            found.append((match.start(), f"amount:{match.group(1)}:{currency}"))
        if found:
            Purchase.objects.filter(pk=purchase.pk).update(mismatch_flagged=max(found)[1][:300])


class Migration(migrations.Migration):

    dependencies = [
        ('credits', '0012_credit_pack_name_id'),
    ]

    operations = [
        migrations.AddField(
            model_name='purchase',
            name='mismatch_flagged',
            field=models.CharField(blank=True, db_default='', default='', help_text='The payment mismatch staff were last alerted to (not granted).', max_length=300),
        ),
        migrations.RunPython(record_flagged_mismatches, migrations.RunPython.noop),
    ]
