import time
from functools import partial

import pytest
from django.core.management import call_command
from django.db import connection, transaction
from django.test import Client

from stefna.accounts import services
from stefna.accounts.models import ApiToken, User
from tests.databases import connections_waiting_for_locks, thread_recording

pytestmark = pytest.mark.django_db


def test_a_valid_token_reaches_a_protected_endpoint(client, user):
    _, plain = services.api_token_create(user=user, name="script")
    response = client.get("/api/me", HTTP_AUTHORIZATION=f"Bearer {plain}")
    assert response.status_code == 200
    assert response.json()["email"] == user.email


@pytest.mark.parametrize("header", ["Bearer stf_wrong", "Bearer ", "Token abc", ""])
def test_a_wrong_or_missing_token_gets_401_with_the_json_error_body(client, user, header):
    extra = {"HTTP_AUTHORIZATION": header} if header else {}
    response = client.get("/api/me", **extra)
    assert response.status_code == 401
    body = response.json()
    assert body["code"] == "unauthorized"
    assert body["message"]
    assert "detail" in body
    # The scheme the API takes (CONTRACT: Authorization: Bearer <token>), as HTTP asks of a 401.
    assert response["WWW-Authenticate"] == 'Bearer realm="api"'


def test_a_revoked_token_gets_401(client, user):
    token, plain = services.api_token_create(user=user)
    assert services.api_token_revoke(user=user, token_id=token.pk)
    response = client.get("/api/me", HTTP_AUTHORIZATION=f"Bearer {plain}")
    assert response.status_code == 401
    assert response.json()["code"] == "unauthorized"


def test_tokens_are_stored_hashed(user):
    token, plain = services.api_token_create(user=user)
    token.refresh_from_db()
    assert plain not in token.token_hash
    assert token.token_hash == services.hash_token(plain)
    assert plain.startswith(token.prefix)


def test_a_user_cannot_revoke_someone_elses_token(user, other_user):
    token, _ = services.api_token_create(user=other_user)
    assert services.api_token_revoke(user=user, token_id=token.pk) is False
    token.refresh_from_db()
    assert token.revoked_at is None


def test_session_auth_works_for_reads(client, user):
    client.force_login(user)
    assert client.get("/api/me").status_code == 200


def test_create_api_token_command_creates_the_account_and_prints_the_token_last(capsys):
    call_command("create_api_token", "Script.User@Example.com")
    lines = capsys.readouterr().out.strip().splitlines()
    token = lines[-1]
    user = User.objects.get(email="script.user@example.com")
    assert token.startswith("stf_")
    assert services.api_token_authenticate(token) == user
    assert ApiToken.objects.filter(user=user).count() == 1


def test_create_api_token_command_reuses_an_existing_account(user, capsys):
    call_command("create_api_token", user.email)
    token = capsys.readouterr().out.strip().splitlines()[-1]
    assert services.api_token_authenticate(token) == user
    assert User.objects.count() == 1


def test_an_account_holds_at_most_max_live_tokens_and_the_page_says_what_to_do(client, user):
    for number in range(services.MAX_LIVE_TOKENS):
        services.api_token_create(user=user, name=f"script {number}")
    client.force_login(user)

    page = client.post("/accounts/tokens/", {"name": "one more"}, follow=True)

    assert ApiToken.objects.filter(user=user).count() == services.MAX_LIVE_TOKENS
    assert "Revoke one you no longer use" in page.content.decode()
    first = ApiToken.objects.filter(user=user).first()
    assert services.api_token_revoke(user=user, token_id=first.pk)
    client.post("/accounts/tokens/", {"name": "one more"})
    assert ApiToken.objects.filter(user=user, revoked_at__isnull=True).count() == services.MAX_LIVE_TOKENS


@pytest.mark.postgres_only
@pytest.mark.django_db(transaction=True)
def test_two_tokens_asked_for_at_once_cannot_take_an_account_past_max_live_tokens(user):
    """One token short of the bound, two "Create token" requests arrive together (a stolen
    session minting in parallel). Each counted the live tokens before either had added
    its own, so both were created and the account held one more than the bound."""
    if connection.vendor != "postgresql":
        pytest.skip(
            "PostgreSQL only: the requests are held between their count and their insert by "
            "LOCK TABLE, which SQLite does not have (there the service's IMMEDIATE transaction "
            "takes the write lock before it counts)"
        )
    for number in range(services.MAX_LIVE_TOKENS - 1):
        services.api_token_create(user=user, name=f"script {number}")
    answers = _create_token_twice_at_once(user, {"name": "parallel"})

    assert answers == [302, 302]  # back to the account page, with the token or the refusal
    assert ApiToken.objects.filter(user=user, revoked_at__isnull=True).count() == services.MAX_LIVE_TOKENS


@pytest.mark.postgres_only
@pytest.mark.django_db(transaction=True)
def test_one_create_token_form_sent_twice_at_once_creates_one_token(user):
    """A double click on "Create token" sends the form twice, the second before the first
    has answered: two tokens were created, and only the second was ever shown."""
    if connection.vendor != "postgresql":
        pytest.skip(
            "PostgreSQL only: the requests are held before their insert by LOCK TABLE, which "
            "SQLite does not have (there the service's IMMEDIATE transaction orders them)"
        )
    form = {"name": "laptop", "create_key": "8b0f3c9e-5d7a-4d3e-9c61-2f4b7a1e0d55"}
    answers = _create_token_twice_at_once(user, form)

    assert answers == [302, 302]
    assert ApiToken.objects.filter(user=user).count() == 1


def _create_token_twice_at_once(user, form: dict[str, str]) -> list[object]:
    """Two signed-in browsers post `form` to "Create token" together: both requests are in
    flight at once, whatever order their threads run in. Their status codes."""
    browsers = [Client(), Client()]
    for browser in browsers:
        browser.force_login(user)
    answers: list[object] = []

    def post(browser: Client) -> int:
        return browser.post("/accounts/tokens/", form).status_code

    threads = [thread_recording(partial(post, browser), answers) for browser in browsers]
    with transaction.atomic():
        # New tokens wait here (a SHARE lock lets reads through, not inserts).
        with connection.cursor() as cursor:
            cursor.execute(f"LOCK TABLE {ApiToken._meta.db_table} IN SHARE MODE")
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 10
        while connections_waiting_for_locks() < len(threads):
            assert time.monotonic() < deadline, "the requests never both waited"
            time.sleep(0.02)
    for thread in threads:
        thread.join(20)
    return answers
