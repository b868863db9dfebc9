"""Helpers for admin actions: a confirmation form step, and refusals shown as messages.

Admin actions call services; a service refuses with a DomainError (refunding twice,
retrying a succeeded generation, ...). Those become one admin error message per
object instead of a 500, and the objects that could be handled still are.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.db.models import QuerySet
from django.http import HttpRequest
from django.template.response import TemplateResponse
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from stefna.errors import DomainError

# Django 6.1 can show an action on the change page too; operators mostly act on one
# generation they just looked at, so every operator action is offered in both places.
BOTH_LOCATIONS = [admin.ActionLocation.CHANGE_LIST, admin.ActionLocation.CHANGE_FORM]
CHANGE_FORM_ACTION_FIELD = f"{admin.ActionLocation.CHANGE_FORM.value}-action"


class ReadOnlyInline(admin.TabularInline):  # type: ignore[type-arg]
    """Related records shown on an object's page that staff read but never edit there
    (attempts, images, ledger entries, Stripe events): each changes through its service."""

    extra = 0
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


def one_time_key_field() -> forms.UUIDField:
    """A hidden field holding a key made when the form is shown, for an action that must
    happen once however often its form is sent (a double click, a browser resubmit): the
    service keeps the key on what it wrote and refuses it the second time."""
    out_of_date = gettext_lazy("This form is out of date: choose the action again.")
    return forms.UUIDField(
        widget=forms.HiddenInput, initial=uuid.uuid4, error_messages={"required": out_of_date, "invalid": out_of_date}
    )


def apply_to_each(
    request: HttpRequest,
    objects: Iterable[Any],
    call: Callable[[Any], object],
    *,
    done: Callable[[int], str],
    label: Callable[[Any], str] = str,
) -> int:
    """Run `call(obj)` for each object; DomainErrors become error messages. Returns the successes.

    `done(count)` writes the message sent when at least one call succeeded: a callable, so
    the caller's `ngettext` picks the language's singular or plural for the count.
    """
    succeeded = 0
    for obj in objects:
        try:
            call(obj)
        except DomainError as error:
            messages.error(request, _("%(object)s: %(problem)s") % {"object": label(obj), "problem": error.message})
        else:
            succeeded += 1
    if succeeded:
        messages.success(request, done(succeeded))
    return succeeded


def action_with_form(
    modeladmin: admin.ModelAdmin,  # type: ignore[type-arg]
    request: HttpRequest,
    queryset: QuerySet,  # type: ignore[type-arg]
    *,
    form_class: type[forms.Form],
    title: str,
    submit_label: str,
    apply: Callable[[dict[str, Any]], object],
    describe: Callable[[Any], str] = str,
    warning: str = "",
) -> TemplateResponse | None:
    """An admin action with an intermediate form (a reason, an amount), or a bare
    confirmation step (a form without fields) for an action that moves money.

    The first POST (from the action menu) renders the form; its submit posts the same
    action and selection back with `apply`, and a valid form runs `apply(cleaned_data)`
    and returns None, which makes the admin redirect back to the page it came from.
    `describe` is each object's line in the list of what the action applies to, and
    `warning` says what cannot be undone.
    """
    if "apply" in request.POST:
        form = form_class(request.POST)
        if form.is_valid():
            apply(form.cleaned_data)
            return None
    else:
        form = form_class()
    action_field = CHANGE_FORM_ACTION_FIELD if CHANGE_FORM_ACTION_FIELD in request.POST else "action"
    action_name = request.POST.get(action_field, "")
    if action_field == "action":
        action_name = request.POST.getlist("action")[_action_index(request)] if request.POST.getlist("action") else ""
    context = {
        **modeladmin.admin_site.each_context(request),
        "title": title,
        "subtitle": None,
        "form": form,
        "objects": [(obj.pk, describe(obj)) for obj in queryset],
        "warning": warning,
        "opts": modeladmin.model._meta,
        "action_field": action_field,
        "action_name": action_name,
        "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
        "submit_label": submit_label,
    }
    return TemplateResponse(request, "admin/action_form.html", context)


def _action_index(request: HttpRequest) -> int:
    try:
        return int(request.POST.get("index", 0))
    except ValueError:
        return 0
