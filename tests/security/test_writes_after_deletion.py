"""A request signed in a moment before its account was deleted writes nothing for the
closed account once the deletion has committed: no API token (a row naming the account's
scripts, which the deletion removed with the others), no purchase (which would keep the
buyer's email, blanked on every other one, and a checkout nobody expires), no display
name (the deletion's "no name" undone), no language choice (which it forgets too).

Each test reads the user as the request did at authentication, deletes the account, then
lets the request go on. The PostgreSQL-only ones hold the deletion's transaction open
while the request waits on the account's row, as the two would meet in production."""

from __future__ import annotations

import pytest
from django.db import connection, transaction

from credits.exceptions import AccountClosed
from credits.models import Purchase
from credits.payments.purchases import purchase_start
from stefna.accounts.deletion import account_delete
from stefna.accounts.models import ApiToken, User
from stefna.accounts.services import api_token_create, user_set_language, user_update_profile
from tests.databases import someone_waits_for_a_lock_held_here, thread_recording

pytestmark = pytest.mark.django_db


def _signed_in_then_deleted(user: User) -> User:
    """The user as a request read it at authentication, after its account was deleted."""
    signed_in_as = User.objects.get(pk=user.pk)
    account_delete(user=user, confirm=user.email)
    return signed_in_as


def test_a_token_asked_for_just_before_the_deletion_is_refused(user):
    signed_in_as = _signed_in_then_deleted(user)

    with pytest.raises(AccountClosed):
        api_token_create(user=signed_in_as, name="my laptop's backup script")

    assert not ApiToken.objects.filter(user=user).exists()


def test_a_checkout_started_just_before_the_deletion_is_refused_and_keeps_no_email(user, settings):
    settings.OFFLINE_CHECKOUT = True
    signed_in_as = _signed_in_then_deleted(user)

    with pytest.raises(AccountClosed):
        purchase_start(user=signed_in_as, pack_slug="starter", site_url="http://testserver/")

    assert not Purchase.objects.filter(user=user).exists()
    assert not Purchase.objects.filter(email="ada@example.com").exists()


def test_a_display_name_saved_just_before_the_deletion_does_not_come_back(user):
    signed_in_as = _signed_in_then_deleted(user)

    with pytest.raises(AccountClosed):
        user_update_profile(user=signed_in_as, display_name="Ada Lovelace")

    user.refresh_from_db()
    assert user.display_name == "" and not user.is_active


def test_the_deletion_forgets_the_language_and_a_switch_just_before_it_does_not_bring_it_back(user):
    User.objects.filter(pk=user.pk).update(language="id")
    signed_in_as = _signed_in_then_deleted(user)
    user.refresh_from_db()
    assert user.language == ""

    user_set_language(user=signed_in_as, language="en")  # the header's switcher, a moment late

    user.refresh_from_db()
    assert user.language == "" and not user.is_active


def test_a_second_delete_submitted_with_the_first_does_nothing_more(user):
    """ "Delete my account" pressed twice: the second request signed in before the first
    committed. By the time it runs, the address is free and someone may have asked for a
    sign-in code with it: that code is theirs, not the closed account's."""
    from stefna.accounts.models import LoginCode
    from stefna.accounts.services import login_code_send

    signed_in_as = _signed_in_then_deleted(user)
    login_code_send(email="ada@example.com", ip_address=None)  # a new sign-up with the freed address

    account_delete(user=signed_in_as, confirm="ada@example.com")

    assert LoginCode.objects.filter(email="ada@example.com").count() == 1


@pytest.mark.postgres_only
@pytest.mark.django_db(transaction=True)
def test_a_token_waiting_for_the_deletion_finds_the_account_closed(user):
    """The deletion holds the account's row; the token's request, counting live tokens
    under that row's lock, waits for it to commit and then finds the account closed."""
    if connection.vendor != "postgresql":
        pytest.skip("PostgreSQL only: SQLite runs one writing transaction at a time, so the two never overlap")
    signed_in_as = User.objects.get(pk=user.pk)
    outcomes: list[object] = []

    with transaction.atomic():  # the deletion, done, not committed yet
        account_delete(user=user, confirm=user.email)
        creating = thread_recording(lambda: api_token_create(user=signed_in_as, name="late"), outcomes)
        creating.start()
        waited = False
        for _ in range(500):
            waited = someone_waits_for_a_lock_held_here()
            if waited:
                break
            creating.join(0.02)
        assert waited, "the token's request never waited for the deletion"
    creating.join(20)

    assert not creating.is_alive()
    assert [type(outcome) for outcome in outcomes] == [AccountClosed]
    assert not ApiToken.objects.filter(user=user).exists()
