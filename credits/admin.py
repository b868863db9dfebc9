"""Credits in the admin: the ledger (read-only), balances, and granting credits with a reason.

Only `credits.ledger` writes credit rows, so nothing here can add, change or delete
an entry or a wallet directly; the grant action goes through `ledger.grant`, which
records who granted and why.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, cast

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, ngettext, pgettext

from stefna.admin_actions import BOTH_LOCATIONS, ReadOnlyInline, action_with_form, apply_to_each, one_time_key_field
from stefna.errors import DomainError
from stefna.i18n_formats import grouped

from . import ledger
from .charge_limits import price_problem, price_problem_message
from .models import CreditEntry, CreditPack, Purchase, StripeEvent, Wallet, format_price
from .payments.purchases import purchase_mark_reviewed
from .payments.refunds import purchase_refund
from .selectors import bought_credits_held, credit_packs_unchargeable, purchases_needing_attention_count

if TYPE_CHECKING:
    from stefna.accounts.models import User

MAX_GRANT = 100_000


def user_records_links(user_id: object) -> SafeString:
    """Links to one user's generations, purchases and credit entries (filtered lists)."""
    links = [
        (reverse("admin:generation_generation_changelist"), _("generations")),
        (reverse("admin:credits_purchase_changelist"), _("purchases")),
        (reverse("admin:credits_creditentry_changelist"), _("credit entries")),
    ]
    return format_html_join(
        " · ", '<a href="{}?user__id__exact={}">{}</a>', ((url, user_id, label) for url, label in links)
    )


class GrantCreditsForm(forms.Form):
    amount = forms.IntegerField(
        min_value=-MAX_GRANT,
        max_value=MAX_GRANT,
        help_text=gettext_lazy("Credits to add. A negative number removes credits (recorded as an adjustment)."),
    )
    note = forms.CharField(
        label=gettext_lazy("Reason"),
        max_length=200,
        help_text=gettext_lazy("Why: kept on the ledger entry with your name."),
        widget=forms.TextInput(attrs={"size": 60}),
    )
    # The form's one-time key, made when it is shown and kept on the ledger entry: a double
    # click or the browser sending the form again grants once (`ledger.grant`).
    grant_key = one_time_key_field()

    def clean_amount(self) -> int:
        amount = self.cleaned_data["amount"]
        if amount == 0:
            raise forms.ValidationError(_("Enter a number other than zero."))
        return amount


def grant_credits_to(
    modeladmin: admin.ModelAdmin,  # type: ignore[type-arg]
    request: HttpRequest,
    queryset: QuerySet,  # type: ignore[type-arg]
    users: Callable[[], Iterable[Any]],
) -> TemplateResponse | None:
    """The grant action's body, shared by the wallet and user admins (`users` yields User rows)."""

    def grant(user: Any, data: dict[str, Any]) -> None:
        amount = data["amount"]
        reason = CreditEntry.Reason.GRANT if amount > 0 else CreditEntry.Reason.ADJUST
        try:
            ledger.grant(
                user=user,
                amount=amount,
                note=data["note"],
                by=cast("User", request.user),
                reason=reason,
                grant_key=data["grant_key"],
            )
        except ValueError as error:  # the ledger's argument checks; the form already prevents them
            raise DomainError(str(error)) from error

    return action_with_form(
        modeladmin,
        request,
        queryset,
        form_class=GrantCreditsForm,
        title=_("Grant credits"),
        # "Grant" alone is also the ledger's reason label ("Bonus" in Indonesian); the button is a verb.
        submit_label=pgettext("admin action button", "Grant"),
        apply=lambda data: apply_to_each(
            request,
            users(),
            lambda user: grant(user, data),
            done=lambda count: (
                ngettext(
                    "Granted %(amount)s credits to %(count)s user.",
                    "Granted %(amount)s credits to %(count)s users.",
                    count,
                )
                # The sign stays in front ("+1.500", "-20"): it says whether credits were added or removed.
                % {"amount": ("+" if data["amount"] > 0 else "") + grouped(data["amount"]), "count": grouped(count)}
            ),
            label=lambda user: user.email,
        ),
    )


@admin.register(CreditEntry)
class CreditEntryAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = [
        "created_at",
        "user_email",
        "reason",
        "amount",
        "purchased_amount",
        "balance_after",
        "generation_link",
        "charge_number",
        "purchase_link",
        "note",
        "created_by",
    ]
    list_filter = ["reason", "created_at"]
    search_fields = [
        "user__email",
        "=generation__id",
        "=purchase__id",
        "=purchase__stripe_payment_intent_id",
        "=purchase__stripe_session_id",
        "note",
    ]
    search_help_text = gettext_lazy(
        "A user's email, a generation or purchase id, a Stripe payment intent or checkout session id, "
        "or words from the note."
    )
    list_select_related = ["user", "created_by"]
    list_per_page = 100
    show_full_result_count = False
    date_hierarchy = "created_at"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: CreditEntry | None = None) -> bool:
        return False  # append-only: a mistake is corrected by a new adjustment entry

    def has_delete_permission(self, request: HttpRequest, obj: CreditEntry | None = None) -> bool:
        return False

    @admin.display(description=gettext_lazy("user"), ordering="user__email")
    def user_email(self, entry: CreditEntry) -> str:
        return entry.user.email

    @admin.display(description=gettext_lazy("generation"))
    def generation_link(self, entry: CreditEntry) -> SafeString | str:
        if entry.generation_id is None:
            return "—"
        url = reverse("admin:generation_generation_change", args=[entry.generation_id])
        return format_html('<a href="{}">{}</a>', url, str(entry.generation_id)[:8])

    @admin.display(description=gettext_lazy("purchase"))
    def purchase_link(self, entry: CreditEntry) -> SafeString | str:
        if entry.purchase_id is None:
            return "—"
        url = reverse("admin:credits_purchase_change", args=[entry.purchase_id])
        return format_html('<a href="{}">{}</a>', url, str(entry.purchase_id)[:8])


@admin.register(Wallet)
class WalletAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    # The bought part never expires, the rest is today's allowance: a refund decision
    # needs the two apart.
    list_display = ["user_email", "balance", "purchased_balance", "allowance_day"]
    search_fields = ["user__email"]
    list_select_related = ["user"]
    ordering = ["user__email"]
    list_per_page = 100
    show_full_result_count = False
    actions = ["grant_credits"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Wallet | None = None) -> bool:
        return False  # balances move only through the ledger (the grant action)

    def has_delete_permission(self, request: HttpRequest, obj: Wallet | None = None) -> bool:
        return False

    @admin.display(description=gettext_lazy("user"), ordering="user__email")
    def user_email(self, wallet: Wallet) -> str:
        return wallet.user.email

    # View permission is enough to see the wallets; granting money needs the right to
    # add ledger entries.
    def has_grant_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("credits.add_creditentry")

    @admin.action(description=gettext_lazy("Grant credits…"), permissions=["grant"])
    def grant_credits(self, request: HttpRequest, queryset: QuerySet[Wallet]) -> TemplateResponse | None:
        return grant_credits_to(
            self, request, queryset, lambda: [wallet.user for wallet in queryset.select_related("user")]
        )


@admin.register(CreditPack)
class CreditPackAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ["name", "slug", "credits", "price_label", "currency", "active", "sort_order"]
    list_editable = ["active", "sort_order"]
    list_filter = ["active", "currency"]
    search_fields = ["slug", "name", "name_id"]
    prepopulated_fields = {"slug": ["name"]}
    fieldsets = (
        (None, {"fields": ("name", "slug", "credits", "price", "currency", "active", "sort_order")}),
        (gettext_lazy("Bahasa Indonesia"), {"fields": ("name_id",)}),
    )

    def has_delete_permission(self, request: HttpRequest, obj: CreditPack | None = None) -> bool:
        return False  # packs with purchases are money records: switch them off (active) instead

    @admin.display(description=gettext_lazy("price"))
    def price_label(self, pack: CreditPack) -> str:
        return pack.price_label

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> Any:
        for pack in credit_packs_unchargeable():
            # Saved before such prices were refused: not offered until fixed. The reason is
            # the form's own refusal (one wording per rule, `credits.charge_limits`).
            problem = price_problem(pack.price, pack.currency)
            reason = price_problem_message(problem, pack.price, pack.currency) if problem else ""
            messages.warning(
                request,
                _("%(name)s (%(slug)s) is not for sale: %(reason)s Edit the price.")
                % {"name": pack.name, "slug": pack.slug, "reason": reason},
            )
        return super().changelist_view(request, extra_context)


class PurchaseCreditEntryInline(ReadOnlyInline):
    """What the purchase moved on the ledger: its grant, take-backs and give-backs."""

    model = CreditEntry
    fk_name = "purchase"
    verbose_name_plural = gettext_lazy("credit entries of this purchase")
    fields = readonly_fields = ("created_at", "reason", "amount", "purchased_amount", "balance_after", "note")
    ordering = ["created_at", "id"]


class PurchaseEventInline(ReadOnlyInline):
    """Stripe's events about the purchase (payment, refunds, disputes) and what each did."""

    model = StripeEvent
    fk_name = "purchase"
    verbose_name_plural = gettext_lazy("Stripe events of this purchase")
    fields = readonly_fields = ("received_at", "id", "type", "outcome")
    ordering = ["received_at"]


# Money columns stored in the minor unit (499) are shown in their currency ($4.99).
PURCHASE_MONEY_FIELDS = {"price": "price_label", "amount_refunded": "refunded_label"}


@admin.register(Purchase)
class PurchaseAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    """Purchases are written only by credits.payments; staff read them, refund through
    Stripe (the credits follow from Stripe's refund event) and clear alerts."""

    list_display = [
        "created_at",
        "email",
        "pack",
        "credits",
        "price_label",
        "status",
        "provider",
        "needs_attention",
        "credits_taken_back",
        "credits_already_spent",
    ]
    list_filter = [
        "needs_attention",
        "status",
        "paid_after_account_closed",
        "provider",
        "currency",
        "pack",
        "created_at",
    ]
    search_fields = ["email", "user__email", "=stripe_session_id", "=stripe_payment_intent_id", "=id"]
    search_help_text = gettext_lazy("An email, a Stripe checkout session or payment intent id, or a purchase id.")
    list_select_related = ["pack"]
    date_hierarchy = "created_at"
    show_full_result_count = False
    actions = ["refund", "mark_reviewed"]
    inlines = [PurchaseCreditEntryInline, PurchaseEventInline]

    def get_fields(self, request: HttpRequest, obj: Purchase | None = None) -> list[Any]:
        fields = [PURCHASE_MONEY_FIELDS.get(field.name, field.name) for field in Purchase._meta.fields]
        # The buyer's other records, one click away (next to the user).
        fields.insert(fields.index("user") + 1, "buyer_records")
        return fields

    def get_readonly_fields(self, request: HttpRequest, obj: Purchase | None = None) -> list[str]:
        return self.get_fields(request, obj)

    @admin.display(description=gettext_lazy("amount refunded"))
    def refunded_label(self, purchase: Purchase) -> str:
        return format_price(purchase.amount_refunded, purchase.currency)

    @admin.display(description=gettext_lazy("the buyer's records"))
    def buyer_records(self, purchase: Purchase) -> SafeString | str:
        if purchase.user_id is None:
            return "—"
        return user_records_links(purchase.user_id)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Purchase | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Purchase | None = None) -> bool:
        return False

    def has_refund_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("credits.add_creditentry")

    @admin.display(description=gettext_lazy("price"))
    def price_label(self, purchase: Purchase) -> str:
        return purchase.price_label

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> Any:
        flagged = purchases_needing_attention_count()
        if flagged:
            # The staff alert for amount mismatches, refunds of spent credits and disputes.
            messages.warning(
                request,
                ngettext(
                    "%(count)s purchase needs attention: filter by “needs attention” and read its note.",
                    "%(count)s purchases need attention: filter by “needs attention” and read each one's note.",
                    flagged,
                )
                % {"count": grouped(flagged)},
            )
        return super().changelist_view(request, extra_context)

    @admin.action(
        description=gettext_lazy("Refund through Stripe… (credits are taken back when Stripe confirms)"),
        permissions=["refund"],
        location=BOTH_LOCATIONS,
    )
    def refund(self, request: HttpRequest, queryset: QuerySet[Purchase]) -> TemplateResponse | None:
        # Real money goes back to the buyer and cannot be recalled: a mis-click in the
        # action menu must not be enough, so the action asks first and lists the sums.
        # Only unspent bought credits can be taken back: what each buyer holds says, before
        # the money goes, whether the refund will cost more than it recovers (all buyers'
        # wallets in one query, not one a line).
        held_by_buyer = bought_credits_held(user_ids=queryset.values_list("user_id", flat=True))

        def describe(purchase: Purchase) -> str:
            left = format_price(purchase.price - purchase.amount_refunded, purchase.currency)
            line = ngettext(
                "%(buyer)s: %(pack)s, %(credits)s credit, %(left)s to refund (%(status)s, %(provider)s)",
                "%(buyer)s: %(pack)s, %(credits)s credits, %(left)s to refund (%(status)s, %(provider)s)",
                purchase.credits,
            ) % {
                "buyer": purchase.email or purchase.user_id,
                "pack": purchase.pack.name,
                "credits": grouped(purchase.credits),
                "left": left,
                "status": purchase.get_status_display(),
                "provider": purchase.get_provider_display(),
            }
            held = held_by_buyer.get(purchase.user_id, 0) if purchase.user_id else 0
            due = purchase.credits_left_to_settle(purchase.credits)
            if held < due:
                line += ngettext(
                    "; the buyer holds only %(held)s bought credits, so %(spent)s is already spent",
                    "; the buyer holds only %(held)s bought credits, so %(spent)s are already spent",
                    due - held,
                ) % {"held": grouped(held), "spent": grouped(due - held)}
            return line

        # A test-checkout purchase moved no money: its refund only takes the credits back.
        providers = set(queryset.values_list("provider", flat=True))
        warnings = []
        if Purchase.Provider.STRIPE in providers:
            warnings.append(
                _(
                    "Stripe purchases: the full price goes back to the buyer through Stripe and cannot be "
                    "recalled; their unspent credits are taken back when Stripe confirms."
                )
            )
        if Purchase.Provider.OFFLINE in providers:
            warnings.append(_("Test-checkout purchases moved no money: their unspent credits are taken back at once."))
        return action_with_form(
            self,
            request,
            queryset.select_related("pack"),
            form_class=forms.Form,
            title=_("Refund purchases"),
            submit_label=_("Yes, refund"),
            describe=describe,
            warning=" ".join(warnings),
            apply=lambda data: apply_to_each(
                request,
                list(queryset),
                lambda purchase: purchase_refund(purchase=purchase),
                done=lambda count: (
                    ngettext(
                        "Refund requested for %(count)s purchase.", "Refund requested for %(count)s purchases.", count
                    )
                    % {"count": grouped(count)}
                ),
                label=lambda purchase: f"{purchase.email} {purchase.pk}",
            ),
        )

    @admin.action(
        description=gettext_lazy("Mark as reviewed (clear the alert)"), permissions=["refund"], location=BOTH_LOCATIONS
    )
    def mark_reviewed(self, request: HttpRequest, queryset: QuerySet[Purchase]) -> None:
        for purchase in queryset:
            purchase_mark_reviewed(purchase=purchase)
        messages.success(request, _("Alerts cleared."))


@admin.register(StripeEvent)
class StripeEventAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ["received_at", "id", "type", "outcome", "purchase"]
    list_filter = ["type", "outcome"]
    search_fields = ["=id", "=purchase__id", "=purchase__stripe_payment_intent_id", "=purchase__stripe_session_id"]
    search_help_text = gettext_lazy("An event id, or a purchase id, Stripe payment intent or checkout session id.")
    show_full_result_count = False

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: StripeEvent | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: StripeEvent | None = None) -> bool:
        return False
