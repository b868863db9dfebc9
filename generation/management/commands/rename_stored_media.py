"""Move source photos and results stored under guessable names to unguessable ones.

Results named `{kind}_{generation id}_{n}` (and Cloudinary assets of the public
`upload` type) and photos under `IMAGES_UPLOAD/{user id}/…` predate private delivery;
this gives each a random name (Cloudinary assets also become `authenticated`) and
updates its row. Idempotent: what already has an unguessable name is skipped, so it
can be re-run after an interruption.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from generation import storage
from generation.models import Generation, Media


class Command(BaseCommand):
    help = "Rename stored photos and results to unguessable names (safe to run again)."

    def handle(self, *args: Any, **options: Any) -> None:
        sources = results = failed = 0
        for generation in Generation.objects.exclude(source_image="").only("pk", "source_image").iterator():
            try:
                sources += storage.source_rename(generation)
            except Exception as exc:
                failed += 1
                self.stderr.write(f"photo of generation {generation.pk}: {exc}")
        for media in Media.objects.filter(persisted=True).exclude(storage_key="").iterator():
            try:
                results += storage.media_rename(media)
            except Exception as exc:
                failed += 1
                self.stderr.write(f"image {media.pk}: {exc}")
        self.stdout.write(f"Renamed {sources} photos and {results} images; {failed} failed.")
        if failed:
            raise SystemExit(1)
