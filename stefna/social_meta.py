"""What a shared link unfurls with (Open Graph and Twitter card tags): the values every
public page gives `templates/partials/social_meta.html`, the one template that writes them.

Addresses are absolute, as unfurlers need, and canonical: the page's path without its
query string. The tags speak the visitor's language (the page's), with og:locale and the
other language as og:locale:alternate.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.http import HttpRequest
from django.templatetags.static import static

from stefna.i18n_formats import active_language

# Open Graph wants a territory: og:locale="id_ID".
OG_LOCALES = {"en": "en_US", "id": "id_ID"}

# static/img/social-preview.png, drawn by docs/social_preview.py.
SITE_IMAGE = "img/social-preview.png"
SITE_IMAGE_SIZE = (1200, 630)


@dataclass(frozen=True)
class SocialMeta:
    page_url: str
    image_url: str
    image_width: int | None
    image_height: int | None
    image_type: str
    og_type: str = "website"
    robots: str = ""  # "noindex…": a page not to list (and then no canonical link)

    @property
    def og_locale(self) -> str:
        return OG_LOCALES.get(active_language(), "en_US")

    @property
    def og_locale_alternates(self) -> list[str]:
        language = active_language()
        return [code for lang, code in OG_LOCALES.items() if lang != language]


def social_meta(
    request: HttpRequest,
    *,
    path: str,
    image_url: str = "",
    image_size: tuple[int | None, int | None] | None = None,
    image_type: str = "image/png",
    og_type: str = "website",
    robots: str = "",
) -> SocialMeta:
    """The tags' values for the page at `path`; without `image_url`, the site's preview image."""
    if not image_url:
        image_url, image_size, image_type = static(SITE_IMAGE), SITE_IMAGE_SIZE, "image/png"
    width, height = image_size or (None, None)
    return SocialMeta(
        page_url=request.build_absolute_uri(path),
        image_url=request.build_absolute_uri(image_url),
        image_width=width,
        image_height=height,
        image_type=image_type,
        og_type=og_type,
        robots=robots,
    )
