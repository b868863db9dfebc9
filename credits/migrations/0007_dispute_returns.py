"""What a dispute took, so a won dispute gives exactly that back
(`credits_taken_by_dispute`, `credits_spent_at_dispute`), and the ledger's
`dispute_won` entry that gives it back, once per purchase.

Purchases disputed before this migration get their dispute's share from the ledger: its
clawback entries are the ones whose note names the dispute ("dispute <id>"), and the
credits it found spent are what was recorded spent beyond what the refunds before it
(their share of the price, rounded up) could not take.
"""

import math

from django.conf import settings
from django.db import migrations, models


def record_open_disputes(apps, schema_editor):  # type: ignore[no-untyped-def]
    Purchase = apps.get_model("credits", "Purchase")
    CreditEntry = apps.get_model("credits", "CreditEntry")
    for purchase in Purchase.objects.filter(status="disputed"):
        notes_and_amounts = CreditEntry.objects.filter(purchase=purchase, reason="clawback").values_list("note", "amount")
        taken = min(
            purchase.credits_taken_back, sum(-amount for note, amount in notes_and_amounts if note.startswith("dispute "))
        )
        refunds_share = math.ceil(purchase.credits * purchase.amount_refunded / purchase.price) if purchase.price else 0
        spent_before = max(0, refunds_share - (purchase.credits_taken_back - taken))
        spent = max(0, purchase.credits_already_spent - spent_before)
        Purchase.objects.filter(pk=purchase.pk).update(credits_taken_by_dispute=taken, credits_spent_at_dispute=spent)


class Migration(migrations.Migration):

    dependencies = [
        ('credits', '0006_paid_after_account_closed'),
        ('generation', '0010_restore_sqlite_version_triggers'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.RemoveConstraint(
            model_name='creditentry',
            name='credit_links_match_reason',
        ),
        migrations.RemoveConstraint(
            model_name='creditentry',
            name='credit_amount_sign_matches_reason',
        ),
        migrations.AddField(
            model_name='purchase',
            name='credits_spent_at_dispute',
            field=models.PositiveIntegerField(default=0, help_text='Of the credits already spent, those the dispute found spent (forgiven if it is won).'),
        ),
        migrations.AddField(
            model_name='purchase',
            name='credits_taken_by_dispute',
            field=models.PositiveIntegerField(default=0, help_text='Of the credits taken back, those the dispute took (given back if it is won).'),
        ),
        migrations.AlterField(
            model_name='creditentry',
            name='reason',
            field=models.CharField(choices=[('daily_allowance', 'Daily allowance'), ('reserve', 'Reserved for a generation'), ('capture', 'Generation delivered'), ('refund', 'Refund'), ('grant', 'Grant'), ('adjust', 'Adjustment'), ('purchase', 'Credits bought'), ('clawback', 'Taken back (refund or dispute)'), ('dispute_won', 'Given back (dispute resolved)'), ('bucket_move', 'Moved to purchased credits')], max_length=20),
        ),
        migrations.AddConstraint(
            model_name='creditentry',
            constraint=models.UniqueConstraint(condition=models.Q(('reason', 'dispute_won')), fields=('purchase',), name='credit_one_dispute_return_per_purchase'),
        ),
        migrations.AddConstraint(
            model_name='creditentry',
            constraint=models.CheckConstraint(condition=models.Q(models.Q(('charge_number__gte', 1), ('generation__isnull', False), ('purchase__isnull', True), ('reason__in', ['reserve', 'capture', 'refund'])), models.Q(('charge_number__isnull', True), ('generation__isnull', True), ('purchase__isnull', False), ('reason__in', ['purchase', 'clawback', 'dispute_won'])), models.Q(('charge_number__isnull', True), ('generation__isnull', True), ('purchase__isnull', True), ('reason__in', ['daily_allowance', 'grant', 'adjust', 'bucket_move'])), _connector='OR'), name='credit_links_match_reason'),
        ),
        migrations.AddConstraint(
            model_name='creditentry',
            constraint=models.CheckConstraint(condition=models.Q(models.Q(('amount__lt', 0), ('reason', 'reserve')), models.Q(('amount', 0), ('reason', 'capture')), models.Q(('amount__gt', 0), ('reason', 'refund')), models.Q(('allowance_day__isnull', False), ('amount__gt', 0), ('reason', 'daily_allowance')), models.Q(('amount__gt', 0), ('reason', 'grant')), models.Q(('reason', 'adjust'), models.Q(('amount', 0), _negated=True)), models.Q(('amount__gt', 0), ('purchased_amount', models.F('amount')), ('reason', 'purchase')), models.Q(('amount__lt', 0), ('purchased_amount', models.F('amount')), ('reason', 'clawback')), models.Q(('amount__gt', 0), ('purchased_amount', models.F('amount')), ('reason', 'dispute_won')), models.Q(('amount', 0), ('purchased_amount__gt', 0), ('reason', 'bucket_move')), _connector='OR'), name='credit_amount_sign_matches_reason'),
        ),
        migrations.AddConstraint(
            model_name='purchase',
            constraint=models.CheckConstraint(condition=models.Q(('credits_spent_at_dispute__lte', models.F('credits_already_spent')), ('credits_taken_by_dispute__lte', models.F('credits_taken_back')), models.Q(('status', 'disputed'), models.Q(('credits_spent_at_dispute', 0), ('credits_taken_by_dispute', 0)), _connector='OR')), name='purchase_dispute_share_within_totals'),
        ),
        # Last: rows are updated after every table change (PostgreSQL refuses to alter a table
        # with pending trigger events in the same transaction).
        migrations.RunPython(record_open_disputes, migrations.RunPython.noop),
    ]
