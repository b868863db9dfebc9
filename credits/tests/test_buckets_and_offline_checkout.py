"""Two buckets (free today, purchased) and the offline test checkout."""

from __future__ import annotations

import datetime as dt
import importlib
import re

import pytest
from django.apps import apps
from django.core import mail

from credits import ledger
from credits.models import CreditEntry, CreditPack, Purchase, Wallet
from credits.reconcile import find_ledger_problems
from credits.selectors import quota_for
from generation.tests.factories import GenerationFactory
from tests.tasks import run_tasks


def buckets(user):  # type: ignore[no-untyped-def]
    quota = quota_for(user=user)
    return quota.remaining, quota.purchased_balance


def test_a_generation_spends_free_credits_first_and_a_refund_returns_each_to_its_bucket(user, settings):
    settings.DAILY_CREDITS = 3
    ledger.grant(user=user, amount=10)
    assert buckets(user) == (3, 10)

    generation = GenerationFactory(user=user, cost=5, status="failed")
    ledger.reserve(user=user, generation=generation, amount=5)
    assert buckets(user) == (0, 8)

    ledger.refund(generation=generation)
    assert buckets(user) == (3, 10)
    assert find_ledger_problems(users=[user]) == []


def test_the_daily_reset_refills_only_the_free_bucket_and_bought_credits_never_expire(user, settings):
    settings.DAILY_CREDITS = 30
    yesterday = dt.datetime.now(dt.UTC) - dt.timedelta(days=1)
    ledger.ensure_daily_allowance(user=user, now=yesterday)
    Wallet.objects.filter(pk=user.pk).update(allowance_day=yesterday.date())
    ledger.grant(user=user, amount=40)  # lands on today's allowance
    generation = GenerationFactory(user=user, cost=34, status="queued")
    ledger.reserve(user=user, generation=generation, amount=34)  # 30 free + 4 bought
    assert buckets(user) == (0, 36)
    Wallet.objects.filter(pk=user.pk).update(allowance_day=yesterday.date())  # as if it were tomorrow

    assert buckets(user) == (30, 36)
    assert find_ledger_problems(users=[user]) == []


def test_the_header_shows_both_buckets(client, user):
    ledger.grant(user=user, amount=40)
    client.force_login(user)

    page = client.get("/accounts/").content.decode()

    assert "30 free today · 40 bought" in page
    assert 'data-testid="balance">70<' in page


def test_the_out_of_credits_error_offers_buying_credits(api_client, user, settings):
    settings.DAILY_CREDITS = 0
    from tests.images import make_jpeg

    response = api_client.post(
        "/api/generations", {"image": _upload(make_jpeg(64, 48)), "preset": _preset().slug}, format="multipart"
    )

    assert response.status_code == 402
    assert response.json()["detail"]["buy_credits_url"] == "/credits/"
    assert "buy credits" in response.json()["message"]


def _upload(data: bytes):  # type: ignore[no-untyped-def]
    from django.core.files.uploadedfile import SimpleUploadedFile

    return SimpleUploadedFile("photo.jpg", data, content_type="image/jpeg")


def _preset():  # type: ignore[no-untyped-def]
    from credits.tests.helpers import own_preset

    return own_preset()


def test_the_migration_moves_existing_grants_into_the_purchased_bucket(user, other_user, settings):
    settings.DAILY_CREDITS = 30
    ledger.grant(user=user, amount=40)
    ledger.ensure_daily_allowance(user=other_user)
    # As before two buckets: everything in the free one.
    Wallet.objects.filter(pk=user.pk).update(purchased_balance=0)
    CreditEntry.objects.filter(user=user).update(purchased_amount=0, purchased_after=0)

    importlib.import_module("credits.migrations.0004_seed_packs_and_move_grants").move_grants(apps, None)

    assert buckets(user) == (30, 40)
    assert buckets(other_user) == (30, 0)
    assert CreditEntry.objects.filter(user=user, reason="bucket_move").count() == 1
    assert find_ledger_problems(users=[user, other_user]) == []


@pytest.fixture
def offline(settings):  # type: ignore[no-untyped-def]
    settings.STRIPE_SECRET_KEY = ""
    settings.OFFLINE_CHECKOUT = True


def test_the_offline_checkout_completes_through_the_grant_and_is_labelled(
    client, user, offline, django_capture_on_commit_callbacks
):
    client.force_login(user)
    response = client.post("/credits/checkout/", {"pack": "starter"})
    purchase = Purchase.objects.get()
    assert response.status_code == 302 and response["Location"].endswith(f"/credits/test-checkout/{purchase.pk}/")
    page = client.get(response["Location"]).content.decode()
    assert "Test checkout: no money moves" in page

    with django_capture_on_commit_callbacks(execute=True):
        done = client.post(f"/credits/test-checkout/{purchase.pk}/")
    run_tasks()  # the receipt the grant queued

    purchase.refresh_from_db()
    assert (purchase.status, purchase.provider) == ("paid", "offline")
    assert buckets(user) == (30, 50)
    assert "no money moved" in mail.outbox[-1].body
    assert "50 credits added." in client.get(done["Location"]).content.decode()
    assert client.post(f"/credits/test-checkout/{purchase.pk}/").status_code == 302
    assert buckets(user) == (30, 50), "a second press grants nothing"
    assert find_ledger_problems(users=[user]) == []


def test_the_offline_checkout_api_answers_a_local_url(api_client, user, offline):
    body = api_client.post("/api/checkout", {"pack": "creator"}, content_type="application/json").json()

    assert body["checkout_url"] == f"http://testserver/credits/test-checkout/{body['purchase_id']}/"


def test_the_offline_checkout_is_refused_when_switched_off(client, user, offline, settings):
    client.force_login(user)
    client.post("/credits/checkout/", {"pack": "starter"})
    purchase = Purchase.objects.get()
    settings.OFFLINE_CHECKOUT = False

    assert client.post(f"/credits/test-checkout/{purchase.pk}/").status_code == 404
    assert buckets(user) == (30, 0)


def test_the_account_page_lists_purchases_and_offers_packs(client, user, offline):
    client.force_login(user)
    client.post("/credits/checkout/", {"pack": "starter"})

    page = client.get("/accounts/").content.decode()
    buy = client.get("/credits/").content.decode()

    assert 'data-testid="purchases"' in page and "Starter · 50" in page and "Buy credits" in page
    assert "$4.99" in buy and "Test checkout: no money moves" in buy


def test_someone_elses_test_checkout_is_404_and_grants_nothing(client, user, other_user, offline):
    client.force_login(user)
    client.post("/credits/checkout/", {"pack": "starter"})
    purchase = Purchase.objects.get()
    intruder = type(client)()
    intruder.force_login(other_user)

    assert intruder.get(f"/credits/test-checkout/{purchase.pk}/").status_code == 404
    assert intruder.post(f"/credits/test-checkout/{purchase.pk}/").status_code == 404
    assert intruder.get(f"/credits/purchases/{purchase.pk}/status/").status_code == 404
    purchase.refresh_from_db()
    assert purchase.status == "pending" and buckets(other_user) == (30, 0)


def test_an_unknown_pack_on_the_buy_page_is_a_readable_message(client, user, offline):
    client.force_login(user)

    response = client.post("/credits/checkout/", {"pack": "nope"}, follow=True)

    assert "No credit pack called “nope” is for sale." in response.content.decode()
    assert not Purchase.objects.exists()


def test_a_nul_in_the_pack_form_field_is_an_unknown_pack_not_a_server_error(client, user, offline):
    # PostgreSQL refuses NUL in a query; the form answers as for any unknown pack.
    client.force_login(user)
    response = client.post("/credits/checkout/", {"pack": "star\x00ter"}, follow=True)

    assert response.status_code == 200
    assert "is for sale" in response.content.decode()
    assert not Purchase.objects.exists()


def test_the_buy_page_says_how_many_generations_each_pack_buys(client, user, offline, settings):
    settings.GENERATION_COST = 3  # followed, not assumed: 50 credits → 16, 150 → 50, 400 → 133
    CreditPack.objects.create(slug="taster", name="Taster", credits=5, price=99, sort_order=1)
    client.force_login(user)

    english = client.get("/credits/").content.decode()
    indonesian = client.get("/credits/", HTTP_ACCEPT_LANGUAGE="id").content.decode()

    assert re.findall(r'data-testid="pack-generations">([^<]*)<', english) == [
        "Enough for 1 generation",
        "Enough for 16 generations",
        "Enough for 50 generations",
        "Enough for 133 generations",
    ]
    assert re.findall(r'data-testid="pack-generations">([^<]*)<', indonesian) == [
        "Cukup untuk 1 kreasi",
        "Cukup untuk 16 kreasi",
        "Cukup untuk 50 kreasi",
        "Cukup untuk 133 kreasi",
    ]


def test_the_biggest_seeded_pack_is_no_longer_named_like_the_studio_tab(client, user, offline):
    client.force_login(user)
    buy = client.get("/credits/").content.decode()

    assert CreditPack.objects.get(slug="studio").name == "Pro"
    assert "Buy Pro" in buy and "Buy Studio" not in buy


def test_the_pack_rename_leaves_a_name_an_admin_chose(db):
    rename = importlib.import_module("credits.migrations.0005_rename_studio_pack")
    CreditPack.objects.filter(slug="studio").update(name="Studio Max")
    CreditPack.objects.create(slug="studio-classic", name="Studio", credits=10, price=199)

    rename.rename_pack(apps, None)

    assert CreditPack.objects.get(slug="studio").name == "Studio Max"
    assert CreditPack.objects.get(slug="studio-classic").name == "Studio", "only the seeded row is renamed"
    CreditPack.objects.filter(slug="studio").update(name="Studio")
    rename.rename_pack(apps, None)
    assert CreditPack.objects.get(slug="studio").name == "Pro"
    rename.restore_name(apps, None)
    assert CreditPack.objects.get(slug="studio").name == "Studio"
