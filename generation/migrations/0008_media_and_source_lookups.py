"""Indexes for the two media routes that find their row by file name on every request:
/media/generated/<name> (Media.storage_key) and /media/sources/<name>
(Generation.source_image). Without them each image request read the whole table
(bench/crowd.py: the busiest statement in PostgreSQL).
"""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("generation", "0007_generation_version")]

    operations = [
        migrations.AddIndex(
            model_name="generation",
            index=models.Index(fields=["source_image"], name="gen_source_image"),
        ),
        migrations.AddIndex(
            model_name="media",
            index=models.Index(fields=["storage_key"], name="media_storage_key"),
        ),
    ]
