"""Credits in the admin: a read-only ledger, balances, and grants with a reason."""

from __future__ import annotations

import re
import time
import uuid

import pytest
from django.contrib.auth.models import Permission
from django.db import connection, transaction
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from credits import ledger
from credits.models import CreditEntry, CreditPack, Wallet
from credits.selectors import balance_of
from stefna.accounts.tests.factories import UserFactory
from tests.databases import connections_waiting_for_locks, thread_recording

ENTRIES = reverse("admin:credits_creditentry_changelist")
WALLETS = reverse("admin:credits_wallet_changelist")
USERS = reverse("admin:accounts_user_changelist")


def funded(email: str, amount: int = 5):
    user = UserFactory.create(email=email)
    ledger.grant(user=user, amount=amount, note="welcome")
    return user


def test_the_ledger_lists_entries_and_cannot_be_edited(staff_client):
    user = funded("ada@example.com")
    entry = CreditEntry.objects.filter(user=user, reason="grant").get()
    response = staff_client.get(ENTRIES)
    assert response.status_code == 200
    assert b"ada@example.com" in response.content and b"welcome" in response.content
    assert staff_client.get(reverse("admin:credits_creditentry_add")).status_code == 403
    assert staff_client.get(reverse("admin:credits_creditentry_delete", args=[entry.pk])).status_code == 403
    # The change page is a view page: no form that could save.
    page = staff_client.get(reverse("admin:credits_creditentry_change", args=[entry.pk]))
    assert page.status_code == 200 and b'name="_save"' not in page.content
    before = CreditEntry.objects.get(pk=entry.pk)
    staff_client.post(reverse("admin:credits_creditentry_change", args=[entry.pk]), {"amount": 1000})
    assert CreditEntry.objects.get(pk=entry.pk).amount == before.amount


def test_the_ledger_and_wallet_lists_cost_fixed_queries(staff_client):
    funded("a@example.com")

    def cost(url):
        with CaptureQueriesContext(connection) as queries:
            assert staff_client.get(url).status_code == 200
        return len(queries)

    entries, wallets, users = cost(ENTRIES), cost(WALLETS), cost(USERS)
    for n in range(15):
        funded(f"user{n}@example.com")
    assert (cost(ENTRIES), cost(WALLETS), cost(USERS)) == (entries, wallets, users)


def test_wallets_show_each_users_balance(staff_client):
    funded("ada@example.com", amount=7)
    response = staff_client.get(WALLETS)
    wallet = next(w for w in response.context["cl"].result_list if w.user.email == "ada@example.com")
    assert wallet.balance == balance_of(user=wallet.user)
    assert staff_client.get(reverse("admin:credits_wallet_change", args=[wallet.pk])).status_code == 200


def test_grant_asks_for_an_amount_and_a_reason_then_writes_through_the_ledger(staff_client, staff):
    user = funded("ada@example.com")
    before = balance_of(user=user)
    wallet = Wallet.objects.get(user=user)
    form = staff_client.post(WALLETS, {"action": "grant_credits", "_selected_action": [str(wallet.pk)]})
    assert form.status_code == 200
    assert b'name="amount"' in form.content and b'name="note"' in form.content
    assert balance_of(user=user) == before

    done = staff_client.post(
        WALLETS,
        {
            "action": "grant_credits",
            "_selected_action": [str(wallet.pk)],
            "apply": "1",
            "amount": "10",
            "note": "Sorry about the outage",
            "grant_key": rendered_form_fields(form)["grant_key"],
        },
        follow=True,
    )
    assert b"Granted +10 credits to 1 user." in done.content
    assert balance_of(user=user) == before + 10
    entry = CreditEntry.objects.filter(user=user).order_by("-id").first()
    assert (entry.reason, entry.amount, entry.note, entry.created_by) == ("grant", 10, "Sorry about the outage", staff)


@pytest.mark.parametrize(
    ("amount", "note", "error"),
    [("0", "x", b"other than zero"), ("5", "", b"This field is required"), ("abc", "x", b"Enter a whole number")],
)
def test_grant_refuses_bad_input_and_writes_nothing(staff_client, amount, note, error):
    user = funded("ada@example.com")
    entries = CreditEntry.objects.count()
    response = staff_client.post(
        USERS,
        {"action": "grant_credits", "_selected_action": [str(user.pk)], "apply": "1", "amount": amount, "note": note},
    )
    assert response.status_code == 200 and error in response.content
    assert CreditEntry.objects.count() == entries


def test_a_negative_grant_is_an_adjustment_and_cannot_overdraw(staff_client):
    user = funded("ada@example.com")
    balance = balance_of(user=user)
    data = {"action": "grant_credits", "_selected_action": [str(user.pk)], "apply": "1", "note": "Abuse"}
    response = staff_client.post(
        USERS, {**data, "amount": str(-(balance + 1)), "grant_key": str(uuid.uuid4())}, follow=True
    )
    assert response.status_code == 200
    shown = [(m.level_tag, str(m)) for m in response.context["messages"]]  # an error message, not a 500
    assert shown == [
        ("error", f"ada@example.com: The balance is {balance}; removing {balance + 1} would make it negative.")
    ]
    assert balance_of(user=user) == balance

    staff_client.post(USERS, {**data, "amount": "-2", "grant_key": str(uuid.uuid4())})
    assert balance_of(user=user) == balance - 2
    assert CreditEntry.objects.filter(user=user).order_by("-id").first().reason == "adjust"


def test_the_user_admin_grants_to_several_users_and_shows_balances(staff_client):
    users = [funded(f"u{n}@example.com") for n in range(3)]
    before = {user.pk: balance_of(user=user) for user in users}
    staff_client.post(
        USERS,
        {
            "action": "grant_credits",
            "_selected_action": [str(user.pk) for user in users],
            "apply": "1",
            "amount": "4",
            "note": "Beta testers",
            "grant_key": str(uuid.uuid4()),
        },
    )
    for user in users:
        assert balance_of(user=user) == before[user.pk] + 4
    response = staff_client.get(USERS)
    row = next(u for u in response.context["cl"].result_list if u.pk == users[0].pk)
    assert row.wallet_balance == before[users[0].pk] + 4


def test_staff_without_ledger_rights_see_balances_but_cannot_grant(client, db):
    viewer = UserFactory(email="viewer@example.com", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_wallet"))
    client.force_login(viewer)
    user = funded("ada@example.com")
    wallet = Wallet.objects.get(user=user)
    response = client.get(WALLETS)
    assert response.status_code == 200
    assert b"grant_credits" not in response.content
    before = balance_of(user=user)
    client.post(
        WALLETS,
        {"action": "grant_credits", "_selected_action": [str(wallet.pk)], "apply": "1", "amount": "9", "note": "x"},
    )
    assert balance_of(user=user) == before


def test_wallets_and_entries_show_the_bought_part_that_never_expires(staff_client, settings):
    settings.DAILY_CREDITS = 30
    user = funded("ada@example.com", amount=7)
    ledger.grant(user=user, amount=-32, reason=CreditEntry.Reason.ADJUST, note="spent")  # 30 free, then 2 bought

    wallets = staff_client.get(WALLETS)
    entries = staff_client.get(ENTRIES + "?reason=adjust")

    assert "field-purchased_balance" in wallets.content.decode()
    row = next(row for row in wallets.context["cl"].result_list if row.user.email == "ada@example.com")
    assert (row.balance, row.purchased_balance) == (5, 5)
    assert '<td class="field-purchased_amount">-2</td>' in entries.content.decode()


# --- Languages: Stefna's own admin words follow the staff member's, as Django's do ----------


def grant_through_the_admin(client, wallet: Wallet, amount: int):
    """The grant action's two steps: the form, then the grant; returns both pages."""
    selection = {"action": "grant_credits", "_selected_action": [str(wallet.pk)]}
    form = client.post(WALLETS, selection)
    done = client.post(
        WALLETS, {**rendered_form_fields(form), "apply": "1", "amount": str(amount), "note": "Outage"}, follow=True
    )
    return form.content.decode(), [str(message) for message in done.context["messages"]]


def test_the_credits_admin_speaks_indonesian_and_groups_thousands(staff_client):
    staff_client.cookies["stefna_language"] = "id"
    wallet = Wallet.objects.get(user=funded("ada@example.com"))
    # Saved before Stripe's minimum was enforced: the list warns about it.
    CreditPack.objects.create(slug="cheap", name="Cheap", credits=4, price=10, currency="usd", sort_order=0)

    wallets = staff_client.get(WALLETS).content.decode()
    form, messages = grant_through_the_admin(staff_client, wallet, 1500)
    packs = staff_client.get(reverse("admin:credits_creditpack_changelist")).content.decode()

    assert ">Pengguna</a>" in wallets  # the column title "user"
    assert ">Beri kredit…</option>" in wallets  # the action
    assert "Alasannya: disimpan di catatan kredit bersama namamu." in form and 'value="Beri"' in form
    assert messages == ["+1.500 kredit diberikan ke 1 pengguna."]
    # The whole warning in one language: its reason came translated already (charge_limits).
    assert "Cheap (cheap) tidak dijual: Stripe menagih paling sedikit US$0,50" in packs
    assert "Ubah harganya." in packs


def test_the_credits_admin_stays_english_for_english_staff(staff_client):
    wallet = Wallet.objects.get(user=funded("ada@example.com"))
    CreditPack.objects.create(slug="cheap", name="Cheap", credits=4, price=10, currency="usd", sort_order=0)

    wallets = staff_client.get(WALLETS, HTTP_ACCEPT_LANGUAGE="en").content.decode()
    form, messages = grant_through_the_admin(staff_client, wallet, 1500)
    packs = staff_client.get(reverse("admin:credits_creditpack_changelist")).content.decode()

    assert ">User</a>" in wallets and ">Grant credits…</option>" in wallets
    assert "Why: kept on the ledger entry with your name." in form and 'value="Grant"' in form
    assert messages == ["Granted +1,500 credits to 1 user."]
    assert "Cheap (cheap) is not for sale: Stripe charges at least $0.50" in packs and "Edit the price." in packs


def rendered_form_fields(page) -> dict[str, list[str]]:
    """The hidden fields of an action's form page, as the browser sends them back."""
    fields: dict[str, list[str]] = {}
    for name, value in re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', page.content.decode()):
        if name != "csrfmiddlewaretoken":
            fields.setdefault(name, []).append(value)
    return fields


def test_a_grant_form_sent_twice_grants_once_and_says_so(staff_client):
    """A double click, or the browser sending the form again: the form's one-time key
    makes the second submit a no-op that staff are told about, not a second grant."""
    user = funded("ada@example.com")
    before = balance_of(user=user)
    wallet = Wallet.objects.get(user=user)
    form = staff_client.post(WALLETS, {"action": "grant_credits", "_selected_action": [str(wallet.pk)]})
    submit = {**rendered_form_fields(form), "apply": "1", "amount": "10", "note": "Sorry about the outage"}

    first = staff_client.post(WALLETS, submit, follow=True)
    again = staff_client.post(WALLETS, submit, follow=True)

    assert [str(m) for m in first.context["messages"]] == ["Granted +10 credits to 1 user."]
    assert balance_of(user=user) == before + 10, "the second submit granted again"
    assert [(m.level_tag, str(m)) for m in again.context["messages"]] == [
        ("error", "ada@example.com: already granted (this form was sent before); nothing was added.")
    ]
    assert CreditEntry.objects.filter(user=user, reason="grant", note="Sorry about the outage").count() == 1


@pytest.mark.postgres_only
@pytest.mark.django_db(transaction=True)
def test_two_grant_submits_at_once_grant_once(client, staff):
    """Two submits of one grant form in flight together (a double click): both wait for the
    wallet's lock, and the one that gets it second finds the first one's entry."""
    if connection.vendor != "postgresql":
        pytest.skip("PostgreSQL only: SQLite runs one writing transaction at a time, so two submits never overlap")
    user = funded("ada@example.com")
    before = balance_of(user=user)
    client.force_login(staff)
    form = client.post(USERS, {"action": "grant_credits", "_selected_action": [str(user.pk)]})
    submit = {**rendered_form_fields(form), "apply": "1", "amount": "10", "note": "Double click"}

    def send() -> str:
        browser = Client()
        browser.force_login(staff)
        # The page's text, not response.context: the test client collects every template
        # rendered in the process, the other thread's too.
        page = browser.post(USERS, submit, follow=True).content.decode()
        if "Granted +10 credits to 1 user." in page:
            return "granted"
        return "already granted" if "already granted (this form was sent before)" in page else page

    answers: list[object] = []
    submits = [thread_recording(send, answers) for _ in range(2)]
    with transaction.atomic():
        Wallet.objects.select_for_update().get(pk=user.pk)  # both submits queue behind this
        for thread in submits:
            thread.start()
        deadline = time.monotonic() + 10
        while connections_waiting_for_locks() < 2:
            assert time.monotonic() < deadline, "the two submits never waited for the wallet"
            time.sleep(0.02)
    for thread in submits:
        thread.join(20)

    assert sorted(answers) == ["already granted", "granted"]  # type: ignore[type-var]  # list[object]
    assert balance_of(user=user) == before + 10
