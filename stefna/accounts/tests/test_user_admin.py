"""Users in the admin: an account is closed the way its owner closes it, never by a raw delete."""

from __future__ import annotations

import re
from html.parser import HTMLParser

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
    form = {**rendered_change_form(staff_client.get(url)), "email": "  Ada.New@Example.COM ", "_save": "Save"}
    assert staff_client.post(url, form).status_code == 302
    user.refresh_from_db()
    assert user.email == "ada.new@example.com"
    assert user_get_or_create(email="ada.new@example.com") == (user, False), "signs into the same account"

    taken = staff_client.post(
        url, {**rendered_change_form(staff_client.get(url)), "email": "BOB@example.com", "_save": "1"}
    )
    assert taken.status_code == 200 and "Another account already uses this email." in taken.content.decode()
    added = staff_client.post(
        reverse("admin:accounts_user_add"), {"email": "Bob@Example.com", "usable_password": "false"}
    )
    assert added.status_code == 200 and "Another account already uses this email." in added.content.decode()
    created = staff_client.post(
        reverse("admin:accounts_user_add"), {"email": "Carol@Example.com", "usable_password": "false"}
    )
    assert created.status_code == 302 and User.objects.filter(email="carol@example.com").exists()


class _ChangeForm(HTMLParser):
    """The fields of an admin change form (form#<model>_form), as a browser submits them."""

    def __init__(self, form_id: str) -> None:
        super().__init__()
        self.form_id, self.inside, self.select, self.textarea = form_id, False, "", ""
        self.fields: dict[str, list[str]] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {key: value or "" for key, value in attrs}
        if tag == "form":
            self.inside = a.get("id") == self.form_id
        elif not self.inside or "disabled" in a:
            return
        elif tag == "input" and a.get("name") and a.get("type") not in ("submit", "button", "file"):
            if a.get("type") not in ("checkbox", "radio"):
                self.fields.setdefault(a["name"], []).append(a.get("value", ""))
            elif "checked" in a:
                self.fields.setdefault(a["name"], []).append(a.get("value", "on"))
        elif tag == "select":
            self.select = a.get("name", "")
        elif tag == "option" and self.select and "selected" in a:
            self.fields.setdefault(self.select, []).append(a.get("value", ""))
        elif tag == "textarea":
            self.textarea = a.get("name", "")
            self.fields.setdefault(self.textarea, []).append("")

    def handle_data(self, data: str) -> None:
        if self.textarea:
            self.fields[self.textarea][-1] += data

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self.inside = False
        elif tag == "select":
            self.select = ""
        elif tag == "textarea":
            self.textarea = ""


def rendered_change_form(page, form_id: str = "user_form") -> dict[str, list[str]]:
    parser = _ChangeForm(form_id)
    parser.feed(page.content.decode())
    parser.fields.pop("csrfmiddlewaretoken", None)
    return parser.fields


def test_a_change_page_opened_before_the_account_was_deleted_cannot_write_it_back(staff_client):
    """Staff open Ada's page, Ada deletes her account, staff press Save: the form's old
    email, name and "active" must not land on the anonymised row."""
    from stefna.accounts.deletion import account_delete

    user = customer()
    User.objects.filter(pk=user.pk).update(display_name="Ada Lovelace")
    url = reverse("admin:accounts_user_change", args=[user.pk])
    opened = rendered_change_form(staff_client.get(url))
    assert opened["email"] == ["ada@example.com"] and opened["is_active"] == ["on"]

    account_delete(user=User.objects.get(pk=user.pk), confirm="ada@example.com")
    saved = staff_client.post(url, {**opened, "_save": "Save"})

    user.refresh_from_db()
    assert (user.email, user.display_name, user.is_active) == (f"deleted-{user.pk.hex}@deleted.invalid", "", False)
    assert saved.status_code == 200
    assert "This account was deleted: there is nothing left to edit." in saved.content.decode()


def test_a_change_page_saved_after_someone_else_changed_the_account_is_refused(staff_client):
    """Two staff members on the same user: the second Save would silently put back what
    the first one changed."""
    user = customer()
    url = reverse("admin:accounts_user_change", args=[user.pk])
    first, second = rendered_change_form(staff_client.get(url)), rendered_change_form(staff_client.get(url))

    assert staff_client.post(url, {**first, "display_name": "Ada L.", "_save": "Save"}).status_code == 302
    stale = staff_client.post(url, {**second, "is_staff": "on", "_save": "Save"})

    user.refresh_from_db()
    assert (user.display_name, user.is_staff) == ("Ada L.", False)
    assert stale.status_code == 200
    assert "This account changed since you opened this page" in stale.content.decode()
    again = rendered_change_form(staff_client.get(url))
    assert staff_client.post(url, {**again, "is_staff": "on", "_save": "Save"}).status_code == 302
    user.refresh_from_db()
    assert (user.display_name, user.is_staff) == ("Ada L.", True), "a page opened afresh saves"
