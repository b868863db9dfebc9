"""GET /g/{id}/events/: the status page's live card, as Server-Sent Events whose data is
the card itself, through the production ASGI application in-process (as test_events.py
drives the API's stream)."""

from __future__ import annotations

import asyncio

import pytest
from django.conf import settings
from django.test import Client

from generation.models import Generation
from generation.tests.test_events import HeldCancel, Stream, change, run, update
from stefna.accounts.models import User

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("fast_live")]


def session_cookie(user: User) -> dict[str, str]:
    client = Client()
    client.force_login(user)
    return {"Cookie": f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}"}


def events_url(generation: Generation) -> str:
    return f"/g/{generation.pk}/events/"


async def next_card(stream: Stream) -> tuple[int, str] | None:
    """The next event's id and its data lines joined, as EventSource joins them."""
    while True:
        block = await stream.next_block()
        if block is None:
            return None
        lines = block.split("\n")
        data = [line.removeprefix("data: ") for line in lines if line.startswith("data: ")]
        if data:
            [event_id] = [int(line.removeprefix("id: ")) for line in lines if line.startswith("id: ")]
            return event_id, "\n".join(data)


def test_the_card_comes_at_once_in_the_viewer_s_language_and_again_on_each_change(running, user):
    user.language = "id"
    user.save(update_fields=["language"])
    cookie = session_cookie(user)

    async def scenario() -> tuple[str, tuple[int, str] | None, tuple[int, str] | None]:
        async with Stream(events_url(running), cookie) as stream:
            first = await next_card(stream)
            await change(update, running, queue_position=3, status=Generation.Status.QUEUED)
            second = await next_card(stream)
            return stream.response_headers["content-type"], first, second

    content_type, first, second = run(scenario)

    assert content_type.startswith("text/event-stream")
    version = Generation.objects.get(pk=running.pk).version
    assert first is not None and second is not None
    assert first[0] == version - 1 and second[0] == version
    assert first[1].startswith("<article") and 'data-testid="status-card"' in first[1]
    assert "Batalkan dan kembalikan kredit" in first[1]  # "Cancel and refund", in Indonesian
    # Third in Stefna's own queue: two ahead.
    assert 'data-testid="queue-position">2 lagi sebelum giliranmu<' in second[1] and "Posisi antrean" in second[1]
    assert f'data-version="{version}"' in second[1]


def test_v_names_the_version_the_page_shows_nothing_is_sent_until_it_moves(running, user):
    version = Generation.objects.get(pk=running.pk).version
    cookie = session_cookie(user)

    async def scenario() -> tuple[int, str] | None:
        async with Stream(events_url(running), cookie, query=f"v={version}") as stream:
            await asyncio.sleep(0.5)
            await change(update, running, current_model="fal-ai/fast-sdxl")
            return await next_card(stream)

    card = run(scenario)

    assert card is not None and card[0] == version + 1  # the change, not a repeat of the page's state


def test_the_final_card_brings_the_header_balance_and_ends_the_stream(running, user):
    cookie = session_cookie(user)

    async def scenario() -> tuple[tuple[int, str] | None, str, int]:
        async with Stream(events_url(running), cookie) as stream:
            await next_card(stream)
            await change(update, running, status=Generation.Status.FAILED, error_code="timeout")
            final = await next_card(stream)
            rest = await stream.rest()
        assert final is not None
        async with Stream(events_url(running), cookie, query=f"v={final[0]}") as again:
            await again.rest()
        return final, rest, again.status

    final, rest, reconnect_status = run(scenario)

    assert 'data-status="failed"' in final[1] and "data-events-url" not in final[1]
    assert 'id="header-balance"' in final[1] and 'hx-swap-oob="true"' in final[1]
    assert rest == ""
    assert reconnect_status == 204  # EventSource stops; the card is final


def test_a_card_canceled_elsewhere_arrives_whole_with_its_log_line(running, user, api_token, client):
    """The page's stream ends on the final card (and the page stops listening): a line the
    cancel wrote after it would be missing from the card's log until a reload."""
    cookie = session_cookie(user)
    cancel = HeldCancel(client, running, {"Authorization": f"Bearer {api_token}"})

    async def scenario() -> tuple[int, str] | None:
        async with Stream(events_url(running), cookie) as stream:
            await next_card(stream)
            await cancel.start()
            try:
                final = await next_card(stream)
                assert await stream.rest() == ""
            finally:
                assert await cancel.release() == 200
            return final

    final = run(scenario)

    assert final is not None and 'data-status="canceled"' in final[1]
    _before, shown, log = final[1].partition('data-testid="logs"')
    assert shown and "Canceled; your credits were refunded" in log
    assert final[0] == Generation.objects.get(pk=running.pk).version


def test_someone_else_s_generation_is_404_and_no_session_goes_to_sign_in(running, other_user):
    stranger_cookie = session_cookie(other_user)

    async def scenario() -> tuple[int, int, str]:
        async with Stream(events_url(running), stranger_cookie) as stranger:
            await stranger.rest()
        async with Stream(events_url(running), {}) as anonymous:
            await anonymous.rest()
        return stranger.status, anonymous.status, anonymous.response_headers.get("location", "")

    stranger, anonymous, location = run(scenario)

    assert stranger == 404
    assert anonymous == 302 and location.startswith("/accounts/sign-in/")


def test_under_wsgi_the_answer_is_204_and_the_card_polls(client, user, running):
    client.force_login(user)

    response = client.get(events_url(running))

    assert response.status_code == 204
    assert response["Content-Type"].startswith("text/event-stream")


def test_signing_out_ends_the_page_s_stream_within_a_heartbeat(running, user):
    from django.contrib.sessions.models import Session

    version = Generation.objects.get(pk=running.pk).version
    cookie = session_cookie(user)

    def sign_out_everywhere() -> None:
        Session.objects.all().delete()
        from django.core.cache import cache

        cache.clear()  # the cached sessions' copies

    async def scenario() -> tuple[tuple[int, str] | None, bool, int]:
        async with Stream(events_url(running), cookie, query=f"v={version}") as stream:
            await change(sign_out_everywhere)
            await asyncio.sleep(0.4)
            await change(update, running, queue_position=2)
            card = await next_card(stream)
            ended = stream.ended
        async with Stream(events_url(running), cookie, query=f"v={version}") as again:
            await again.rest()
            return card, ended, again.status

    card, ended, reconnect_status = run(scenario)

    assert card is None and ended  # the change after sign-out was not sent
    assert reconnect_status == 302  # the page's stream sends a signed-out browser to sign in


def test_a_signed_in_page_stream_keeps_going_past_its_checks(running, user):
    version = Generation.objects.get(pk=running.pk).version
    cookie = session_cookie(user)

    async def scenario() -> tuple[int, str] | None:
        async with Stream(events_url(running), cookie, query=f"v={version}") as stream:
            await asyncio.sleep(1.0)
            await change(update, running, queue_position=4)
            return await next_card(stream)

    card = run(scenario)

    assert card is not None and card[0] == version + 1
