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
        ('accounts', '0003_user_language'),
    ]

    operations = [
        migrations.AlterField(
            model_name='user',
            name='language',
            field=models.CharField(blank=True, choices=[('en', 'English'), ('id', 'Bahasa Indonesia')], db_default='', default='', max_length=8),
        ),
    ]
