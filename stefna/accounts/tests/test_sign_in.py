import html
import re
from datetime import timedelta

import pytest
from django.core import mail
from django.utils import timezone

from stefna.accounts import services
from stefna.accounts.models import LoginCode, User
from stefna.errors import RateLimited

pytestmark = pytest.mark.django_db


def _sent_code() -> str:
    match = re.search(r"\b(\d{6})\b", str(mail.outbox[-1].body))
    assert match, mail.outbox[-1].body
    return match.group(1)


def test_the_right_code_signs_in_and_creates_the_account(client):
    response = client.post("/accounts/sign-in/", {"email": "New.Person@Example.com"})
    assert response.status_code == 302
    assert mail.outbox[-1].to == ["new.person@example.com"]

    response = client.post("/accounts/code/", {"code": _sent_code()})

    assert response.status_code == 302
    user = User.objects.get(email="new.person@example.com")
    assert client.session["_auth_user_id"] == str(user.pk)


def test_someone_without_a_display_name_is_told_what_their_images_are_signed_with(client):
    # "Welcome, artist-4f1c9a!" alone read like a mistake; it now says what that is.
    client.post("/accounts/sign-in/", {"email": "new@example.com"})
    page = client.post("/accounts/code/", {"code": _sent_code()}, follow=True).content.decode()
    user = User.objects.get(email="new@example.com")
    assert f"Welcome, {user.public_name}!" in page
    assert f"Your public images are signed “{user.public_name}”." in page

    user.display_name = "Ada"
    user.save()
    client.logout()
    client.post("/accounts/sign-in/", {"email": "new@example.com"})
    again = client.post("/accounts/code/", {"code": _sent_code()}, follow=True).content.decode()
    assert "Welcome, Ada!" in again and "Your public images are signed" not in again


def test_codes_are_stored_hashed_not_in_plain_text():
    services.login_code_send(email="ada@example.com", ip_address="10.0.0.1")
    code = _sent_code()
    stored = LoginCode.objects.get(email="ada@example.com")
    assert code not in stored.code_hash
    assert len(stored.code_hash) == 64
    assert stored.code_hash == services._code_hash("ada@example.com", code)


def test_a_code_works_only_once():
    services.login_code_send(email="ada@example.com", ip_address=None)
    code = _sent_code()
    services.login_code_verify(email="ada@example.com", code=code)
    with pytest.raises(services.CodeInvalid):
        services.login_code_verify(email="ada@example.com", code=code)


def test_five_wrong_tries_lock_the_code_even_for_the_right_one():
    services.login_code_send(email="ada@example.com", ip_address=None)
    code = _sent_code()
    wrong = "000000" if code != "000000" else "111111"
    for _ in range(5):
        with pytest.raises(services.CodeInvalid):
            services.login_code_verify(email="ada@example.com", code=wrong)
    with pytest.raises(services.CodeInvalid, match="Too many wrong tries"):
        services.login_code_verify(email="ada@example.com", code=code)
    assert not User.objects.filter(email="ada@example.com").exists()


def test_an_expired_code_fails():
    services.login_code_send(email="ada@example.com", ip_address=None)
    code = _sent_code()
    LoginCode.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    with pytest.raises(services.CodeInvalid, match="expired"):
        services.login_code_verify(email="ada@example.com", code=code)


def test_a_new_code_replaces_the_previous_one():
    services.login_code_send(email="ada@example.com", ip_address=None)
    first = _sent_code()
    services.login_code_send(email="ada@example.com", ip_address=None)
    second = _sent_code()
    if first != second:
        with pytest.raises(services.CodeInvalid):
            services.login_code_verify(email="ada@example.com", code=first)
    assert services.login_code_verify(email="ada@example.com", code=second).email == "ada@example.com"


@pytest.mark.usefixtures("clear_of_rate_window_end")
def test_sending_is_rate_limited_per_email():
    for _ in range(5):
        services.login_code_send(email="ada@example.com", ip_address=None)
    with pytest.raises(RateLimited):
        services.login_code_send(email="ada@example.com", ip_address=None)
    assert len(mail.outbox) == 5


@pytest.mark.usefixtures("clear_of_rate_window_end")
def test_sending_is_rate_limited_per_ip():
    for n in range(20):
        services.login_code_send(email=f"person{n}@example.com", ip_address="203.0.113.9")
    with pytest.raises(RateLimited):
        services.login_code_send(email="one-more@example.com", ip_address="203.0.113.9")


def test_the_sign_in_form_shows_a_readable_error_for_a_bad_email(client):
    response = client.post("/accounts/sign-in/", {"email": "not-an-email"})
    assert response.status_code == 422
    assert b"Enter a valid email address." in response.content
    assert mail.outbox == []


def test_a_wrong_code_in_the_form_says_how_many_tries_are_left(client):
    client.post("/accounts/sign-in/", {"email": "ada@example.com"})
    code = _sent_code()
    wrong = "000000" if code != "000000" else "111111"
    response = client.post("/accounts/code/", {"code": wrong})
    assert response.status_code == 422
    assert b"4 tries left" in response.content
    assert "_auth_user_id" not in client.session


def test_sign_in_never_redirects_off_site(client):
    client.post("/accounts/sign-in/", {"email": "ada@example.com", "next": "https://evil.example/"})
    response = client.post("/accounts/code/", {"code": _sent_code(), "next": "https://evil.example/"})
    assert response.status_code == 302
    assert response["Location"] == "/"


def test_the_page_asked_for_is_kept_whole_through_both_steps(client):
    """Signing in from /history/?status=failed&kind=preset lands there, both filters kept:
    the address of the code step carried `next` unescaped, so all after its `&` was lost."""
    wanted = "/history/?status=failed&kind=preset"
    first = client.get("/history/?status=failed&kind=preset")
    assert first.status_code == 302
    sign_in_page = client.get(first["Location"]).content.decode()
    assert f'name="next" value="{html.escape(wanted)}"' in sign_in_page

    to_code = client.post("/accounts/sign-in/", {"email": "ada@example.com", "next": wanted})
    code_page = client.get(to_code["Location"]).content.decode()
    assert f'name="next" value="{html.escape(wanted)}"' in code_page

    signed_in = client.post(to_code["Location"], {"code": _sent_code(), "next": wanted})
    assert signed_in["Location"] == wanted


@pytest.mark.parametrize(
    ("saved", "browser", "greeting"), [("en", "id", "Welcome, Ada!"), ("id", "en", "Selamat datang, Ada!")]
)
def test_the_welcome_speaks_the_language_of_the_page_it_is_shown_on(client, saved, browser, greeting):
    """The account's saved language wins once signed in; the greeting was written in the
    sign-in page's language and so showed in the other one."""
    User.objects.create_user(email="ada@example.com", display_name="Ada", language=saved)
    client.post("/accounts/sign-in/", {"email": "ada@example.com"}, HTTP_ACCEPT_LANGUAGE=browser)
    page = client.post("/accounts/code/", {"code": _sent_code()}, HTTP_ACCEPT_LANGUAGE=browser, follow=True)
    assert page["Content-Language"] == saved
    assert greeting in page.content.decode()


def test_a_locked_or_expired_code_offers_a_new_one_without_typing_the_email_again(client):
    wanted = "/history/?status=failed&kind=preset"
    client.post("/accounts/sign-in/", {"email": "ada@example.com", "next": wanted})
    code = _sent_code()
    wrong = "000000" if code != "000000" else "111111"
    for _try in range(services.MAX_CODE_ATTEMPTS):
        locked = client.post("/accounts/code/", {"code": wrong, "next": wanted})
    page = locked.content.decode()
    assert "Too many wrong tries for this code." in page
    resend = page[page.index('action="/accounts/sign-in/"') :]
    assert 'name="email" value="ada@example.com"' in resend[: resend.index("</form>")]
    assert 'data-testid="send-new-code"' in resend[: resend.index("</form>")]

    again = client.post("/accounts/sign-in/", {"email": "ada@example.com", "next": wanted})
    assert again.status_code == 302 and len(mail.outbox) == 2
    assert client.post(again["Location"], {"code": _sent_code(), "next": wanted})["Location"] == wanted
