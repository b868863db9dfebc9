"""The code page says where the code went: by email, or (console mail backend) the terminal."""

import pytest

pytestmark = pytest.mark.django_db

CONSOLE = {"default": {"BACKEND": "django.core.mail.backends.console.EmailBackend"}}
SMTP = {"default": {"BACKEND": "django.core.mail.backends.locmem.EmailBackend"}}


def _code_page(client):
    response = client.post("/accounts/sign-in/", {"email": "someone@example.com"})
    assert response.status_code == 302
    return client.get("/accounts/code/").content.decode()


def test_with_the_console_backend_the_page_says_the_code_is_in_the_terminal(client, settings, capsys):
    settings.MAILERS = CONSOLE
    page = _code_page(client)
    assert 'data-testid="code-in-terminal"' in page
    assert "printed in the terminal where the server runs" in page
    assert 'data-testid="code-by-email"' not in page
    # ...and it really is there: the console backend wrote the message to stdout.
    assert "someone@example.com" in capsys.readouterr().out


def test_with_a_real_mail_backend_the_page_says_the_code_went_by_email(client, settings):
    settings.MAILERS = SMTP
    page = _code_page(client)
    assert 'data-testid="code-by-email"' in page
    assert "We sent a 6-digit code to <strong>someone@example.com</strong>" in page
    assert "Look in your spam folder" in page
    # The address is said once (the hidden field of "Send me a new code" aside): the
    # hint under it used to name it again.
    assert page.count("someone@example.com") - page.count('value="someone@example.com"') == 1
    assert "terminal" not in page


def test_a_wrong_code_keeps_the_terminal_hint(client, settings):
    settings.MAILERS = CONSOLE
    _code_page(client)
    response = client.post("/accounts/code/", {"code": "000000"})
    assert 'data-testid="code-in-terminal"' in response.content.decode()
