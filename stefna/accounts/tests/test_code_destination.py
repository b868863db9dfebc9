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
    assert "The code went by email to someone@example.com" in page
    assert "terminal" not in page


def test_a_wrong_code_keeps_the_terminal_hint(client, settings):
    settings.MAILERS = CONSOLE
    _code_page(client)
    response = client.post("/accounts/code/", {"code": "000000"})
    assert 'data-testid="code-in-terminal"' in response.content.decode()
