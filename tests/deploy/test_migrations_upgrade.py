"""Migrations run while the previous version still serves (docs/deploy.md, "Upgrades"), so
each must leave the database usable by the code before it.

A column added to a table that already exists is the usual trap: Django's `default=` is
applied by Python, and AddField drops it from the column once the rows are filled. The
old code's INSERTs do not name the new column, so a NOT NULL column without a database
default refuses every row they write until the old processes are gone. On 7 Dec, with the
previous release serving, `migrate` to credits 0007 made every checkout a 500 (an
IntegrityError on `credits_spent_at_dispute`). Such columns take `db_default` (or
`null=True`); a later migration that sets it mends an earlier one.
"""

from __future__ import annotations

from django.apps import apps
from django.db.migrations.loader import MigrationLoader
from django.db.migrations.operations import AddField, CreateModel
from django.db.models import NOT_PROVIDED

OURS = {"accounts", "generation", "credits", "presets"}
# Left as they are, with the reason. Upgrading across one of these means stopping the web
# and the workers before `migrate` (docs/deploy.md says which).
NOT_NULL_WITHOUT_DEFAULT = {
    # 128 random bits made by Python (secrets.token_urlsafe), unique: no database default
    # makes the same value on both PostgreSQL and SQLite. Added in generation 0006.
    ("generation", "media", "share_id"),
}


def test_every_added_column_takes_the_previous_versions_inserts():
    loader = MigrationLoader(None, ignore_no_migrations=True)
    final = loader.project_state()
    ours = {key: migration for key, migration in loader.disk_migrations.items() if key[0] in OURS}
    assert {app for app, _name in ours} == OURS
    created_by = {
        (app, operation.name_lower): name
        for (app, name), migration in ours.items()
        for operation in migration.operations
        if isinstance(operation, CreateModel)
    }
    trapped = []
    for (app, name), migration in sorted(ours.items()):
        for operation in migration.operations:
            if not isinstance(operation, AddField) or created_by.get((app, operation.model_name_lower)) == name:
                continue  # a table this migration makes is new to the old code too
            field = final.models[app, operation.model_name_lower].fields[operation.name]
            if field.many_to_many or field.null or field.db_default is not NOT_PROVIDED:
                continue
            if (app, operation.model_name_lower, operation.name) in NOT_NULL_WITHOUT_DEFAULT:
                continue
            trapped.append(f"{app} {name}: {operation.model_name}.{operation.name}")
    assert not trapped, "NOT NULL without a database default (add db_default): " + ", ".join(trapped)


def test_the_python_default_still_fills_new_objects():
    """`db_default` beside `default`: objects made in Python keep a real value (not a
    DatabaseDefault placeholder) before they are saved."""
    User = apps.get_model("accounts", "User")
    Purchase = apps.get_model("credits", "Purchase")
    assert User().language == ""
    assert Purchase().credits_spent_at_dispute == 0
