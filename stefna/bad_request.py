"""handler400: what Django answers before any view could (a Host not in ALLOWED_HOSTS, a
request it cannot make sense of), in the API's own shape under /api/.

API clients read every error as JSON with a stable `code` (CONTRACT); Django's own 400 is
a page. Pages keep templates/400.html.
"""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views import defaults

from stefna.errors import InvalidInput, error_body


def bad_request(request: HttpRequest, exception: Exception) -> HttpResponse:
    if request.path.startswith("/api/"):
        return JsonResponse(error_body("bad_request", str(InvalidInput.default_message)), status=400)
    return defaults.bad_request(request, exception)
