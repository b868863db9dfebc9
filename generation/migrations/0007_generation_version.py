"""Generation.version: a number that moves whenever anything a viewer sees changes.

Why triggers and not Python: a generation is written by many functions (request, submit,
check, finish, stop, webhook, media, upkeep, the admin, staff commands), several of them
with `QuerySet.update()`, which runs no model code. A trigger bumps the version for every
writer, present and future, in the same statement and transaction as the change, so the
version can never lag behind what a reader sees, and there is exactly one mechanism.

Rules (the same on both backends):
- An UPDATE of the generation that changes a visible column moves the version to the
  old one plus one. Lease, next_check_at, updated_at, notified_at and the other internal
  columns (written on every poll round) move nothing.
- The version never goes back: a save() of a stale instance writes the value it read,
  which the trigger replaces with the current one. A write of a *higher* value is a
  request for a bump (the attempt and media triggers below make it).
- An attempt or image inserted, deleted or changed in a visible column bumps its
  generation (images: also persisted, is_public and hidden).
- On PostgreSQL each bump also sends `NOTIFY stefna_generation, '<id>:<version>'`,
  delivered at commit (never for a rolled-back change); generation/live.py listens.
"""

from django.db import migrations, models

# The Generation columns that GET /api/generations/{id} and the status card show.
GENERATION_VISIBLE = (
    "status",
    "queue_position",
    "logs",
    "current_model",
    "error_code",
    "error_message",
    "completed_at",
    "prompt",
    "prompt_sent",
    "preset_slug",
    "preset_name",
    "kind",
    "cost",
    "source_image",
    "deleted_at",
)
ATTEMPT_VISIBLE = ("model", "fal_job_id", "status", "error", "started_at", "finished_at")
MEDIA_VISIBLE = (
    "url",
    "original_url",
    "fal_job_id",
    "model",
    "width",
    "height",
    "persisted",
    "is_public",
    "hidden",
    "index",
)


def _changed(columns: tuple[str, ...], *, distinct: str) -> str:
    return " OR ".join(f'NEW."{column}" {distinct} OLD."{column}"' for column in columns)


POSTGRES_FORWARD = f"""
CREATE OR REPLACE FUNCTION generation_version_bump() RETURNS trigger AS $$
BEGIN
    IF ({_changed(GENERATION_VISIBLE, distinct="IS DISTINCT FROM")}) OR NEW.version > OLD.version THEN
        NEW.version := OLD.version + 1;
        PERFORM pg_notify('stefna_generation', NEW.id::text || ':' || NEW.version::text);
    ELSE
        NEW.version := OLD.version;
    END IF;
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER generation_version_bump BEFORE UPDATE ON generation_generation
    FOR EACH ROW EXECUTE FUNCTION generation_version_bump();

CREATE OR REPLACE FUNCTION generation_version_bump_child() RETURNS trigger AS $$
DECLARE
    changed boolean;
BEGIN
    IF TG_OP = 'DELETE' THEN
        UPDATE generation_generation SET version = version + 1 WHERE id = OLD.generation_id;
        RETURN OLD;
    END IF;
    IF TG_OP = 'INSERT' THEN
        changed := true;
    ELSIF TG_TABLE_NAME = 'generation_media' THEN
        changed := {_changed(MEDIA_VISIBLE, distinct="IS DISTINCT FROM")};
    ELSE
        changed := {_changed(ATTEMPT_VISIBLE, distinct="IS DISTINCT FROM")};
    END IF;
    IF changed THEN
        UPDATE generation_generation SET version = version + 1 WHERE id = NEW.generation_id;
    END IF;
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER attempt_version_bump AFTER INSERT OR UPDATE OR DELETE ON generation_attempt
    FOR EACH ROW EXECUTE FUNCTION generation_version_bump_child();
CREATE TRIGGER media_version_bump AFTER INSERT OR UPDATE OR DELETE ON generation_media
    FOR EACH ROW EXECUTE FUNCTION generation_version_bump_child();
"""

POSTGRES_BACKWARD = """
DROP TRIGGER IF EXISTS media_version_bump ON generation_media;
DROP TRIGGER IF EXISTS attempt_version_bump ON generation_attempt;
DROP TRIGGER IF EXISTS generation_version_bump ON generation_generation;
DROP FUNCTION IF EXISTS generation_version_bump_child();
DROP FUNCTION IF EXISTS generation_version_bump();
"""


def _sqlite_child(table: str, visible: tuple[str, ...]) -> list[str]:
    bump = 'UPDATE generation_generation SET version = version + 1 WHERE id = {row}."generation_id"'
    return [
        f"CREATE TRIGGER {table}_version_insert AFTER INSERT ON {table} BEGIN {bump.format(row='NEW')}; END",
        f"CREATE TRIGGER {table}_version_delete AFTER DELETE ON {table} BEGIN {bump.format(row='OLD')}; END",
        f"CREATE TRIGGER {table}_version_update AFTER UPDATE ON {table} "
        f"WHEN {_changed(visible, distinct='IS NOT')} "
        f"BEGIN {bump.format(row='NEW')}; END",
    ]


# SQLite cannot assign NEW in a BEFORE trigger, so an AFTER trigger rewrites the row. One
# trigger, not two: with two, each one's UPDATE would fire the other. Its own UPDATE does
# not fire it again (the recursive_triggers pragma is off, SQLite's default, and Django
# leaves it so).
_VISIBLE_SQLITE = _changed(GENERATION_VISIBLE, distinct="IS NOT")
SQLITE_FORWARD = [
    "CREATE TRIGGER generation_version_bump AFTER UPDATE ON generation_generation "
    f"WHEN ({_VISIBLE_SQLITE}) OR NEW.version IS NOT OLD.version "
    "BEGIN UPDATE generation_generation SET version = CASE "
    f"WHEN ({_VISIBLE_SQLITE}) OR NEW.version > OLD.version THEN OLD.version + 1 "
    "ELSE OLD.version END WHERE id = NEW.id; END",
    *_sqlite_child("generation_attempt", ATTEMPT_VISIBLE),
    *_sqlite_child("generation_media", MEDIA_VISIBLE),
]
SQLITE_BACKWARD = [
    f"DROP TRIGGER IF EXISTS {name}"
    for name in (
        "generation_version_bump",
        "generation_attempt_version_insert",
        "generation_attempt_version_delete",
        "generation_attempt_version_update",
        "generation_media_version_insert",
        "generation_media_version_delete",
        "generation_media_version_update",
    )
]


def create_triggers(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    if vendor == "postgresql":
        schema_editor.execute(POSTGRES_FORWARD)
    elif vendor == "sqlite":
        for statement in SQLITE_FORWARD:
            schema_editor.execute(statement)


def drop_triggers(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    if vendor == "postgresql":
        schema_editor.execute(POSTGRES_BACKWARD)
    elif vendor == "sqlite":
        for statement in SQLITE_BACKWARD:
            schema_editor.execute(statement)


class Migration(migrations.Migration):
    dependencies = [("generation", "0006_media_share_id")]

    operations = [
        migrations.AddField(
            model_name="generation",
            name="version",
            field=models.PositiveBigIntegerField(default=1, editable=False),
        ),
        migrations.RunPython(create_triggers, drop_triggers),
    ]
