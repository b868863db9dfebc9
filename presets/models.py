"""Presets: the styles a user picks from. Staff edit them in the admin.

A generation copies its preset's prompt, model chain and parameters when it starts,
so editing a preset never rewrites history.
"""

from __future__ import annotations

import re
from functools import lru_cache

from django.conf import settings
from django.contrib.staticfiles import finders
from django.core.exceptions import ValidationError
from django.db import models
from django.templatetags.static import static
from django.utils.translation import gettext_lazy as _

from generation.registry import MODELS, ModelConfigError, chain_needs_image, validate_model_config
from stefna.i18n_formats import in_active_language

# Only `{prompt}` is replaced (with str.replace, so other braces pass through untouched);
# anything else that looks like a placeholder is almost certainly a typo.
PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


# Where uploaded thumbnails are stored under MEDIA_ROOT; /media/ serves them to anyone
# (stefna/media.py), as GET /api/presets and the studio link to them.
THUMBNAILS_FOLDER = "presets"


class Preset(models.Model):
    class Kind(models.TextChoices):
        GHIBLI_REACTION = "ghibli_reaction", _("Ghibli reaction")
        EMOTION_MASK = "emotion_mask", _("Emotion mask")
        NEO_GLITCH = "neo_glitch", _("Neo glitch")
        PRESET = "preset", _("Preset")
        CUSTOM_PROMPT = "custom_prompt", _("Custom prompt")
        IMAGE_TO_IMAGE = "image_to_image", _("Image-to-image studio")

    slug = models.SlugField(max_length=64, unique=True, help_text="Stable id used by the API; do not change.")
    name = models.CharField(max_length=80)
    kind = models.CharField(max_length=32, choices=Kind.choices)
    description = models.CharField(max_length=280, blank=True)
    # Bahasa Indonesia, edited in the admin; empty means "show the English one".
    # db_default too: while `migrate` adds a column, the previous version still serves and inserts
    # rows without it (docs/deploy.md, Upgrades; tests/deploy/test_migrations_upgrade.py).
    name_id = models.CharField("name (Bahasa Indonesia)", max_length=80, blank=True, default="", db_default="")
    description_id = models.CharField(
        "description (Bahasa Indonesia)", max_length=280, blank=True, default="", db_default=""
    )
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
    thumbnail = models.ImageField(upload_to=f"{THUMBNAILS_FOLDER}/", blank=True)

    class Meta:
        ordering = ["sort_order", "name"]
        indexes = [models.Index(fields=["is_active", "sort_order"], name="preset_active_order")]

    def __str__(self) -> str:
        return self.name

    # Kinds whose whole point is the user's own text.
    PROMPT_KINDS = (Kind.CUSTOM_PROMPT, Kind.IMAGE_TO_IMAGE)

    def clean(self) -> None:
        """Check the model settings against the registry and the prompt against the settings.

        Raises a ValidationError keyed by field, so the admin shows each message next to
        the field it is about.
        """
        errors: dict[str, str] = {}
        chain_checked = False
        if self.num_images is not None:  # None: the form already reports the empty field
            try:
                validate_model_config(
                    model_chain=self.model_chain,
                    parameters=self.parameters,
                    loras=self.loras,
                    num_images=self.num_images,
                )
                chain_checked = True
            except ModelConfigError as error:
                errors[error.field] = error.message
        template = self.prompt or ""
        unknown = sorted({name for name in PLACEHOLDER.findall(template) if name != "prompt"})
        if unknown:
            errors.setdefault(
                "prompt",
                f"Unknown placeholder {{{unknown[0]}}}: only {{prompt}} is replaced (by the user's text).",
            )
        if self.requires_prompt and template.strip() and "{prompt}" not in template:
            errors.setdefault(
                "prompt",
                "This style asks the user for a prompt, so the template must say where it goes: add {prompt}.",
            )
        if self.kind in self.PROMPT_KINDS and not self.requires_prompt:
            errors["requires_prompt"] = f"A {self.get_kind_display()} style must ask the user for a prompt."
        if chain_checked and not any(MODELS[endpoint].takes_prompt for endpoint in self.model_chain):
            # build_input sends no prompt to such models: the text would vanish without a trace.
            label = MODELS[self.model_chain[0]].label
            if self.requires_prompt:
                errors.setdefault(
                    "requires_prompt",
                    f"No model in the chain reads a prompt ({label} ignores it), so the user's text would be "
                    "thrown away: add a model that takes a prompt, or don't ask for one.",
                )
            elif template.strip():
                errors.setdefault(
                    "prompt",
                    f"No model in the chain reads a prompt ({label} ignores it), so this text would never be "
                    "sent: add a model that takes a prompt, or leave the prompt empty.",
                )
        if not template.strip() and not self.requires_prompt and chain_checked:
            needs_prompt = [MODELS[endpoint].label for endpoint in self.model_chain if MODELS[endpoint].takes_prompt]
            if needs_prompt:
                errors.setdefault(
                    "prompt",
                    f"{needs_prompt[0]} works from a prompt: write one, or require one from the user.",
                )
        if errors:
            raise ValidationError(errors)

    @property
    def display_name(self) -> str:
        """The name in the active language (English when it has no translation)."""
        return in_active_language(self, "name")

    @property
    def display_description(self) -> str:
        return in_active_language(self, "description")

    @property
    def needs_photo(self) -> bool:
        """Whether this style transforms a photo (derived from its model chain, so it can
        never disagree with what the models take: see registry.chain_needs_image)."""
        return chain_needs_image(list(self.model_chain or []))

    @property
    def cost(self) -> int:
        return settings.GENERATION_COST

    @property
    def thumbnail_url(self) -> str:
        # Uploaded thumbnails win; the seeded defaults ship as static files
        # (presets/thumbnails.py draws them); a new preset without either gets its kind's.
        if self.thumbnail:
            return self.thumbnail.url
        path = _static_thumbnail(self.slug, self.kind)
        try:
            return static(path)
        except ValueError:
            # The manifest storage raises for a file missing from STATIC_ROOT (collectstatic
            # not run since it was added); a listing must not fail over a picture.
            return f"{settings.STATIC_URL}{path}"


# Every kind has a picture; this one also covers a kind added later without one.
GENERIC_THUMBNAIL = "img/presets/kind-preset.png"


@lru_cache(maxsize=512)
def _static_thumbnail(slug: str, kind: str) -> str:
    # Looked up once per slug per process: a file lookup, not a query.
    for path in (f"img/presets/{slug}.png", f"img/presets/kind-{kind}.png"):
        if finders.find(path):
            return path
    return GENERIC_THUMBNAIL
