"""The admin index: each app's section has a title of its own, in both languages."""

from __future__ import annotations

import re

import pytest
from allauth.account.models import EmailAddress
from django.apps import apps
from django.urls import reverse

from credits import ledger
from stefna.accounts.services import api_token_create
from stefna.accounts.tests.factories import UserFactory

pytestmark = pytest.mark.django_db

SECTION_TITLE = re.compile(r'<caption>\s*<a href="[^"]*" class="section"[^>]*>([^<]+)</a>')


def section_titles(client, language: str) -> list[str]:
    response = client.get("/admin/", HTTP_ACCEPT_LANGUAGE=language)
    assert response.status_code == 200
    return SECTION_TITLE.findall(response.content.decode())


@pytest.mark.parametrize("language", ["en", "id"])
def test_the_admin_index_has_no_two_sections_with_the_same_title(staff_client, language):
    titles = section_titles(staff_client, language)

    assert len(titles) >= 5, titles  # the regular expression still finds the sections
    assert len(titles) == len(set(titles)), titles


@pytest.mark.parametrize(
    ("language", "ours", "allauths"),
    [("en", "Accounts", "Sign-in email addresses"), ("id", "Akun", "Alamat email untuk masuk")],
)
def test_our_accounts_and_allauths_email_addresses_are_named_apart(staff_client, language, ours, allauths):
    titles = section_titles(staff_client, language)

    assert ours in titles and allauths in titles


def test_allauths_app_keeps_its_label_and_tables():
    # Only the title changes: migrations, permissions and tables hang off the label.
    config = apps.get_app_config("account")
    assert (config.name, config.label) == ("allauth.account", "account")
    assert EmailAddress._meta.db_table == "account_emailaddress"


# --- Stefna's own admin words follow the staff member's language, as Django's do ------------


def user_admin_pages(client) -> dict[str, object]:
    """The user list, a user's page, a refused two-account delete and a token revoke."""
    ada, bob = UserFactory.create(email="ada@example.com"), UserFactory.create(email="bob@example.com")
    ledger.grant(user=ada, amount=1500, note="welcome")
    token, _plain = api_token_create(user=ada, name="laptop")
    users = reverse("admin:accounts_user_changelist")
    refused = client.post(
        users, {"action": "delete_account", "index": "0", "_selected_action": [str(ada.pk), str(bob.pk)]}, follow=True
    )
    revoked = client.post(
        reverse("admin:accounts_apitoken_changelist"),
        {"action": "revoke", "index": "0", "_selected_action": [str(token.pk)]},
        follow=True,
    )
    return {
        "list": client.get(users).content.decode(),
        "page": client.get(reverse("admin:accounts_user_change", args=[ada.pk])).content.decode(),
        "messages": [str(m) for response in (refused, revoked) for m in response.context["messages"]],
    }


def test_the_user_admin_speaks_indonesian_to_indonesian_staff(staff_client):
    staff_client.cookies["stefna_language"] = "id"

    pages = user_admin_pages(staff_client)

    assert ">Kredit</a>" in pages["list"]  # a column title
    assert ">Hapus akun untuk seterusnya (seperti yang dilakukan pemilik)…</option>" in pages["list"]  # an action
    assert pages["messages"] == [
        "Hapus satu akun saja setiap kali: pilih hanya akun yang akan dihapus.",
        "1 token dicabut.",
    ]
    assert ">Kredit dan catatan</h2>" in pages["page"]  # a fieldset title
    assert "kredit: 1.500 dibeli atau diberikan" in pages["page"]  # counts grouped as the site groups them
    assert "Cocok: saldo" in pages["page"]


def test_the_user_admin_stays_english_for_english_staff(staff_client):
    pages = user_admin_pages(staff_client)

    assert ">Credits</a>" in pages["list"]
    assert ">Delete account for good (as the owner would)…</option>" in pages["list"]
    assert pages["messages"] == ["Delete one account at a time: select only the one to delete.", "Revoked 1 token."]
    assert ">Credits and records</h2>" in pages["page"]
    assert "credits: 1,500 bought or granted" in pages["page"] and "Adds up:" in pages["page"]
