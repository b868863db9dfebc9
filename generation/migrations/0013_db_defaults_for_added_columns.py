"""Database defaults for the columns added to existing tables (tests/deploy/test_migrations_upgrade.py).

`migrate` runs while the previous version still serves (docs/deploy.md, Upgrades). Django's
`default=` lives in Python only, so the old code's INSERTs, which do not name a column it
does not know, were refused by the NOT NULL column: on 7 Dec every checkout of the previous
release failed once credits 0007 ran. `db_default` gives each column a DEFAULT in the
database; upgrading from an older release, this runs in the same `migrate` as the column.
"""

import importlib

from django.db import migrations, models

# SQLite copies a table to alter a column: the copy loses its triggers, and the triggers of
# the other tables, which name generation_generation, stop the copy of that one. So on SQLite
# the version triggers of 0007 are dropped first and made again at the end (0010 explains).
_version = importlib.import_module("generation.migrations.0007_generation_version")
_restore = importlib.import_module("generation.migrations.0010_restore_sqlite_version_triggers")


def drop_on_sqlite(apps, schema_editor):  # type: ignore[no-untyped-def]
    if schema_editor.connection.vendor == "sqlite":
        for statement in _version.SQLITE_BACKWARD:
            schema_editor.execute(statement)


class Migration(migrations.Migration):

    dependencies = [
        ('generation', '0012_stored_removal_renamed'),
    ]

    operations = [
        migrations.RunPython(drop_on_sqlite, _restore.recreate_on_sqlite),
        migrations.AlterField(
            model_name='attempt',
            name='blocked_images',
            field=models.PositiveSmallIntegerField(db_default=0, default=0, help_text="Images fal's safety checker withheld from this attempt's result."),
        ),
        migrations.AlterField(
            model_name='generation',
            name='notify',
            field=models.BooleanField(db_default=False, default=False),
        ),
        migrations.AlterField(
            model_name='generation',
            name='version',
            field=models.PositiveBigIntegerField(db_default=1, default=1, editable=False),
        ),
        migrations.AlterField(
            model_name='media',
            name='move_attempts',
            field=models.PositiveSmallIntegerField(db_default=0, default=0),
        ),
        migrations.AlterField(
            model_name='media',
            name='move_error',
            field=models.TextField(blank=True, db_default='', default=''),
        ),
        migrations.AlterField(
            model_name='media',
            name='move_to',
            field=models.CharField(blank=True, db_default='', default='', max_length=300),
        ),
        migrations.RunPython(_restore.recreate_on_sqlite, drop_on_sqlite),
    ]
