"""The status card follows its generation through the event stream, not by polling: served
by uvicorn (the production ASGI app, in this process) so the stream really stays open,
with a real `db_worker` making the image in offline preview mode."""

from __future__ import annotations

import re
import socket
import threading
import time

import pytest
from django.conf import settings
from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler
from django.test import Client
from playwright.sync_api import expect

from generation import services
from generation.models import Generation
from stefna.accounts.models import User
from tests.browser.conftest import DESKTOP
from tests.browser.test_studio_flows import COST, ghibli_tears, header_balance, start_generation

pytestmark = pytest.mark.browser


@pytest.fixture
def asgi_server(transactional_db, settings):
    """stefna.asgi under uvicorn on a free port, on a thread of this process (the test
    database and settings are this process's)."""
    uvicorn = pytest.importorskip("uvicorn")
    settings.ALLOWED_HOSTS = [*settings.ALLOWED_HOSTS, "127.0.0.1"]
    from stefna.asgi import application

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = uvicorn.Config(ASGIStaticFilesHandler(application), host="127.0.0.1", port=port, log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)
    # The event streams read on the shared status thread, which keeps its connection;
    # PostgreSQL cannot drop the test database while it is open.
    from generation import status_thread

    status_thread.generation_status_close_connection()


def signed_in_context(browser, asgi_server: str, user: User):
    """A browser context on the uvicorn server with `user`'s session."""
    signed_in = Client()
    signed_in.force_login(user)
    context = browser.new_context(viewport=DESKTOP, base_url=asgi_server)
    context.add_cookies(
        [
            {
                "name": settings.SESSION_COOKIE_NAME,
                "value": signed_in.cookies[settings.SESSION_COOKIE_NAME].value,
                "url": asgi_server,
            }
        ]
    )
    context.set_default_timeout(15_000)
    return context


def watched_page(browser, asgi_server: str, user: User):
    """A page of `user`'s, with the script errors it raises and the card fetches it makes."""
    context = signed_in_context(browser, asgi_server, user)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    card_fetches: list[str] = []
    page.on("request", lambda request: card_fetches.append(request.url) if "/card/" in request.url else None)
    return context, page, errors, card_fetches


def test_a_running_card_updates_to_the_result_through_the_event_stream(browser, asgi_server, start_worker, tmp_path):
    ghibli_tears()
    start_worker(OFFLINE_QUEUE_SECONDS="1.5", OFFLINE_RUN_SECONDS="2.5")
    user = User.objects.create_user(email="ada@example.com")
    context, page, errors, card_fetches = watched_page(browser, asgi_server, user)
    streams: list[tuple[int, str]] = []
    page.on(
        "response",
        lambda response: (
            streams.append((response.status, response.headers.get("content-type", "")))
            if "/events" in response.url
            else None
        ),
    )

    start_generation(page, tmp_path)
    page.get_by_test_id("start").click()
    page.wait_for_url(re.compile(r"/g/[0-9a-f-]{36}/$"))
    page.evaluate("window.__sameDocument = true")
    card = page.get_by_test_id("status-card")
    expect(card).to_have_attribute("data-status", re.compile("queued|running"))

    # The stream is open while the job runs. Until it opened, the card's timed poll was the
    # fallback; from then on, the card is fetched only when an event says it changed.
    expect(page.locator("body")).to_have_attribute("data-live", "connected")
    changes_before = int(page.locator("body").get_attribute("data-live-events") or 0)
    del card_fetches[:]
    page.get_by_test_id("cancel").focus()
    # ...and the card turns into the result without a reload.
    expect(card).to_have_attribute("data-status", "succeeded", timeout=45_000)
    # Focus that was on Cancel (gone with the running card) lands on the result's title.
    expect(page.get_by_role("heading", level=1)).to_be_focused()
    expect(page.get_by_test_id("media-tile").first).to_be_visible()
    assert page.evaluate("window.__sameDocument") is True
    # The tab title tells it is done (stefna.js's syncTitle after the swap).
    expect(page).to_have_title(re.compile("Done"))

    assert streams and streams[0][0] == 200 and streams[0][1].startswith("text/event-stream")
    changes = int(page.locator("body").get_attribute("data-live-events") or 0)
    assert changes > changes_before  # at least the result
    # Each change came as the card itself: no fetch after it, and the timed poll stayed quiet.
    assert card_fetches == [], (card_fetches, changes, changes_before)
    context.close()
    assert not errors, errors


def test_the_card_comes_in_the_event_itself_and_nothing_is_sent_before_a_change(browser, asgi_server, tmp_path):
    """The page's stream starts from the version the page was rendered with (`?v=`), so it
    sends nothing until the job changes; the change then arrives as the card itself, with
    the header's balance, and the page fetches nothing. (No worker: the job stays queued
    until the test cancels it.)"""
    ghibli_tears()
    user = User.objects.create_user(email="ada@example.com")
    context, page, errors, card_fetches = watched_page(browser, asgi_server, user)

    start_generation(page, tmp_path)
    page.get_by_test_id("start").click()
    page.wait_for_url(re.compile(r"/g/[0-9a-f-]{36}/$"))
    card = page.get_by_test_id("status-card")
    expect(card).to_have_attribute("data-status", "queued")
    expect(page.locator("body")).to_have_attribute("data-live", "connected")
    expect(header_balance(page)).to_have_text(str(settings.DAILY_CREDITS - COST))
    del card_fetches[:]  # the card's timed poll may have run before the stream opened
    page.wait_for_timeout(1500)  # time enough for an event, or a poll, to have come

    assert page.locator("body").get_attribute("data-live-events") is None
    assert card_fetches == []
    generation = Generation.objects.get(user=user)
    assert card.get_attribute("data-version") == str(generation.version)

    services.generation_cancel(generation_id=generation.pk, user=user)

    expect(card).to_have_attribute("data-status", "canceled")
    expect(page.get_by_test_id("refund")).to_be_visible()
    expect(header_balance(page)).to_have_text(str(settings.DAILY_CREDITS))  # swapped out of band
    # Announced to screen readers, as a polled card's change is (stefna.js, afterSettle).
    expect(page.locator("[data-status-announcer]")).to_contain_text("Canceled")
    assert card_fetches == []
    assert page.locator("body").get_attribute("data-live") is None  # a final card ends the stream
    context.close()
    assert not errors, errors
