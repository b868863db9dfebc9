"""Helpers for credit tests: real generations started through the real service."""

from __future__ import annotations

from generation.images import validate_image
from generation.services import generation_request
from tests.images import make_jpeg

_IMAGE = None


def photo():  # type: ignore[no-untyped-def]
    """One small validated photo, decoded once per process."""
    global _IMAGE
    if _IMAGE is None:
        _IMAGE = validate_image(make_jpeg(64, 48))
    return _IMAGE


def own_preset():  # type: ignore[no-untyped-def]
    """A preset of our own: transactional tests flush the seeded ones away."""
    from presets.tests.factories import PresetFactory

    return PresetFactory(slug="ledger-test-style", name="Ledger test style")


def start_generation(user, preset_slug=None, prompt=""):  # type: ignore[no-untyped-def]
    slug = preset_slug or own_preset().slug
    generation, created = generation_request(user=user, preset_slug=slug, image=photo(), prompt=prompt)
    assert created
    return generation


def finish(generation, status):  # type: ignore[no-untyped-def]
    """Move a generation to a final status the way the pipeline's conditional update does."""
    from generation.models import Generation

    Generation.objects.filter(pk=generation.pk).update(status=status)
    generation.refresh_from_db()
    return generation
