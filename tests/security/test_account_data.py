"""Your data, your account: the export holds every row of the user and nothing of
anyone else; deletion leaves no file, no Cloudinary asset, no token or session, keeps
the money records without personal data, and frees the email for a new account."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from django.conf import settings
from django.core import mail
from django.test import Client

from credits import ledger
from credits.models import CreditEntry
from generation.models import Generation, Media
from generation.tests.pipeline_helpers import run_worker, start_generation
from presets.tests.factories import PresetFactory
from stefna.accounts.models import ApiToken, User
from stefna.accounts.services import api_token_create
from tests.databases import someone_waits_for_a_lock_held_here
from tests.tasks import run_tasks, time_passes

pytestmark = pytest.mark.django_db


def _files() -> list[Path]:
    root = Path(settings.MEDIA_ROOT)
    return [path for path in root.rglob("*") if path.is_file()] if root.exists() else []


@pytest.fixture
def two_users_with_images(user, other_user, fake_fal):
    preset = PresetFactory(kind="neo_glitch")
    mine = [start_generation(user, preset, prompt=f"my secret prompt {n}") for n in range(2)]
    theirs = start_generation(other_user, preset, prompt="grace's own prompt")
    for generation in [*mine, theirs]:
        run_worker(generation)
    ledger.grant(user=user, amount=5, note="welcome")
    return mine, theirs


def _bearer(user) -> Client:
    _, token = api_token_create(user=user, name="export")
    return Client(HTTP_AUTHORIZATION=f"Bearer {token}")


def test_the_export_has_every_row_of_the_user_and_nothing_of_anyone_else(user, other_user, two_users_with_images):
    mine, theirs = two_users_with_images
    response = _bearer(user).get("/api/me/export")
    assert response.status_code == 200
    data = response.json()
    assert data["profile"]["email"] == user.email
    assert {g["id"] for g in data["generations"]} == {str(g.pk) for g in Generation.objects.filter(user=user)}
    assert {i["id"] for i in data["images"]} == {str(m.pk) for m in Media.objects.filter(user=user)}
    assert {e["id"] for e in data["ledger"]} == set(CreditEntry.objects.filter(user=user).values_list("pk", flat=True))
    assert len(data["images"]) == 2 and data["purchases"] == []
    assert {g["prompt"] for g in data["generations"]} == {"my secret prompt 0", "my secret prompt 1"}
    # The addresses work for their owner.
    owner = Client()
    owner.force_login(user)
    for image in data["images"]:
        assert owner.get(image["url"].removeprefix("http://testserver")).status_code == 200
    text = response.content.decode()
    for foreign in (other_user.email, str(other_user.pk), str(theirs.pk), "grace's own prompt"):
        assert foreign not in text
    for entry in CreditEntry.objects.filter(user=other_user):
        assert entry.pk not in {e["id"] for e in data["ledger"]}


def test_the_export_holds_the_language_the_account_chose(user):
    """The header's switcher stores a choice on the account (issue 21): it is something
    Stefna holds about the person, so the export says it."""
    User.objects.filter(pk=user.pk).update(language="id")

    profile = _bearer(user).get("/api/me/export").json()["profile"]

    assert profile["language"] == "id"


def test_the_api_export_is_the_whole_export_and_its_schema_names_every_field(user, two_users_with_images, client):
    """CONTRACT: GET /api/me/export holds the profile, generations, images with their
    URLs, purchases and ledger; /api/openapi.json documents those fields (it said only
    "an object"), and declaring them drops nothing the export holds."""
    from allauth.socialaccount.models import SocialAccount

    from credits.models import CreditPack, Purchase
    from stefna.accounts.selectors import account_export

    pack = CreditPack.objects.create(slug="small", name="Small", credits=5, price=100)
    Purchase.objects.create(user=user, email=user.email, pack=pack, credits=5, price=100, currency="usd")
    SocialAccount.objects.create(user=user, provider="google", uid="1234", extra_data={"email": user.email})
    start_generation(user, PresetFactory())  # one still queued: no image, no end time

    answer = _bearer(user).get("/api/me/export").json()

    expected = json.loads(json.dumps(account_export(user=user, absolute=lambda url: f"http://testserver{url}")))
    expected["exported_at"] = answer["exported_at"]
    assert answer == expected
    schemas = client.get("/api/openapi.json").json()["components"]["schemas"]
    assert set(schemas["ExportOut"]["properties"]) == set(answer)
    for key, schema in [("generations", "ExportGenerationOut"), ("images", "ExportImageOut"),
                        ("ledger", "ExportLedgerEntryOut"), ("purchases", "ExportPurchaseOut"),
                        ("api_tokens", "ExportApiTokenOut"), ("sign_in_accounts", "ExportSignInOut")]:  # fmt: skip
        assert answer[key], key
        assert set(schemas[schema]["properties"]) == set(answer[key][0]), key
    assert set(schemas["ExportProfileOut"]["properties"]) == set(answer["profile"])


def test_the_account_page_offers_both_and_the_download_is_a_json_file(user, two_users_with_images):
    client = Client()
    client.force_login(user)
    page = client.get("/accounts/").content.decode()
    assert "Download my data" in page and "Delete my account" in page
    download = client.get("/accounts/export/")
    assert download.status_code == 200
    assert download["Content-Disposition"].startswith('attachment; filename="stefna-data-')
    assert json.loads(download.content)["profile"]["email"] == user.email


def test_a_wrong_confirmation_deletes_nothing(user, two_users_with_images):
    client = _bearer(user)
    before = (Generation.objects.count(), Media.objects.count(), len(_files()))
    answer = client.delete("/api/me", data=json.dumps({"confirm": "someone@else.com"}), content_type="application/json")
    assert answer.status_code == 422 and answer.json()["code"] == "invalid_input"
    assert answer.json()["message"] == "Type your account's email address exactly to confirm."
    in_indonesian = client.delete(
        "/api/me", data=json.dumps({"confirm": "x"}), content_type="application/json", HTTP_ACCEPT_LANGUAGE="id"
    )
    assert in_indonesian.json()["message"] == "Ketik alamat email akunmu persis sama untuk mengonfirmasi."
    missing = client.delete("/api/me", data=json.dumps({}), content_type="application/json")
    assert missing.status_code == 422
    assert (Generation.objects.count(), Media.objects.count(), len(_files())) == before
    assert User.objects.get(pk=user.pk).is_active


def test_deleting_removes_files_tokens_sessions_and_keeps_money_records_anonymous(
    user, other_user, two_users_with_images, django_capture_on_commit_callbacks
):
    mine, theirs = two_users_with_images
    my_files = {settings.MEDIA_ROOT / g.source_image.name for g in mine} | {
        settings.MEDIA_ROOT / m.storage_key for m in Media.objects.filter(user=user)
    }
    their_files = set(_files()) - my_files
    assert my_files <= set(_files()) and their_files
    entries = CreditEntry.objects.filter(user=user).count()
    browser = Client()
    browser.force_login(user)
    api = _bearer(user)

    with django_capture_on_commit_callbacks(execute=True):  # files go once the deletion is committed
        answer = api.delete(
            "/api/me", data=json.dumps({"confirm": "  ADA@example.com "}), content_type="application/json"
        )

    assert answer.status_code == 204
    assert set(_files()) == their_files, "none of the user's files remain; everyone else's do"
    assert not Media.objects.filter(user=user).exists()
    assert api.get("/api/me/export").status_code == 401, "tokens revoked"
    assert not ApiToken.objects.filter(user_id=user.pk).exists()
    assert browser.get("/accounts/").status_code == 302, "the session no longer signs in"
    assert CreditEntry.objects.filter(user_id=user.pk).count() == entries, "money records stay"
    tombstone = User.objects.get(pk=user.pk)
    # (not `"ada" not in email`: the tombstone's random hex can spell "ada", as it once did)
    assert not tombstone.is_active and "ada@" not in tombstone.email and "example.com" not in tombstone.email
    assert tombstone.display_name == ""
    for generation in Generation.objects.filter(user_id=user.pk):
        assert generation.prompt == generation.prompt_sent == "" and not generation.source_image
        assert "secret prompt" not in json.dumps(generation.logs)
    assert Media.objects.filter(user=other_user).exists()


def test_the_same_email_can_sign_up_again_as_a_new_account(user, two_users_with_images):
    old_pk = user.pk
    client = Client()
    client.force_login(user)
    response = client.post("/accounts/delete/", {"confirm": user.email})
    assert response.status_code == 302
    assert "_auth_user_id" not in client.session

    client.post("/accounts/sign-in/", {"email": "ada@example.com"})
    code = re.search(r"\b(\d{6})\b", mail.outbox[-1].body).group(1)
    client.post("/accounts/code/", {"code": code})
    fresh = User.objects.get(email="ada@example.com")
    assert fresh.pk != old_pk and client.session["_auth_user_id"] == str(fresh.pk)
    assert not Generation.objects.filter(user=fresh).exists()


def test_the_page_refuses_a_mistyped_email(user, two_users_with_images):
    client = Client()
    client.force_login(user)
    response = client.post("/accounts/delete/", {"confirm": "ada@example.co"}, follow=True)
    assert "Type your account" in response.content.decode()
    assert User.objects.get(pk=user.pk).is_active


def test_deletion_leaves_no_cloudinary_asset_of_the_user(
    user, other_user, fake_fal, fake_cloudinary, django_capture_on_commit_callbacks
):
    preset = PresetFactory(kind="neo_glitch")
    mine = start_generation(user, preset)
    theirs = start_generation(other_user, preset)
    run_worker(mine), run_worker(theirs)
    my_assets = set(Media.objects.filter(user=user).values_list("storage_key", flat=True))
    assert my_assets and my_assets <= set(fake_cloudinary.assets)

    with django_capture_on_commit_callbacks(execute=True):
        answer = _bearer(user).delete(
            "/api/me", data=json.dumps({"confirm": user.email}), content_type="application/json"
        )

    assert answer.status_code == 204
    assert not my_assets & set(fake_cloudinary.assets)
    assert set(Media.objects.filter(user=other_user).values_list("storage_key", flat=True)) <= set(
        fake_cloudinary.assets
    )


def test_a_generation_in_flight_is_canceled_and_refunded_before_deletion(
    user, fake_fal, django_capture_on_commit_callbacks
):
    generation = start_generation(user, PresetFactory(kind="neo_glitch"))
    with django_capture_on_commit_callbacks(execute=True):
        answer = _bearer(user).delete(
            "/api/me", data=json.dumps({"confirm": user.email}), content_type="application/json"
        )
    assert answer.status_code == 204
    generation.refresh_from_db()
    assert generation.status == Generation.Status.CANCELED
    assert CreditEntry.objects.filter(generation=generation, reason="refund").exists()
    run_worker(generation)
    assert not Media.objects.filter(generation=generation).exists()
    assert _files() == []


def _purchase(user, pack):
    from credits.models import Purchase

    return Purchase.objects.create(
        user=user, email=user.email, pack=pack, credits=pack.credits, price=pack.price, currency="usd"
    )


def test_purchases_are_exported_and_kept_without_the_email_after_deletion(
    user, other_user, django_capture_on_commit_callbacks
):
    from credits.models import CreditPack, Purchase

    pack = CreditPack.objects.create(slug="export-pack", name="Export pack", credits=10, price=199)
    mine, theirs = _purchase(user, pack), _purchase(other_user, pack)
    Purchase.objects.filter(pk=mine.pk).update(
        receipt_url="https://pay.stripe.example/receipts/r1", needs_attention=True, attention_note="staff: check this"
    )
    data = _bearer(user).get("/api/me/export").json()
    assert [p["id"] for p in data["purchases"]] == [str(mine.pk)]
    (exported,) = data["purchases"]
    assert (exported["pack"], exported["price"], exported["receipt_url"]) == (
        "export-pack",
        199,
        "https://pay.stripe.example/receipts/r1",
    )
    assert not {"attention_note", "needs_attention", "stripe_session_id", "checkout_url"} & exported.keys()
    assert str(theirs.pk) not in json.dumps(data)

    with django_capture_on_commit_callbacks(execute=True):
        answer = _bearer(user).delete(
            "/api/me", data=json.dumps({"confirm": user.email}), content_type="application/json"
        )

    assert answer.status_code == 204
    kept = Purchase.objects.get(pk=mine.pk)
    assert kept.email == "" and kept.price == 199 and kept.user_id == user.pk
    assert kept.receipt_url == ""  # Stripe's receipt page opens for anyone with its address
    assert Purchase.objects.get(pk=theirs.pk).email == other_user.email


def test_a_request_authenticated_before_the_deletion_is_refused_at_its_charge(user, settings):
    """A generation requested a moment before the account was deleted (the request was
    signed in, then the deletion committed) is neither charged nor kept: its photo and
    prompt would outlive the account."""
    from credits.exceptions import AccountClosed
    from generation import services
    from generation.images import validate_image
    from stefna.accounts.deletion import account_delete
    from tests.images import make_image_bytes

    preset = PresetFactory(slug="late", requires_prompt=False)
    ledger.ensure_daily_allowance(user=user)
    signed_in_as = User.objects.get(pk=user.pk)  # what the request read at authentication
    account_delete(user=user, confirm=user.email)
    entries = CreditEntry.objects.count()
    files_before = set(_files())

    with pytest.raises(AccountClosed) as refused:
        services.generation_request(
            user=signed_in_as, preset_slug=preset.slug, image=validate_image(make_image_bytes()), prompt="late"
        )

    assert refused.value.status == 401 and refused.value.code == "unauthorized"
    assert not Generation.objects.filter(user=user).exists()
    assert CreditEntry.objects.count() == entries
    assert set(_files()) == files_before


def _until_someone_waits_for_my_lock(what: str) -> None:
    import time

    deadline = time.monotonic() + 10
    while not someone_waits_for_a_lock_held_here():
        assert time.monotonic() < deadline, what
        time.sleep(0.02)


def _in_a_thread(function, failures: list[Exception]):  # type: ignore[no-untyped-def]
    import threading

    from django.db import connection

    def run() -> None:
        try:
            function()
        except Exception as exc:  # reported by the test, not lost in the thread
            failures.append(exc)
        finally:
            connection.close()

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def _require_postgresql() -> None:
    from django.db import connection

    if connection.vendor != "postgresql":
        pytest.skip("PostgreSQL only: SQLite runs one writing transaction at a time, so the two never overlap")


@pytest.mark.postgres_only
@pytest.mark.django_db(transaction=True)
def test_a_generation_charged_just_before_the_deletion_commits_is_seen_and_canceled_by_it(user, fake_fal):
    """The request's charge locked the account first; the deletion waits for it to commit,
    then sees its generation: canceled, refunded and scrubbed, its photo removed."""
    from django.db import transaction

    from credits.reconcile import find_ledger_problems
    from generation import services
    from generation.images import validate_image
    from stefna.accounts.deletion import account_delete
    from tests.images import make_image_bytes

    _require_postgresql()
    preset = PresetFactory(slug="just-before", requires_prompt=False)
    ledger.ensure_daily_allowance(user=user)
    files_before = set(_files())
    failures: list[Exception] = []

    with transaction.atomic():  # the request, charged, its photo stored, not committed yet
        generation, _ = services.generation_request(
            user=user, preset_slug=preset.slug, image=validate_image(make_image_bytes()), prompt="my secret"
        )
        deleting = _in_a_thread(lambda: account_delete(user=user, confirm=user.email), failures)
        _until_someone_waits_for_my_lock("the deletion never waited for the charge")
    deleting.join(20)

    assert not deleting.is_alive() and not failures, [str(failure) for failure in failures]
    generation.refresh_from_db()
    assert generation.status == Generation.Status.CANCELED
    assert generation.prompt == "" and not generation.source_image and generation.deleted_at is not None
    assert set(_files()) == files_before  # the photo went with the account
    assert CreditEntry.objects.filter(generation=generation, reason="refund").count() == 1
    assert find_ledger_problems(users=[user]) == []


@pytest.mark.postgres_only
@pytest.mark.django_db(transaction=True)
def test_a_charge_waiting_for_the_deletion_finds_the_account_closed(user, fake_fal):
    """The deletion locked the account first; a request charged meanwhile waits for it to
    commit, then finds the account closed: nothing charged, nothing kept."""
    from django.db import transaction

    from credits.exceptions import AccountClosed
    from generation import services
    from generation.images import validate_image
    from stefna.accounts.deletion import account_delete
    from tests.images import make_image_bytes

    _require_postgresql()
    preset = PresetFactory(slug="just-after", requires_prompt=False)
    ledger.ensure_daily_allowance(user=user)
    signed_in_as = User.objects.get(pk=user.pk)  # what the request read at authentication
    photo = validate_image(make_image_bytes())
    entries = CreditEntry.objects.count()
    failures: list[Exception] = []

    with transaction.atomic():  # the deletion, done, not committed yet
        account_delete(user=user, confirm=user.email)
        requesting = _in_a_thread(
            lambda: services.generation_request(user=signed_in_as, preset_slug=preset.slug, image=photo, prompt="late"),
            failures,
        )
        _until_someone_waits_for_my_lock("the charge never waited for the deletion")
    requesting.join(20)

    assert not requesting.is_alive()
    assert [type(failure) for failure in failures] == [AccountClosed]
    assert not Generation.objects.filter(user=user).exists()
    assert CreditEntry.objects.count() == entries


def test_an_email_owed_for_a_generation_that_ended_before_the_deletion_is_never_sent(
    user, fake_fal, mailoutbox, django_capture_on_commit_callbacks
):
    """ "Email me when it's done": the generation ended, its email is queued, then the account
    goes before the worker sends it. The address is now deleted-….invalid and the image is
    gone: nothing is sent."""
    from stefna.accounts.deletion import account_delete

    generation = start_generation(user, PresetFactory(kind="neo_glitch"), notify=True)
    with django_capture_on_commit_callbacks(execute=True):
        run_worker(generation)
    assert generation.status == Generation.Status.SUCCEEDED
    account_delete(user=User.objects.get(pk=user.pk), confirm=user.email)

    run_tasks()
    time_passes()  # and no later try sends it either
    run_tasks()

    assert [message.to for message in mailoutbox] == []
