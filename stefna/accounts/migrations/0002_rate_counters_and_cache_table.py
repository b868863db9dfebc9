from django.core.management import call_command
from django.db import migrations, models


def create_cache_table(apps, schema_editor):
    # The database cache (used when REDIS_URL is unset) needs its table; createcachetable
    # is idempotent and does nothing for non-database caches.
    call_command("createcachetable", database=schema_editor.connection.alias, verbosity=0)


class Migration(migrations.Migration):
    dependencies = [("accounts", "0001_initial")]

    operations = [
        migrations.CreateModel(
            name="RateCounter",
            fields=[
                ("key", models.CharField(max_length=250, primary_key=True, serialize=False)),
                ("count", models.PositiveIntegerField(default=0)),
                ("expires_at", models.DateTimeField(db_index=True)),
            ],
            options={"db_table": "stefna_rate_counters"},
        ),
        migrations.RunPython(create_cache_table, migrations.RunPython.noop),
    ]
