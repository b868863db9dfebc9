"""HTML views for the studio, history, feed and share pages."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render


def studio(request: HttpRequest) -> HttpResponse:
    return render(request, "generation/studio.html")
