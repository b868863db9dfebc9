"""Presets: the styles a user picks from. Staff edit them in the admin.

A generation copies its preset's prompt, model chain and parameters when it starts,
so editing a preset never rewrites history.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.templatetags.static import static


class Preset(models.Model):
    class Kind(models.TextChoices):
        GHIBLI_REACTION = "ghibli_reaction", "Ghibli reaction"
        EMOTION_MASK = "emotion_mask", "Emotion mask"
        NEO_GLITCH = "neo_glitch", "Neo glitch"
        PRESET = "preset", "Preset"
        CUSTOM_PROMPT = "custom_prompt", "Custom prompt"
        IMAGE_TO_IMAGE = "image_to_image", "Image-to-image studio"

    slug = models.SlugField(max_length=64, unique=True, help_text="Stable id used by the API; do not change.")
    name = models.CharField(max_length=80)
    kind = models.CharField(max_length=32, choices=Kind.choices)
    description = models.CharField(max_length=280, blank=True)
    prompt = models.TextField(
        blank=True,
        help_text="Prompt sent to the model. `{prompt}` is replaced by the user's text.",
    )
    model_chain = models.JSONField(
        default=list, help_text="Ordered fal endpoint ids; the next one is tried when one fails."
    )
    parameters = models.JSONField(default=dict, blank=True, help_text="Extra model inputs, checked per endpoint.")
    loras = models.JSONField(default=list, blank=True, help_text='[{"path": "…", "scale": 1.0}]')
    num_images = models.PositiveSmallIntegerField(default=1)
    requires_prompt = models.BooleanField(default=False)
    is_active = models.BooleanField(default=True)
    sort_order = models.IntegerField(default=0)
    thumbnail = models.ImageField(upload_to="presets/", blank=True)

    class Meta:
        ordering = ["sort_order", "name"]
        indexes = [models.Index(fields=["is_active", "sort_order"], name="preset_active_order")]

    def __str__(self) -> str:
        return self.name

    @property
    def cost(self) -> int:
        return settings.GENERATION_COST

    @property
    def thumbnail_url(self) -> str:
        # Uploaded thumbnails win; the seeded defaults ship as static files.
        if self.thumbnail:
            return self.thumbnail.url
        return static(f"img/presets/{self.slug}.png")
