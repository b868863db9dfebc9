"""The web request a generation came from (its X-Request-ID), for the worker's log lines.

`db_default` so that the previous release, still serving while `migrate` runs, inserts
rows without naming the column (0013 explains). SQLite copies the table to add a NOT NULL
column: its version triggers are dropped first and made again at the end, as in 0013.
"""

import importlib

from django.db import migrations, models

_0013 = importlib.import_module("generation.migrations.0013_db_defaults_for_added_columns")
_restore = importlib.import_module("generation.migrations.0010_restore_sqlite_version_triggers")


class Migration(migrations.Migration):

    dependencies = [
        ('generation', '0013_db_defaults_for_added_columns'),
    ]

    operations = [
        migrations.RunPython(_0013.drop_on_sqlite, _restore.recreate_on_sqlite),
        migrations.AddField(
            model_name='generation',
            name='origin_request_id',
            field=models.CharField(blank=True, db_default='', default='', max_length=128),
        ),
        migrations.RunPython(_restore.recreate_on_sqlite, _0013.drop_on_sqlite),
    ]
