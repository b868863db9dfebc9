"""The admin index: each app's section has a title of its own, in both languages."""

from __future__ import annotations

import re

import pytest
from allauth.account.models import EmailAddress
from django.apps import apps

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
