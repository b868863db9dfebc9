"""What pages and logs call a model endpoint."""

from __future__ import annotations

from django.conf import settings
from django.utils.translation import gettext

from .registry import MODELS


def model_label(endpoint: str) -> str:
    """The model's name for people. In offline preview mode no fal model runs, so the
    offline renderer is named (with the model it stands in for), never fal's model alone."""
    spec = MODELS.get(endpoint)
    label = spec.label if spec else endpoint
    if settings.OFFLINE_MODE:
        return gettext("the offline preview renderer (standing in for %(model)s)") % {"model": label}
    return label
