"""System checks for production misconfiguration (the design documents' troubleshooting list).

They run at start-up (runserver, migrate, check) and print warnings rather than
refusing to start: each one leaves a working site that is quietly not what the
operator meant, which is worse to find out from users than from the console.
"""

from __future__ import annotations

import ipaddress
import os
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.core.checks import Tags, Warning, register

W001 = "stefna.W001"
W002 = "stefna.W002"
W003 = "stefna.W003"
W004 = "stefna.W004"
W005 = "stefna.W005"
W006 = "stefna.W006"
W007 = "stefna.W007"
W008 = "stefna.W008"

# Caches that live inside one process: each web process and worker would count rate
# limits and hold cached keys on its own.
PER_PROCESS_CACHES = (
    "django.core.cache.backends.locmem.LocMemCache",
    "django.core.cache.backends.dummy.DummyCache",
)
LOCAL_STORAGES = (
    "django.core.files.storage.FileSystemStorage",
    "django.core.files.storage.filesystem.FileSystemStorage",
)


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
    return warnings


def _is_public_host(host: str) -> bool:
    """Could fal, on the internet, reach this host name? (No DNS lookup: names only.)"""
    host = host.strip("[]").lower()
    if not host or host == "localhost" or host.endswith((".localhost", ".local", ".internal", ".lan")):
        return False
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return "." in host  # a bare name ("web", "stefna") only resolves inside a network
    return address.is_global


def _processes_implied() -> int:
    """How many web processes the environment says will serve this site."""
    try:
        return int(os.environ.get("WEB_CONCURRENCY", "") or 1)
    except ValueError:
        return 1


@register(Tags.security)
def check_operations_configuration(app_configs: Any = None, **kwargs: Any) -> list[Warning]:
    """Settings that work on one laptop and quietly break a real deployment."""
    warnings: list[Warning] = []
    cache_backend = settings.CACHES.get("default", {}).get("BACKEND", "")
    if not settings.DEBUG and cache_backend in PER_PROCESS_CACHES:
        warnings.append(
            Warning(
                "The cache lives inside each process while DEBUG is off: every web process and worker "
                "keeps its own rate-limit counts and cached keys, so limits multiply with processes.",
                hint="Set REDIS_URL, or use a cache every process shares (the database cache).",
                id=W004,
            )
        )
    storage_backend = settings.STORAGES.get("default", {}).get("BACKEND", "")
    processes = _processes_implied()
    if processes > 1 and storage_backend in LOCAL_STORAGES and not getattr(settings, "MEDIA_ROOT_SHARED", False):
        warnings.append(
            Warning(
                f"WEB_CONCURRENCY={processes} with photos and results on this machine's disk "
                f"({settings.MEDIA_ROOT}): on more than one machine, a photo uploaded to one is missing on "
                "the others and on the workers.",
                hint="Use shared storage (AWS_STORAGE_BUCKET_NAME for S3-compatible storage, plus Cloudinary "
                "for results), or, when every process runs on this one machine or MEDIA_ROOT is a shared "
                "mount, set MEDIA_ROOT_SHARED=1 to say so. See docs/deploy.md.",
                id=W005,
            )
        )
    allow_private = getattr(settings, "ALLOW_PRIVATE_RESULT_URLS", None)
    if allow_private is None:  # read here until the setting itself exists everywhere
        allow_private = os.environ.get("ALLOW_PRIVATE_RESULT_URLS", "").strip().lower() in {"1", "true", "yes", "on"}
    if not settings.DEBUG and allow_private:
        warnings.append(
            Warning(
                "ALLOW_PRIVATE_RESULT_URLS is on while DEBUG is off: result images may be fetched from "
                "loopback and private addresses and over plain http, so a forged result URL can reach "
                "services inside your network.",
                hint="Unset ALLOW_PRIVATE_RESULT_URLS in production; it exists for local fakes and tests.",
                id=W006,
            )
        )
    base_url = settings.FAL_WEBHOOK_BASE_URL
    if base_url and not _is_public_host(urlsplit(base_url if "//" in base_url else f"//{base_url}").hostname or ""):
        warnings.append(
            Warning(
                f"FAL_WEBHOOK_BASE_URL ({base_url}) is not a public address: fal cannot reach it, so no "
                "completion callback arrives and every job waits for the poller's timeouts.",
                hint="Use this site's public https base URL, or unset it to let the worker poll fal.",
                id=W007,
            )
        )
    if not settings.DEBUG and settings.OFFLINE_CHECKOUT and not settings.STRIPE_SECRET_KEY:
        warnings.append(
            Warning(
                'OFFLINE_CHECKOUT is on while DEBUG is off and no Stripe key is set: "Buy credits" '
                "opens the local test checkout, and anyone signed in gets credit packs for free.",
                hint="Unset OFFLINE_CHECKOUT in production and set STRIPE_SECRET_KEY to sell credits.",
                id=W008,
            )
        )
    return warnings
