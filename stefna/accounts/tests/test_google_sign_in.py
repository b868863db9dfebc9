"""Google sign-in end to end, against a fake OpenID Connect provider at the HTTP level.

The browser's part (following redirects to the provider and back) is played by the
test: Django's client posts "Continue with Google", `requests` follows the provider's
authorize redirect, and the client opens the callback it points to. Everything else,
allauth's token call, discovery and JWKS fetches included, is the code that ships.
"""

from __future__ import annotations

from urllib.parse import urlparse

import pytest
import requests

from stefna.accounts.models import User
from tests.fakes.oidc import FakeOIDCProvider

CLIENT_ID = "stefna-test-client.apps.example"
CLIENT_SECRET = "fake-google-secret"  # noqa: S105 - a test value


def start_fake_google(settings) -> FakeOIDCProvider:
    """A fake OpenID Connect provider, with the settings pointing Google sign-in at it."""
    provider = FakeOIDCProvider(client_id=CLIENT_ID, client_secret=CLIENT_SECRET)
    settings.GOOGLE_CLIENT_ID = CLIENT_ID
    settings.GOOGLE_CLIENT_SECRET = CLIENT_SECRET
    settings.SOCIALACCOUNT_PROVIDERS = {
        "openid_connect": {
            "OAUTH_PKCE_ENABLED": True,
            "APPS": [
                {
                    "provider_id": "google",
                    "name": "Google",
                    "client_id": CLIENT_ID,
                    "secret": CLIENT_SECRET,
                    "settings": {"server_url": provider.url, "fetch_userinfo": False},
                }
            ],
        }
    }
    return provider


@pytest.fixture
def fake_google(settings):
    provider = start_fake_google(settings)
    yield provider
    provider.stop()


def start_sign_in(client, next_url: str | None = None) -> str:
    """Press "Continue with Google"; returns the provider's authorize URL."""
    data = {"process": "login", **({"next": next_url} if next_url else {})}
    response = client.post("/accounts/oidc/google/login/", data)
    assert response.status_code == 302, response.content[:500]
    return response["Location"]


def consent(authorize_url: str) -> str:
    """The provider's consent screen: returns the callback path (with its query)."""
    answer = requests.get(authorize_url, allow_redirects=False, timeout=5)
    assert answer.status_code == 302, answer.text
    callback = urlparse(answer.headers["Location"])
    return f"{callback.path}?{callback.query}"


def finish(client, callback: str):
    return client.get(callback, follow=True)


def signed_in_user(client) -> User | None:
    user_id = client.session.get("_auth_user_id")
    return User.objects.get(pk=user_id) if user_id else None


@pytest.mark.django_db
def test_the_button_shows_only_when_google_is_configured(client, settings):
    settings.GOOGLE_CLIENT_ID = ""
    settings.GOOGLE_CLIENT_SECRET = ""
    assert b"Continue with Google" not in client.get("/accounts/sign-in/").content
    settings.GOOGLE_CLIENT_ID = CLIENT_ID
    assert b"Continue with Google" not in client.get("/accounts/sign-in/").content
    settings.GOOGLE_CLIENT_SECRET = CLIENT_SECRET
    page = client.get("/accounts/sign-in/").content.decode()
    assert "Continue with Google" in page
    assert "Email me a code" in page  # the email code stays beside it


@pytest.mark.django_db
def test_without_a_configured_app_the_login_route_is_404(client, settings):
    settings.SOCIALACCOUNT_PROVIDERS = {"openid_connect": {"APPS": []}}
    assert client.post("/accounts/oidc/google/login/", {"process": "login"}).status_code == 404


@pytest.mark.django_db
def test_a_new_google_account_makes_a_stefna_account(client, fake_google):
    fake_google.identity = {"sub": "g-1", "email": "New.Person@Example.com", "email_verified": True, "name": "N P"}
    response = finish(client, consent(start_sign_in(client)))
    user = signed_in_user(client)
    assert user is not None
    assert user.email == "new.person@example.com"
    assert user.display_name == ""  # Google's profile name is not made public unasked
    assert response.request["PATH_INFO"] == "/"
    assert f"Welcome, {user.public_name}!" in response.content.decode()
    # allauth checked the authorisation code with PKCE and our client credentials.
    (token_request,) = fake_google.token_requests
    assert token_request["grant_type"] == "authorization_code"
    assert token_request["code_verifier"]


@pytest.mark.django_db
def test_a_verified_email_signs_into_the_existing_account(client, fake_google, user):
    fake_google.identity = {"sub": "g-ada", "email": "ADA@example.com", "email_verified": True}
    finish(client, consent(start_sign_in(client)))
    assert signed_in_user(client) == user
    assert User.objects.count() == 1
    # The second time, the linked Google account finds the same user.
    client.logout()
    finish(client, consent(start_sign_in(client)))
    assert signed_in_user(client) == user


@pytest.mark.django_db
def test_a_deleted_account_leaves_no_google_record_and_google_signs_up_afresh(client, fake_google):
    from allauth.account.models import EmailAddress
    from allauth.socialaccount.models import SocialAccount

    from stefna.accounts.deletion import account_delete
    from stefna.accounts.selectors import account_export

    fake_google.identity = {"sub": "g-77", "email": "Pat@Example.com", "email_verified": True, "name": "Pat Private"}
    finish(client, consent(start_sign_in(client)))
    first = signed_in_user(client)
    (linked,) = account_export(user=first)["sign_in_accounts"]  # "everything Stefna holds"
    assert (linked["provider"], linked["uid"]) == ("google", "g-77")

    account_delete(user=first, confirm=first.email)

    assert not SocialAccount.objects.exists()  # Google's id, email and name are gone
    assert not EmailAddress.objects.exists()
    client.logout()
    response = finish(client, consent(start_sign_in(client)))
    again = signed_in_user(client)
    assert response.status_code == 200
    assert again is not None and again.pk != first.pk and again.email == "pat@example.com"


@pytest.mark.django_db
def test_a_closed_account_is_told_so_on_the_sign_in_page(client, fake_google, user):
    fake_google.identity = {"sub": "g-ada", "email": "ada@example.com", "email_verified": True}
    finish(client, consent(start_sign_in(client)))
    client.logout()
    User.objects.filter(pk=user.pk).update(is_active=False)  # closed by staff

    response = finish(client, consent(start_sign_in(client)))

    assert response.status_code == 200
    assert signed_in_user(client) is None
    assert response.request["PATH_INFO"] == "/accounts/sign-in/"
    assert "This account is closed." in response.content.decode()


@pytest.mark.django_db
def test_it_returns_to_next_after_sign_in(client, fake_google):
    response = finish(client, consent(start_sign_in(client, next_url="/history/")))
    assert signed_in_user(client) is not None
    assert response.request["PATH_INFO"] == "/history/"


@pytest.mark.django_db
def test_an_unverified_email_is_refused(client, fake_google, user):
    fake_google.identity = {"sub": "g-x", "email": "ada@example.com", "email_verified": False}
    response = finish(client, consent(start_sign_in(client)))
    assert signed_in_user(client) is None
    assert response.request["PATH_INFO"] == "/accounts/sign-in/"
    assert "Google has not verified ada@example.com" in response.content.decode()


@pytest.mark.django_db
def test_a_forged_id_token_is_refused(client, fake_google):
    fake_google.forge = True  # signed by a key the provider's JWKS does not publish
    response = finish(client, consent(start_sign_in(client)))
    assert signed_in_user(client) is None
    assert User.objects.count() == 0
    assert "answer could not be verified" in response.content.decode()


@pytest.mark.django_db
def test_an_id_token_for_another_app_is_refused(client, fake_google):
    fake_google.audience = "someone-elses-client-id"
    response = finish(client, consent(start_sign_in(client)))
    assert signed_in_user(client) is None
    assert "for another app" in response.content.decode()


@pytest.mark.django_db
def test_a_state_mismatch_is_refused(client, fake_google):
    callback = consent(start_sign_in(client))
    tampered = callback.replace("state=", "state=tampered")
    response = finish(client, tampered)
    assert signed_in_user(client) is None
    assert response.request["PATH_INFO"] == "/accounts/sign-in/"
    assert "expired or was opened in another browser" in response.content.decode()


@pytest.mark.django_db
def test_a_callback_from_another_browser_is_refused(client, fake_google, django_user_model):
    from django.test import Client

    callback = consent(start_sign_in(client))
    stranger = Client()
    response = finish(stranger, callback)
    assert signed_in_user(stranger) is None
    assert "expired or was opened in another browser" in response.content.decode()


@pytest.mark.django_db
def test_refusals_speak_the_visitors_language(client, fake_google):
    fake_google.forge = True
    client.cookies["stefna_language"] = "id"
    response = finish(client, consent(start_sign_in(client)))
    assert signed_in_user(client) is None
    page = response.content.decode()
    assert 'lang="id"' in page
    assert "could not be verified" not in page


def test_the_sign_in_page_may_send_its_form_on_to_google_only_when_configured():
    """settings.py: the CSP's form-action admits Google's origin (the login POST redirects there)."""
    import os
    import subprocess
    import sys

    from django.conf import settings

    code = "from django.conf import settings; print(' '.join(settings.SECURE_CSP['form-action']))"
    base = {**os.environ, "DJANGO_SETTINGS_MODULE": "stefna.settings", "SECRET_KEY": "x", "DEBUG": "0"}

    def form_action(**env: str) -> str:
        command = [sys.executable, "-c", f"import django; django.setup(); {code}"]
        return subprocess.run(
            command, env={**base, **env}, capture_output=True, text=True, check=True, cwd=settings.BASE_DIR
        ).stdout.strip()

    assert form_action(GOOGLE_CLIENT_ID="", GOOGLE_CLIENT_SECRET="") == "'self'"
    assert form_action(GOOGLE_CLIENT_ID="id", GOOGLE_CLIENT_SECRET="secret") == "'self' https://accounts.google.com"


@pytest.mark.django_db
def test_opening_the_login_url_by_link_asks_for_one_more_click_in_our_layout(client, fake_google):
    page = client.get("/accounts/oidc/google/login/", HTTP_ACCEPT_LANGUAGE="id").content.decode()
    assert "Masuk dengan Google" in page
    assert 'class="site-header"' in page  # our layout, not allauth's
    assert fake_google.token_requests == []


@pytest.mark.django_db
def test_after_staff_change_an_email_the_old_one_is_free_for_google_and_the_new_one_signs_in(client, fake_google):
    from allauth.account.models import EmailAddress
    from django.test import Client

    from stefna.accounts.tests.factories import UserFactory
    from stefna.accounts.tests.test_user_admin import rendered_change_form

    fake_google.identity = {"sub": "g-ada", "email": "ada@old.example", "email_verified": True}
    finish(client, consent(start_sign_in(client)))
    ada = signed_in_user(client)
    assert ada is not None

    # The owner lost the old mailbox and asked support to move the account to a new one.
    staff = UserFactory(email="staff@example.com", is_staff=True, is_superuser=True)
    admin = Client()
    admin.force_login(staff)
    page = f"/admin/accounts/user/{ada.pk}/change/"
    data = {**rendered_change_form(admin.get(page)), "email": "ada@new.example", "_save": "Save"}
    changed = admin.post(page, data)
    assert changed.status_code == 302, changed.context["adminform"].form.errors if changed.context else changed
    ada.refresh_from_db()
    assert ada.email == "ada@new.example"
    # allauth's record of the address follows the account's: no row still names the old one.
    assert list(EmailAddress.objects.filter(user=ada).values_list("email", flat=True)) == ["ada@new.example"]

    # Whoever now holds the old address can start their own account with Google...
    client.logout()
    fake_google.identity = {"sub": "g-someone", "email": "ada@old.example", "email_verified": True}
    response = finish(client, consent(start_sign_in(client)))
    someone = signed_in_user(client)
    assert response.status_code == 200
    assert someone is not None and someone.pk != ada.pk and someone.email == "ada@old.example"

    # ...and Ada's own Google account still opens Ada's.
    client.logout()
    fake_google.identity = {"sub": "g-ada", "email": "ada@new.example", "email_verified": True}
    finish(client, consent(start_sign_in(client)))
    assert signed_in_user(client) == ada


@pytest.mark.django_db
def test_google_sign_in_keeps_the_visitors_language_on_an_account_that_chose_none(client, fake_google, user):
    # As the email code does: emails the worker sends later (a finished image, a receipt)
    # are written in the account's language, and this account had none.
    assert user.language == ""
    client.cookies["stefna_language"] = "id"
    fake_google.identity = {"sub": "g-ada", "email": "ada@example.com", "email_verified": True}
    finish(client, consent(start_sign_in(client)))
    assert signed_in_user(client) == user
    user.refresh_from_db()
    assert user.language == "id"

    # A language the account chose is never overwritten by the browser's.
    client.logout()
    client.cookies["stefna_language"] = "en"
    finish(client, consent(start_sign_in(client)))
    user.refresh_from_db()
    assert user.language == "id"


@pytest.mark.postgres_only
@pytest.mark.django_db(transaction=True)
def test_google_sign_in_meeting_the_deletion_leaves_no_google_record_on_the_closed_account(client, fake_google, user):
    """The callback found the account by its email while its deletion was still to commit
    (which had already removed the account's Google records): linking Google to it then
    kept Google's id, email and name on the anonymised row. It waits for the deletion
    instead, and the address, free again, signs up as a new account."""
    from allauth.account.models import EmailAddress
    from allauth.socialaccount.models import SocialAccount
    from django.db import connection, transaction

    from stefna.accounts.deletion import account_delete
    from tests.databases import someone_waits_for_a_lock_held_here, thread_recording

    if connection.vendor != "postgresql":
        pytest.skip("PostgreSQL only: SQLite runs one writing transaction at a time, so the two never overlap")
    fake_google.identity = {"sub": "g-ada", "email": "ada@example.com", "email_verified": True, "name": "Ada Lovelace"}
    callback = consent(start_sign_in(client))
    outcomes: list[object] = []

    with transaction.atomic():  # the deletion, done, not committed yet
        account_delete(user=user, confirm=user.email)
        signing_in = thread_recording(lambda: finish(client, callback), outcomes)
        signing_in.start()
        for _ in range(500):
            if someone_waits_for_a_lock_held_here():
                break
            signing_in.join(0.02)
        else:
            pytest.fail("the sign-in never waited for the deletion")
    signing_in.join(20)

    assert not signing_in.is_alive()
    assert not SocialAccount.objects.filter(user=user).exists()
    assert not EmailAddress.objects.filter(user=user).exists()
    again = signed_in_user(client)
    assert again is not None and again.pk != user.pk and again.email == "ada@example.com"
