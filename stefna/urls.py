from django.conf import settings
from django.contrib import admin
from django.urls import URLPattern, URLResolver, include, path, re_path
from django.views.i18n import JavaScriptCatalog

from generation.storage import CLOUDINARY_PATH
from stefna.api import api
from stefna.i18n import set_language
from stefna.media import serve_cloudinary_image, serve_media
from stefna.metrics import metrics_view

urlpatterns: list[URLPattern | URLResolver] = [
    path("", include("stefna.ops_urls")),  # /healthz and /admin/dashboard/ (before admin's catch-all)
    path("metrics", metrics_view, name="metrics"),  # Prometheus: staff or METRICS_TOKEN
    path("admin/", admin.site.urls),
    path("api/", api.urls),
    path("accounts/", include("stefna.accounts.urls")),
    path("accounts/", include("stefna.social")),  # Google sign-in (allauth)
    path("language/", set_language, name="set_language"),
    path("jsi18n/", JavaScriptCatalog.as_view(), name="javascript-catalog"),
    path("credits/", include("credits.urls")),  # buying credits (issue 18)
    path("", include("generation.urls")),
    # Cloudinary results, through the ownership check (stefna/media.py).
    path(f"{CLOUDINARY_PATH}<path:public_id>", serve_cloudinary_image, name="cloudinary_image"),
]

if settings.SERVE_MEDIA:
    # Local-storage media (development, offline mode, single-machine installs). With a
    # bucket or Cloudinary configured, files are served from there instead.
    media_prefix = settings.MEDIA_URL.lstrip("/")
    urlpatterns += [re_path(rf"^{media_prefix}(?P<path>.*)$", serve_media, name="media")]

# The database down or the pool exhausted is a 503 (JSON under /api/), anything else a 500.
handler400 = "stefna.bad_request.bad_request"
handler500 = "stefna.unavailable.server_error"
