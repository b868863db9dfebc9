"""A purchase paid after its buyer's account was closed is recorded paid and never
credited (`paid_after_account_closed`), so refunds and disputes of it take nothing.

Purchases paid before this migration were all credited (the grant did not look at the
account), so every existing row keeps the default, False.
"""

from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('credits', '0005_rename_studio_pack'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.AddField(
            model_name='purchase',
            name='paid_after_account_closed',
            field=models.BooleanField(default=False, help_text="Paid after the buyer's account was closed: no credits were granted; refund it."),
        ),
        migrations.AddConstraint(
            model_name='purchase',
            constraint=models.CheckConstraint(condition=models.Q(('paid_after_account_closed', False), models.Q(('credits_already_spent', 0), ('credits_taken_back', 0)), _connector='OR'), name='purchase_never_credited_takes_nothing_back'),
        ),
    ]
