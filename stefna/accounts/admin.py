from __future__ import annotations

from django.contrib import admin
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.db.models import F, QuerySet
from django.http import HttpRequest
from django.template.response import TemplateResponse

from credits.admin import grant_credits_to

from .models import ApiToken, LoginCode, User


@admin.register(User)
class UserAdmin(DjangoUserAdmin):
    ordering = ["email"]
    list_display = ["email", "display_name", "credits", "is_staff", "date_joined", "last_login"]
    search_fields = ["email", "display_name"]
    fieldsets = (
        (None, {"fields": ("email", "display_name", "password")}),
        ("Permissions", {"fields": ("is_active", "is_staff", "is_superuser", "groups", "user_permissions")}),
        ("Dates", {"fields": ("last_login", "date_joined")}),
    )
    add_fieldsets = ((None, {"classes": ("wide",), "fields": ("email", "password1", "password2")}),)
    actions = ["grant_credits"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[User]:
        # The balance comes in the same query (a LEFT JOIN on the wallet), not one per row.
        return super().get_queryset(request).annotate(wallet_balance=F("wallet__balance"))

    @admin.display(description="credits", ordering="wallet_balance")
    def credits(self, user: User) -> int | None:
        return user.wallet_balance  # type: ignore[attr-defined]

    def has_grant_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("credits.add_creditentry")

    @admin.action(description="Grant credits…", permissions=["grant"])
    def grant_credits(self, request: HttpRequest, queryset: QuerySet[User]) -> TemplateResponse | None:
        return grant_credits_to(self, request, queryset, lambda: list(queryset))


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    list_display = ["prefix", "user", "name", "created_at", "last_used_at", "revoked_at"]
    search_fields = ["user__email", "prefix"]
    readonly_fields = ["prefix", "token_hash", "created_at", "last_used_at"]


@admin.register(LoginCode)
class LoginCodeAdmin(admin.ModelAdmin):
    list_display = ["email", "created_at", "expires_at", "failed_attempts", "used_at"]
    search_fields = ["email"]
    readonly_fields = ["email", "code_hash", "created_at", "expires_at", "failed_attempts", "used_at"]
