"""Media.share_id: each image's share page address, 128 random bits, distinct from its id.

Added nullable, filled row by row with fresh random ids, then made unique and required.
"""

import secrets

from django.db import migrations, models

import generation.models


def fill_share_ids(apps, schema_editor):
    Media = apps.get_model("generation", "Media")
    for media in Media.objects.filter(share_id__isnull=True).only("pk").iterator():
        Media.objects.filter(pk=media.pk).update(share_id=secrets.token_urlsafe(16))


class Migration(migrations.Migration):
    dependencies = [("generation", "0005_attempt_blocked_images")]

    operations = [
        migrations.AddField(
            model_name="media",
            name="share_id",
            field=models.CharField(editable=False, max_length=32, null=True),
        ),
        migrations.RunPython(fill_share_ids, migrations.RunPython.noop),
        migrations.AlterField(
            model_name="media",
            name="share_id",
            field=models.CharField(
                default=generation.models.new_share_id, editable=False, max_length=32, unique=True
            ),
        ),
    ]
