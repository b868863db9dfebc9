"""Database defaults for the columns added to existing tables (tests/deploy/test_migrations_upgrade.py).

`migrate` runs while the previous version still serves (docs/deploy.md, Upgrades). Django's
`default=` lives in Python only, so the old code's INSERTs, which do not name a column it
does not know, were refused by the NOT NULL column: on 7 Dec every checkout of the previous
release failed once credits 0007 ran. `db_default` gives each column a DEFAULT in the
database; upgrading from an older release, this runs in the same `migrate` as the column.
"""

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('credits', '0009_refund_takes_back_credits_in_flight'),
    ]

    operations = [
        migrations.AlterField(
            model_name='creditentry',
            name='purchased_after',
            field=models.IntegerField(db_default=0, default=0),
        ),
        migrations.AlterField(
            model_name='creditentry',
            name='purchased_amount',
            field=models.IntegerField(db_default=0, default=0),
        ),
        migrations.AlterField(
            model_name='purchase',
            name='credits_spent_at_dispute',
            field=models.PositiveIntegerField(db_default=0, default=0, help_text='Of the credits already spent, those the dispute found spent (forgiven if it is won).'),
        ),
        migrations.AlterField(
            model_name='purchase',
            name='credits_taken_by_dispute',
            field=models.PositiveIntegerField(db_default=0, default=0, help_text='Of the credits taken back, those the dispute took (given back if it is won).'),
        ),
        migrations.AlterField(
            model_name='purchase',
            name='paid_after_account_closed',
            field=models.BooleanField(db_default=False, default=False, help_text="Paid after the buyer's account was closed: no credits were granted; refund it."),
        ),
        migrations.AlterField(
            model_name='wallet',
            name='purchased_balance',
            field=models.IntegerField(db_default=0, default=0),
        ),
    ]
