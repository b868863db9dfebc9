"""Model providers behind one protocol (see base.py). Only generation's services use them."""

from __future__ import annotations

from django.conf import settings

from .base import Provider, ProviderState, ProviderStatus

LOCAL_PREFIX = "local-"


def get_provider(request_id: str = "") -> Provider:
    """The provider for a new job (fal when FAL_KEY is set, else the offline one), or
    for an existing job by its request id (the local provider's ids start with "local-")."""
    from .fal import FalProvider
    from .local import LocalProvider

    if request_id.startswith(LOCAL_PREFIX) or (not request_id and not settings.FAL_KEY):
        return LocalProvider()
    return FalProvider(settings.FAL_KEY)


__all__ = ["Provider", "ProviderState", "ProviderStatus", "get_provider", "LOCAL_PREFIX"]
