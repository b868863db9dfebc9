"""django-allauth's account app under a title of its own in the admin.

allauth.account's section in the admin index is titled "Accounts" ("Akun"), the same as
ours (stefna.accounts: users, API tokens, sign-in codes). Here it only holds the email
addresses allauth records when someone signs in with Google (stefna/social.py), so it is
named for that. Only the title changes: the name and label, and so allauth's migrations,
tables and permissions, stay exactly allauth's.
"""

from __future__ import annotations

from allauth.account.apps import AccountConfig
from django.utils.translation import gettext_lazy as _


class AllauthAccountConfig(AccountConfig):
    verbose_name = _("Sign-in email addresses")
