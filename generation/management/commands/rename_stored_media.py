"""Move source photos and results stored under guessable names to unguessable ones.

Results named `{kind}_{generation id}_{n}` (and Cloudinary assets of the public
`upload` type) and photos under `IMAGES_UPLOAD/{user id}/…` predate private delivery;
this gives each a random name (Cloudinary assets also become `authenticated`) and
updates its row. Idempotent: what already has an unguessable name is skipped, so it
can be re-run after an interruption. A row deleted while its object was renamed leaves
nothing behind: what no row points to is owed for removal (generation/services/revoke.py).
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from generation.models import Generation, Media
from generation.services import revoke


class Command(BaseCommand):
    help = "Rename stored photos and results to unguessable names (safe to run again)."

    def handle(self, *args: Any, **options: Any) -> None:
        sources = results = failed = 0
        for generation in Generation.objects.exclude(source_image="").only("pk", "source_image").iterator():
            try:
                sources += revoke.legacy_source_rename(generation=generation)
            except Exception as exc:
                failed += 1
                self.stderr.write(f"photo of generation {generation.pk}: {exc}")
        for media in Media.objects.filter(persisted=True).exclude(storage_key="").iterator():
            try:
                results += revoke.legacy_media_rename(media=media)
            except Exception as exc:
                failed += 1
                self.stderr.write(f"image {media.pk}: {exc}")
        self.stdout.write(f"Renamed {sources} photos and {results} images; {failed} failed.")
        if failed:
            raise SystemExit(1)
