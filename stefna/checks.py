"""System checks for production misconfiguration (the design documents' troubleshooting list).

They run at start-up (runserver, migrate, check) and print warnings rather than
refusing to start: each one leaves a working site that is quietly not what the
operator meant, which is worse to find out from users than from the console.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import Tags, Warning, register

W001 = "stefna.W001"
W002 = "stefna.W002"
W003 = "stefna.W003"
W004 = "stefna.W004"


@register(Tags.security)
def check_production_configuration(app_configs: Any = None, **kwargs: Any) -> list[Warning]:
    warnings: list[Warning] = []
    if not settings.DEBUG and not settings.FAL_KEY:
        warnings.append(
            Warning(
                "FAL_KEY is not set while DEBUG is off: every image is made by the offline preview renderer.",
                hint="Set FAL_KEY to your fal.ai key. Leave it unset only for a local preview.",
                id=W001,
            )
        )
    cloudinary = {
        "cloud name": settings.CLOUDINARY_CLOUD_NAME,
        "API key": settings.CLOUDINARY_API_KEY,
        "API secret": settings.CLOUDINARY_API_SECRET,
    }
    missing = [name for name, value in cloudinary.items() if not value]
    if missing and len(missing) < len(cloudinary):
        warnings.append(
            Warning(
                f"Cloudinary is configured without its {' and '.join(missing)}: results stay on fal's "
                "expiring URLs or local storage instead of Cloudinary.",
                hint="Set CLOUDINARY_URL=cloudinary://KEY:SECRET@CLOUD, or all three of "
                "CLOUDINARY_CLOUD_NAME, CLOUDINARY_API_KEY and CLOUDINARY_API_SECRET.",
                id=W002,
            )
        )
    base_url = settings.FAL_WEBHOOK_BASE_URL
    if base_url and not base_url.lower().startswith("https://"):
        warnings.append(
            Warning(
                "FAL_WEBHOOK_BASE_URL is not an https:// address: fal's completion callbacks "
                "would travel unencrypted or not arrive at all.",
                hint="Use this site's public https base URL, e.g. https://stefna.example.com, "
                "or unset it to let the worker poll fal.",
                id=W003,
            )
        )
    if settings.ALLOW_PRIVATE_RESULT_URLS and not settings.DEBUG:
        warnings.append(
            Warning(
                "ALLOW_PRIVATE_RESULT_URLS is on while DEBUG is off: result images may be fetched from "
                "loopback and private addresses and over plain http (a way into internal services).",
                hint="Unset ALLOW_PRIVATE_RESULT_URLS; it exists for local fakes and tests only.",
                id=W004,
            )
        )
    return warnings
