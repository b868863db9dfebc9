"""Sign-in code entry: each try is reserved in the database before the comparison, so
parallel guessing checks at most MAX_CODE_ATTEMPTS guesses; entries are limited per IP;
an over-long email is a form error, not a 500."""

from __future__ import annotations

import re
import threading

import pytest
from django.core import mail
from django.db import connection
from django.test import Client

from stefna.accounts import services
from stefna.accounts.models import LoginCode
from stefna.errors import RateLimited


def _sent_code() -> str:
    match = re.search(r"\b(\d{6})\b", str(mail.outbox[-1].body))
    assert match, mail.outbox[-1].body
    return match.group(1)


@pytest.mark.django_db(transaction=True)
def test_a_hundred_parallel_wrong_guesses_check_at_most_five(mailoutbox):
    services.login_code_send(email="victim@example.com", ip_address=None)
    right = _sent_code()
    wrong = f"{(int(right) + 1) % 1_000_000:06d}"
    threads_count = 25  # 25 connections at once; each sends 4 of the 100 guesses
    barrier = threading.Barrier(threads_count)
    outcomes: list[str] = []
    lock = threading.Lock()

    def guess() -> None:
        try:
            barrier.wait(timeout=30)
            for _ in range(4):
                try:
                    services.login_code_verify(email="victim@example.com", code=wrong)
                    result = "signed in"
                except services.CodeInvalid as exc:
                    result = exc.message
                with lock:
                    outcomes.append(result)
        finally:
            connection.close()

    threads = [threading.Thread(target=guess) for _ in range(threads_count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)

    assert len(outcomes) == 100
    assert "signed in" not in outcomes
    # Only a reserved try is compared: at most five answers come from a comparison.
    assert sum("not right" in message for message in outcomes) <= 5
    stored = LoginCode.objects.get(email="victim@example.com")
    assert stored.failed_attempts == 5, "exactly five tries were ever reserved, so at most five compared"
    # Guesses after the fifth are refused before any comparison, the right code included.
    with pytest.raises(services.CodeInvalid, match="Too many wrong tries"):
        services.login_code_verify(email="victim@example.com", code=right)


@pytest.mark.django_db
def test_reservations_are_counted_before_the_comparison(mailoutbox):
    services.login_code_send(email="ada@example.com", ip_address=None)
    right = _sent_code()
    for n in range(4):
        with pytest.raises(services.CodeInvalid):
            services.login_code_verify(email="ada@example.com", code="000000" if right != "000000" else "111111")
        assert LoginCode.objects.get(email="ada@example.com").failed_attempts == n + 1
    # The fifth try is the right one: reserved, compared, accepted.
    assert services.login_code_verify(email="ada@example.com", code=right).email == "ada@example.com"


@pytest.mark.django_db
@pytest.mark.usefixtures("clear_of_rate_window_end")
def test_code_entry_is_limited_per_ip_across_emails(settings, mailoutbox):
    settings.RATE_LIMIT_CODE_ENTRIES_PER_IP = (3, 900)
    for n in range(4):
        services.login_code_send(email=f"inbox{n}@example.com", ip_address=None)
    for n in range(3):
        with pytest.raises(services.CodeInvalid):
            services.login_code_verify(email=f"inbox{n}@example.com", code="000000", ip_address="203.0.113.77")
    with pytest.raises(RateLimited):
        services.login_code_verify(email="inbox3@example.com", code="000000", ip_address="203.0.113.77")
    assert LoginCode.objects.get(email="inbox3@example.com").failed_attempts == 0, "refused before any try"


@pytest.mark.django_db
@pytest.mark.usefixtures("clear_of_rate_window_end")
def test_the_code_page_answers_429_past_the_per_ip_limit(settings, mailoutbox):
    settings.RATE_LIMIT_CODE_ENTRIES_PER_IP = (2, 900)
    client = Client(REMOTE_ADDR="203.0.113.78")
    client.post("/accounts/sign-in/", {"email": "page@example.com"})
    answers = [client.post("/accounts/code/", {"code": "000000"}).status_code for _ in range(3)]
    assert answers[:2] != [429, 429] and answers[2] == 429


@pytest.mark.django_db
def test_a_255_character_email_is_a_form_error_not_a_500(mailoutbox):
    email = "a" * (255 - len("@example.com")) + "@example.com"
    assert len(email) == 255
    response = Client().post("/accounts/sign-in/", {"email": email})
    assert response.status_code == 422
    assert b"at most 254 characters" in response.content
    assert mailoutbox == []
    assert not LoginCode.objects.exists()
