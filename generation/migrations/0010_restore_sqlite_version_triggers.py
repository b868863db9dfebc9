"""Create the version triggers of 0007 again on SQLite.

SQLite cannot add most columns in place: Django's schema editor copies the table into a
new one, and a table's triggers do not survive the copy. 0009 added columns to
generation_media that way, which dropped its three triggers, so an image's changes no
longer moved its generation's version (stale ETags and live status). PostgreSQL alters
tables in place and keeps them.

A migration that later rebuilds generation_generation, generation_attempt or
generation_media on SQLite must end with this operation again
(`generation/tests/test_version.py` checks that every trigger exists).
"""

import importlib

from django.db import migrations

_version = importlib.import_module("generation.migrations.0007_generation_version")


def recreate_on_sqlite(apps, schema_editor):
    if schema_editor.connection.vendor != "sqlite":
        return
    for statement in [*_version.SQLITE_BACKWARD, *_version.SQLITE_FORWARD]:
        schema_editor.execute(statement)


class Migration(migrations.Migration):
    dependencies = [("generation", "0009_storage_moves_and_removals")]

    operations = [migrations.RunPython(recreate_on_sqlite, migrations.RunPython.noop)]
