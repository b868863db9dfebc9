"""The staff dashboard page: linked from the admin index, staff only, fixed cost."""

from __future__ import annotations

import datetime as dt

import time_machine
from django.db import connection
from django.test.utils import CaptureQueriesContext

from generation.tests.test_dashboard import NOW, data_set  # noqa: F401  (the known data set fixture)
from stefna.accounts.tests.factories import UserFactory

URL = "/admin/dashboard/"


def test_the_admin_index_links_to_the_dashboard_and_health(staff_client):
    content = staff_client.get("/admin/").content.decode()
    assert f'href="{URL}"' in content
    assert 'href="/healthz"' in content


def test_the_dashboard_renders_every_figure(staff_client, data_set):  # noqa: F811
    # The data set sits at fixed dates; the page reads the clock, so the clock is set to the
    # data set's "now" (else the 14-day window slides past it as the calendar moves on).
    with time_machine.travel(NOW, tick=False):
        response = staff_client.get(URL)
    assert response.status_code == 200
    content = response.content.decode()
    for section in ('id="backlog"', 'id="fallback"', 'id="models"', 'id="per-hour"', 'id="per-day"', 'id="credits"'):
        assert section in content
    assert "fal-ai/ghiblify" in content
    assert "image" in content and "not yet persisted" in content
    assert response["Cache-Control"].startswith("max-age=0")
    # No inline script or style anywhere: the CSP would block them.
    assert "<script>" not in content and "style=" not in content


def test_the_dashboard_costs_a_fixed_number_of_queries(staff_client, data_set):  # noqa: F811
    with CaptureQueriesContext(connection) as queries:
        assert staff_client.get(URL).status_code == 200
    # 11 figure queries, plus the session and the user of the request.
    assert len(queries) == 13


def test_the_dashboard_renders_on_an_empty_database(staff_client):
    response = staff_client.get(URL)
    assert response.status_code == 200
    assert b"Every image is persisted." in response.content
    assert b"No finished attempts in the window." in response.content


def test_the_dashboard_is_for_staff_only(client, db):
    assert client.get(URL).status_code == 302  # to the admin login
    client.force_login(UserFactory(email="someone@example.com"))
    response = client.get(URL)
    assert response.status_code == 302 and "/admin/login/" in response["Location"]


def test_the_dashboard_counts_stuck_jobs_and_flagged_purchases_and_links_to_them(staff_client):
    from django.utils import timezone

    from credits.models import CreditPack, Purchase
    from generation.models import Generation
    from generation.tests.factories import GenerationFactory

    stuck = GenerationFactory(status=Generation.Status.RUNNING, completed_at=None)
    Generation.objects.filter(pk=stuck.pk).update(created_at=timezone.now() - dt.timedelta(minutes=20))
    GenerationFactory(status=Generation.Status.RUNNING, completed_at=None)  # just started: not stuck
    buyer = UserFactory(email="buyer@example.com")
    for flagged in (True, False):
        Purchase.objects.create(
            user=buyer, pack=CreditPack.objects.get(slug="starter"), credits=50, price=499, currency="usd",
            status="paid", paid_at=timezone.now(), needs_attention=flagged,
        )  # fmt: skip

    content = staff_client.get(URL).content.decode()
    assert "<strong>1</strong> generation queued or running for over 15 minutes" in content
    assert "<strong>1</strong> purchase flagged" in content
    assert '/admin/generation/generation/?attention=stuck"' in content
    assert '/admin/credits/purchase/?needs_attention__exact=1"' in content
    stuck_list = staff_client.get("/admin/generation/generation/?attention=stuck").context["cl"].result_list
    assert [generation.pk for generation in stuck_list] == [stuck.pk]


def test_the_dashboard_says_when_nothing_needs_attention(staff_client):
    content = staff_client.get(URL).content.decode()
    assert "No generation is stuck." in content and "No purchase is flagged." in content
