"""Operator routes: the health probe and the staff dashboard.

Included before `admin/` in stefna/urls.py so /admin/dashboard/ is not swallowed by
the admin's catch-all; the dashboard goes through `admin.site.admin_view`, which
gives it the admin's staff check, login redirect and no-cache headers.
"""

from django.contrib import admin
from django.urls import path

from generation.admin import dashboard_view
from stefna.health import healthz

urlpatterns = [
    path("healthz", healthz, name="healthz"),
    path("admin/dashboard/", admin.site.admin_view(dashboard_view), name="admin_dashboard"),
]
