"""Users in the admin: an account is closed the way its owner closes it, never by a raw delete."""

from __future__ import annotations

import re

from django.urls import reverse

from credits import ledger
from credits.models import CreditEntry
from generation.models import Generation, Media, StoredRemoval
from generation.tests.factories import GenerationFactory, MediaFactory
from stefna.accounts.models import User
from stefna.accounts.tests.factories import UserFactory

USERS = reverse("admin:accounts_user_changelist")


def customer() -> User:
    user = UserFactory.create(email="ada@example.com")
    ledger.grant(user=user, amount=5, note="welcome")
    MediaFactory(generation=GenerationFactory(user=user), storage_key="stefna/generated/ada-1")
    return user


def test_the_admin_cannot_delete_an_account_outright(staff_client):
    user = customer()
    assert staff_client.get(reverse("admin:accounts_user_delete", args=[user.pk])).status_code == 403
    staff_client.post(reverse("admin:accounts_user_delete", args=[user.pk]), {"post": "yes"})
    staff_client.post(USERS, {"action": "delete_selected", "_selected_action": [str(user.pk)], "post": "yes"})
    # A raw delete would have cascaded through the ledger and left the image in Cloudinary.
    assert User.objects.filter(pk=user.pk, is_active=True).exists()
    assert CreditEntry.objects.filter(user=user, reason="grant").exists()


def test_deleting_an_account_asks_for_its_email_and_goes_through_the_owners_deletion(staff_client):
    user = customer()
    selection = {"action": "delete_account", "index": "0", "_selected_action": [str(user.pk)]}
    asked = staff_client.post(USERS, selection)
    assert asked.status_code == 200 and b'name="confirm"' in asked.content and b"cannot be undone" in asked.content

    wrong = staff_client.post(USERS, {**selection, "apply": "1", "confirm": "bob@example.com"}, follow=True)
    assert any(message.level_tag == "error" for message in wrong.context["messages"])
    assert User.objects.get(pk=user.pk).is_active

    done = staff_client.post(USERS, {**selection, "apply": "1", "confirm": "ada@example.com"}, follow=True)
    assert [str(message) for message in done.context["messages"]] == ["Deleted the account."]
    user.refresh_from_db()
    assert not user.is_active and user.email.endswith("@deleted.invalid")
    assert CreditEntry.objects.filter(user=user, reason="grant").exists(), "the ledger stays"
    assert Generation.objects.filter(user=user).exists() and not Media.objects.filter(user=user).exists()
    assert StoredRemoval.objects.filter(key="stefna/generated/ada-1").exists(), "the image is owed to storage"


def test_credits_are_granted_from_the_users_own_page(staff_client):
    user = customer()
    url = reverse("admin:accounts_user_change", args=[user.pk])
    page = staff_client.get(url).content.decode()
    assert 'value="grant_credits"' in page and 'value="delete_account"' in page
    selection = {"CHANGE_FORM-action": "grant_credits", "_selected_action": str(user.pk)}
    asked = staff_client.post(url, selection)
    assert asked.status_code == 200 and b'name="amount"' in asked.content
    key = re.search(r'name="grant_key" value="([^"]+)"', asked.content.decode())
    assert key, "the grant form carries its one-time key"
    staff_client.post(
        url, {**selection, "apply": "1", "amount": "10", "note": "Sorry for the outage", "grant_key": key[1]}
    )
    entry = CreditEntry.objects.get(user=user, note="Sorry for the outage")
    assert entry.amount == 10


def test_an_api_token_cannot_be_moved_to_another_account_only_revoked(staff_client):
    from stefna.accounts.models import ApiToken
    from stefna.accounts.services import api_token_authenticate, api_token_create

    owner, other = customer(), UserFactory(email="mallory@example.com")
    token, plain = api_token_create(user=owner, name="laptop")
    url = reverse("admin:accounts_apitoken_change", args=[token.pk])
    assert b'name="user"' not in staff_client.get(url).content
    staff_client.post(url, {"user": str(other.pk), "name": "laptop", "prefix": token.prefix})
    assert api_token_authenticate(plain) == owner
    assert staff_client.get(reverse("admin:accounts_apitoken_add")).status_code == 403

    changelist = reverse("admin:accounts_apitoken_changelist")
    done = staff_client.post(
        changelist, {"action": "revoke", "index": "0", "_selected_action": [str(token.pk)]}, follow=True
    )
    assert [str(message) for message in done.context["messages"]] == ["Revoked 1 token."]
    assert api_token_authenticate(plain) is None and ApiToken.objects.get(pk=token.pk).revoked_at is not None


def test_sign_in_codes_are_read_only(staff_client):
    assert staff_client.get(reverse("admin:accounts_logincode_add")).status_code == 403


def test_the_user_page_runs_the_ledger_check_for_that_account(staff_client):
    from credits.models import Wallet

    user = UserFactory.create(email="ada@example.com")
    ledger.grant(user=user, amount=5, note="welcome")
    url = reverse("admin:accounts_user_change", args=[user.pk])
    assert "Adds up:" in staff_client.get(url).content.decode()
    Wallet.objects.filter(user=user).update(balance=999, purchased_balance=999)  # a balance the ledger cannot explain
    page = staff_client.get(url).content.decode()
    assert "Adds up:" not in page and "999" in page


def test_a_user_is_found_by_the_id_the_logs_give(staff_client):
    user = customer()
    UserFactory.create(email="bob@example.com")
    found = staff_client.get(USERS, {"q": str(user.pk)}).context["cl"].result_list
    assert [row.pk for row in found] == [user.pk]
    assert staff_client.get(USERS, {"q": "bob"}).status_code == 200


def test_an_email_changed_by_staff_is_stored_as_sign_in_looks_it_up(staff_client):
    from stefna.accounts.services import user_get_or_create

    user = customer()
    UserFactory.create(email="bob@example.com")
    url = reverse("admin:accounts_user_change", args=[user.pk])
    form = {"email": "  Ada.New@Example.COM ", "display_name": "", "is_active": "on", "date_joined_0": "2026-01-01",
            "date_joined_1": "10:00:00"}  # fmt: skip
    assert staff_client.post(url, form).status_code == 302
    user.refresh_from_db()
    assert user.email == "ada.new@example.com"
    assert user_get_or_create(email="ada.new@example.com") == (user, False), "signs into the same account"

    taken = staff_client.post(url, {**form, "email": "BOB@example.com"})
    assert taken.status_code == 200 and "Another account already uses this email." in taken.content.decode()
    added = staff_client.post(
        reverse("admin:accounts_user_add"), {"email": "Bob@Example.com", "usable_password": "false"}
    )
    assert added.status_code == 200 and "Another account already uses this email." in added.content.decode()
    created = staff_client.post(
        reverse("admin:accounts_user_add"), {"email": "Carol@Example.com", "usable_password": "false"}
    )
    assert created.status_code == 302 and User.objects.filter(email="carol@example.com").exists()
