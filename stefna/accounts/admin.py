from __future__ import annotations

import hashlib
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.contrib.auth.forms import AdminUserCreationForm, UserChangeForm
from django.core.exceptions import ValidationError
from django.db.models import F, QuerySet
from django.http import HttpRequest
from django.template.response import TemplateResponse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, ngettext

from credits.admin import grant_credits_to, user_records_links
from credits.models import Wallet
from credits.reconcile import find_ledger_problems
from credits.selectors import free_credits_as_of_today
from stefna.admin_actions import BOTH_LOCATIONS, action_with_form, apply_to_each
from stefna.errors import DomainError
from stefna.i18n_formats import grouped

from .deletion import account_delete, account_is_deleted
from .models import ApiToken, LoginCode, User
from .services import api_token_revoke, email_addresses_follow, normalize_email


class CloseAccountForm(forms.Form):
    confirm = forms.CharField(
        label=gettext_lazy("Type the account's email"),
        max_length=254,
        help_text=gettext_lazy("As the owner confirms in “Delete my account”."),
        widget=forms.TextInput(attrs={"size": 40, "autocomplete": "off"}),
    )


class NormalizedEmailMixin:
    """Sign-in looks an account up by its lower-cased email (normalize_email): one saved
    as "Ada@Example.com" could never be signed into again, and the next sign-in code
    would open a new, empty account instead."""

    cleaned_data: dict[str, Any]
    instance: User

    def clean_email(self) -> str:
        try:
            email = normalize_email(self.cleaned_data.get("email", ""))
        except DomainError as error:
            raise ValidationError(error.message) from error
        if User.objects.filter(email=email).exclude(pk=self.instance.pk).exists():
            raise ValidationError(_("Another account already uses this email."))
        return email


class StaffUserChangeForm(NormalizedEmailMixin, UserChangeForm):  # type: ignore[type-arg]
    """Save writes every field of the form, as it was when the page was opened: a page
    opened before the owner deleted the account would put their email, name and "active"
    back on the anonymised row, and one opened before another staff member's save would
    silently undo it. The page carries a digest of the row as rendered; Save compares it
    with the row under the account's lock (the one deletion and charges take, held until
    the admin's transaction commits the save) and refuses if they differ."""

    row_digest = forms.CharField(widget=forms.HiddenInput, required=False)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if not self.is_bound:
            self.initial["row_digest"] = self._digest_of(self.instance)

    def _digest_of(self, user: User) -> str:
        values = []
        # The fields this form writes (the digest itself is no column).
        for field in (*User._meta.concrete_fields, *User._meta.many_to_many):
            if field.name not in self.fields:
                continue
            value = field.value_from_object(user)
            if field.many_to_many:
                value = sorted(str(related.pk) for related in value)
            values.append((field.name, str(value)))
        return hashlib.sha256(repr(values).encode()).hexdigest()

    def clean(self) -> dict[str, Any]:
        super().clean()
        cleaned = self.cleaned_data
        # Only ever validated in the admin's POST, inside its transaction.
        locked = User.objects.select_for_update(no_key=True).get(pk=self.instance.pk)
        if account_is_deleted(locked):
            raise ValidationError(_("This account was deleted: there is nothing left to edit."))
        if cleaned.get("row_digest") != self._digest_of(locked):
            raise ValidationError(
                _(
                    "This account changed since you opened this page (another staff member, or its owner). "
                    "Nothing was saved: reload the page and make your changes again."
                )
            )
        return cleaned


class StaffUserCreationForm(NormalizedEmailMixin, AdminUserCreationForm):  # type: ignore[type-arg]
    pass


@admin.register(User)
class UserAdmin(DjangoUserAdmin):
    form = StaffUserChangeForm
    add_form = StaffUserCreationForm
    ordering = ["email"]
    list_display = ["email", "display_name", "credits", "is_staff", "date_joined", "last_login"]
    # The id too: the logs name users by id (user=<uuid>), not by email.
    search_fields = ["email", "display_name", "=id"]
    search_help_text = gettext_lazy("An email, a display name, or a user id (as the logs give it).")
    fieldsets = (
        (None, {"fields": ("email", "display_name", "password", "row_digest")}),
        # Support's first questions about a person: what they hold, made and paid.
        (gettext_lazy("Credits and records"), {"fields": ("credits_summary", "ledger_check", "records")}),
        (
            gettext_lazy("Permissions"),
            {"fields": ("is_active", "is_staff", "is_superuser", "groups", "user_permissions")},
        ),
        (gettext_lazy("Dates"), {"fields": ("last_login", "date_joined")}),
    )
    add_fieldsets = ((None, {"classes": ("wide",), "fields": ("email", "password1", "password2")}),)
    actions = ["grant_credits", "delete_account"]
    readonly_fields = ["credits_summary", "ledger_check", "records"]

    def save_model(self, request: HttpRequest, obj: User, form: forms.ModelForm, change: bool) -> None:  # type: ignore[type-arg]
        super().save_model(request, obj, form, change)
        if change and "email" in form.changed_data:
            email_addresses_follow(user=obj)

    def get_queryset(self, request: HttpRequest) -> QuerySet[User]:
        # The balance comes in the same query (a LEFT JOIN on the wallet), not one per row.
        return super().get_queryset(request).annotate(wallet_balance=F("wallet__balance"))

    @admin.display(description=gettext_lazy("credits"), ordering="wallet_balance")
    def credits(self, user: User) -> int | None:
        return user.wallet_balance  # type: ignore[attr-defined]

    @admin.display(description=gettext_lazy("credits"))
    def credits_summary(self, user: User) -> str:
        wallet = Wallet.objects.filter(user=user).first()
        if wallet is None:
            return _("0 (no credit entries yet)")
        free, pending = free_credits_as_of_today(wallet)
        total = wallet.purchased_balance + free
        summary = ngettext(
            "%(total)s credit: %(bought)s bought or granted, %(free)s free today",
            "%(total)s credits: %(bought)s bought or granted, %(free)s free today",
            total,
        ) % {"total": grouped(total), "bought": grouped(wallet.purchased_balance), "free": grouped(free)}
        if pending:
            # The stored row still holds an earlier day's free bucket; the owner's next
            # visit tops it up (this page must not write).
            summary = _("%(summary)s (today's allowance is applied at their next visit)") % {"summary": summary}
        return summary

    # "My credits look wrong": check_ledger's proof, for this one account (a few
    # queries over its own entries), on the page support opens anyway.
    @admin.display(description=gettext_lazy("ledger check"))
    def ledger_check(self, user: User) -> SafeString | str:
        problems = find_ledger_problems(users=[user])
        if not problems:
            return _("Adds up: the balance, each running total, each generation's charges and each purchase agree.")
        return format_html("<ul>{}</ul>", format_html_join("", "<li>{}</li>", ((problem,) for problem in problems)))

    @admin.display(description=gettext_lazy("records"))
    def records(self, user: User) -> SafeString:
        return user_records_links(user.pk)

    def has_grant_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("credits.add_creditentry")

    # Django's own delete would cascade through the append-only ledger and the account's
    # generations, leave its photos and images in storage and Cloudinary, and its running
    # jobs at fal. Closing an account is `account_delete`'s (the action below), as when the
    # owner does it.
    def has_delete_permission(self, request: HttpRequest, obj: User | None = None) -> bool:
        return False

    def has_close_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("accounts.delete_user")

    @admin.action(
        description=gettext_lazy("Delete account for good (as the owner would)…"),
        permissions=["close"],
        location=BOTH_LOCATIONS,
    )
    def delete_account(self, request: HttpRequest, queryset: QuerySet[User]) -> TemplateResponse | None:
        users = list(queryset)
        if len(users) != 1:
            messages.error(request, _("Delete one account at a time: select only the one to delete."))
            return None

        def close(data: dict[str, Any]) -> None:
            apply_to_each(
                request,
                users,
                lambda user: account_delete(user=user, confirm=data["confirm"]),
                # One account at a time (checked above), so the count is always 1.
                done=lambda count: _("Deleted the account."),
                label=lambda user: user.email,
            )

        return action_with_form(
            self,
            request,
            queryset,
            form_class=CloseAccountForm,
            title=_("Delete account for good"),
            submit_label=_("Delete the account"),
            warning=_(
                "Running generations are canceled and refunded, photos and images are removed from storage, "
                "the email is freed and every session ends. Purchases and the ledger stay, without the person. "
                "This cannot be undone."
            ),
            apply=close,
        )

    # Also on the user's page: support grants to the person they just looked up.
    @admin.action(description=gettext_lazy("Grant credits…"), permissions=["grant"], location=BOTH_LOCATIONS)
    def grant_credits(self, request: HttpRequest, queryset: QuerySet[User]) -> TemplateResponse | None:
        return grant_credits_to(self, request, queryset, lambda: list(queryset))


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    """Tokens are made by their owners (the secret is shown once, to them); staff can
    only look and revoke. An editable `user` would have handed a live token, and so
    API access, to another account."""

    list_display = ["prefix", "user", "name", "created_at", "last_used_at", "revoked_at"]
    list_filter = [("revoked_at", admin.EmptyFieldListFilter)]
    search_fields = ["user__email", "prefix"]
    list_select_related = ["user"]
    fields = readonly_fields = ("prefix", "user", "name", "created_at", "last_used_at", "revoked_at")
    actions = ["revoke"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: ApiToken | None = None) -> bool:
        return False

    def has_revoke_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("accounts.change_apitoken")

    @admin.action(description=gettext_lazy("Revoke"), permissions=["revoke"], location=BOTH_LOCATIONS)
    def revoke(self, request: HttpRequest, queryset: QuerySet[ApiToken]) -> None:
        revoked = sum(api_token_revoke(user=token.user, token_id=token.pk) for token in queryset.select_related("user"))
        messages.success(
            request,
            ngettext("Revoked %(count)s token.", "Revoked %(count)s tokens.", revoked) % {"count": grouped(revoked)},
        )


@admin.register(LoginCode)
class LoginCodeAdmin(admin.ModelAdmin):
    """Sign-in codes are written by login_code_send only: read-only here (a code added
    here would have no hash anyone could match)."""

    list_display = ["email", "created_at", "expires_at", "failed_attempts", "used_at"]
    search_fields = ["email"]
    fields = readonly_fields = ("email", "created_at", "expires_at", "failed_attempts", "used_at")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: LoginCode | None = None) -> bool:
        return False
