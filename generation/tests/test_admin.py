"""The operator admin for generations and media: pages render, searches find, costs stay fixed."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from credits import ledger
from generation.models import Attempt, Generation, Media
from generation.registry import FAST_SDXL_I2I, GHIBLIFY, REALISTIC_VISION
from generation.tests.factories import AttemptFactory, GenerationFactory, MediaFactory
from presets.tests.factories import PresetFactory
from stefna.accounts.tests.factories import UserFactory

CHANGELIST = reverse("admin:generation_generation_changelist")
MEDIA_CHANGELIST = reverse("admin:generation_media_changelist")


def change_url(generation: Generation) -> str:
    return reverse("admin:generation_generation_change", args=[generation.pk])


def make_job(email: str = "ada@example.com", *, status=Generation.Status.SUCCEEDED, attempts=2, media=1):
    """A generation with attempts (the last one won unless it failed), images and its money."""
    preset = PresetFactory(slug="admin-style", model_chain=[GHIBLIFY, REALISTIC_VISION, FAST_SDXL_I2I])
    generation = GenerationFactory.create(
        user=UserFactory(email=email),
        preset=preset,
        status=status,
        current_model=[GHIBLIFY, REALISTIC_VISION, FAST_SDXL_I2I][attempts - 1],
        request_payload={"image_url": "data:image/jpeg;base64,/9j/4AAQ…(1234 chars)", "prompt": "sent prompt"},
        logs=[{"message": "Queued", "level": "info", "timestamp": "2026-11-20T12:00:00+00:00"}],
    )
    for position in range(attempts):
        last = position == attempts - 1
        AttemptFactory(
            generation=generation,
            position=position,
            model=generation.model_chain[position],
            status=Attempt.Status.SUCCEEDED
            if last and status == Generation.Status.SUCCEEDED
            else Attempt.Status.FAILED,
            error="" if last else "fal said: model crashed",
            payload={"prompt": "sent prompt", "strength": 0.5},
        )
    for index in range(media):
        MediaFactory(generation=generation, index=index)
    ledger.reserve(user=generation.user, generation=generation, amount=generation.cost)
    return generation


def count_queries(client, url: str) -> int:
    with CaptureQueriesContext(connection) as queries:
        response = client.get(url)
    assert response.status_code == 200
    return len(queries)


def test_the_changelist_shows_the_columns_operators_need(staff_client):
    generation = make_job("ada@example.com", attempts=2)
    response = staff_client.get(CHANGELIST)
    assert response.status_code == 200
    row = response.context["cl"].result_list[0]
    assert row.attempt_total == 2
    content = response.content.decode()
    for expected in ("ada@example.com", REALISTIC_VISION, "admin-style", str(generation.pk)[:8], "Succeeded"):
        assert expected in content


def test_the_changelist_costs_the_same_queries_for_3_or_30_generations(staff_client):
    for n in range(3):
        make_job(f"user{n}@example.com")
    few = count_queries(staff_client, CHANGELIST)
    for n in range(3, 30):
        make_job(f"user{n}@example.com")
    many = count_queries(staff_client, CHANGELIST)
    assert few == many
    assert many <= 6  # session, user, count, rows (+ savepoint-free reads): no per-row queries


@pytest.mark.parametrize("how", ["email", "fal_job_id", "generation_id", "email_part"])
def test_search_finds_a_generation_by_email_fal_request_id_or_id(staff_client, how):
    wanted = make_job("needle@example.com")
    make_job("hay@example.com")
    term = {
        "email": "needle@example.com",
        "email_part": "needle",
        "fal_job_id": wanted.attempts.order_by("position").first().fal_job_id,
        "generation_id": str(wanted.pk),
    }[how]
    response = staff_client.get(CHANGELIST, {"q": term})
    assert response.status_code == 200
    assert [row.pk for row in response.context["cl"].result_list] == [wanted.pk]


def test_filters_by_status_kind_and_model(staff_client):
    succeeded = make_job("a@example.com", attempts=1)
    failed = make_job("b@example.com", status=Generation.Status.FAILED, attempts=3)

    def found(**params):
        return {row.pk for row in staff_client.get(CHANGELIST, params).context["cl"].result_list}

    assert found(status__exact="failed") == {failed.pk}
    assert found(model=GHIBLIFY) == {succeeded.pk}
    assert found(model=FAST_SDXL_I2I) == {failed.pk}
    assert found(kind="preset") == {succeeded.pk, failed.pk}
    assert found(kind="neo_glitch") == set()


def test_the_change_page_shows_attempts_payload_logs_media_and_money(staff_client, settings):
    settings.FAL_KEY = "key-id:do-not-print-this-secret"
    generation = make_job(attempts=2, media=2)
    response = staff_client.get(change_url(generation))
    assert response.status_code == 200
    content = response.content.decode()
    attempt = generation.attempts.order_by("position").first()
    assert attempt.fal_job_id in content
    assert "fal said: model crashed" in content
    assert "&quot;strength&quot;: 0.5" in content  # the attempt's payload, pretty-printed
    assert "sent prompt" in content and "(1234 chars)" in content  # the generation's last payload
    assert "Queued" in content  # logs
    for media in generation.media.all():
        assert f'src="{media.url}"' in content
    assert "Reserved for a generation" in content and "Credit entries of this generation" in content
    assert "do-not-print-this-secret" not in content
    # Nothing to save: every field is read-only and changes are actions.
    assert 'name="_save"' not in content
    assert 'name="CHANGE_FORM-action"' in content


def test_the_change_page_costs_the_same_queries_however_many_attempts_and_images(staff_client):
    small = make_job("s@example.com", attempts=1, media=1)
    large = make_job("l@example.com", attempts=3, media=4)
    # The first admin page of a process also reads its content types (cached per process
    # afterwards): warm that up, or the order of the tests decides the count.
    staff_client.get(change_url(small))
    assert count_queries(staff_client, change_url(small)) == count_queries(staff_client, change_url(large))


def test_generations_cannot_be_added_or_deleted_in_the_admin(staff_client):
    generation = make_job()
    assert staff_client.get(reverse("admin:generation_generation_add")).status_code == 403
    assert staff_client.get(reverse("admin:generation_generation_delete", args=[generation.pk])).status_code == 403


def test_non_staff_users_are_sent_to_the_admin_login(client, db):
    client.force_login(UserFactory(email="user@example.com"))
    response = client.get(CHANGELIST)
    assert response.status_code == 302
    assert "/admin/login/" in response["Location"]


# --- Media ----------------------------------------------------------------------------------


def test_the_media_changelist_shows_thumbnails_and_flags_in_fixed_queries(staff_client):
    make_job("a@example.com", media=2)
    few = count_queries(staff_client, MEDIA_CHANGELIST)
    make_job("b@example.com", media=4)
    make_job("c@example.com", media=4)
    response = staff_client.get(MEDIA_CHANGELIST)
    media = Media.objects.first()
    assert f'src="{media.url}"' in response.content.decode()
    assert count_queries(staff_client, MEDIA_CHANGELIST) == few


def test_the_media_change_page_renders(staff_client):
    media = make_job().media.first()
    response = staff_client.get(reverse("admin:generation_media_change", args=[media.pk]))
    assert response.status_code == 200
    assert f'src="{media.url}"' in response.content.decode()


def test_staff_see_images_owing_a_move_and_removals_still_owed(staff_client):
    from django.utils import timezone

    from generation.models import StoredRemoval

    settled, owing = make_job("a@example.com", media=2).media.all()
    Media.objects.filter(pk=owing.pk).update(
        move_to="generated/new.png", move_next_at=timezone.now(), move_error="AuthorizationRequired: refused"
    )
    StoredRemoval.objects.create(
        where="cloudinary", key="stefna/generated/gone", reason="account_deleted", next_at=timezone.now(), attempts=3
    )

    listed = staff_client.get(MEDIA_CHANGELIST + "?move_owed=yes").content.decode()
    assert str(owing.pk)[:8] in listed and str(settled.pk)[:8] not in listed
    page = staff_client.get(reverse("admin:generation_media_change", args=[owing.pk])).content.decode()
    assert "AuthorizationRequired: refused" in page
    removals = staff_client.get(reverse("admin:generation_storedremoval_changelist"))
    assert removals.status_code == 200 and "stefna/generated/gone" in removals.content.decode()
    assert 'href="/admin/generation/storedremoval/add/' not in removals.content.decode()


def test_takedown_asks_for_a_reason_then_hides_the_image(staff_client, staff):
    media = make_job().media.first()
    media.is_public = True
    media.save()
    first = staff_client.post(MEDIA_CHANGELIST, {"action": "take_down", "_selected_action": [str(media.pk)]})
    assert first.status_code == 200
    assert b'name="reason"' in first.content
    media.refresh_from_db()
    assert media.hidden is False  # nothing happens before the reason is given

    missing = staff_client.post(
        MEDIA_CHANGELIST, {"action": "take_down", "_selected_action": [str(media.pk)], "apply": "1", "reason": " "}
    )
    assert missing.status_code == 200 and b"This field is required" in missing.content
    media.refresh_from_db()
    assert media.hidden is False

    done = staff_client.post(
        MEDIA_CHANGELIST,
        {"action": "take_down", "_selected_action": [str(media.pk)], "apply": "1", "reason": "Reported: nudity"},
        follow=True,
    )
    assert b"Took down 1 image." in done.content
    media.refresh_from_db()
    assert (media.hidden, media.hidden_reason, media.is_public) == (True, "Reported: nudity", True)
    # Gone from the public feed.
    assert str(media.pk) not in staff_client.get("/api/feed").content.decode()


def test_takedown_works_from_the_media_change_page(staff_client):
    media = make_job().media.first()
    url = reverse("admin:generation_media_change", args=[media.pk])
    form = staff_client.post(url, {"CHANGE_FORM-action": "take_down", "_selected_action": str(media.pk)})
    assert form.status_code == 200 and b'name="CHANGE_FORM-action"' in form.content
    done = staff_client.post(
        url,
        {"CHANGE_FORM-action": "take_down", "_selected_action": str(media.pk), "apply": "1", "reason": "Spam"},
    )
    assert done.status_code == 302 and done["Location"] == url
    media.refresh_from_db()
    assert (media.hidden, media.hidden_reason) == (True, "Spam")


def test_restore_undoes_a_takedown(staff_client):
    media = make_job().media.first()
    Media.objects.filter(pk=media.pk).update(hidden=True, hidden_reason="mistake", is_public=True)
    response = staff_client.post(
        MEDIA_CHANGELIST, {"action": "restore", "_selected_action": [str(media.pk)], "index": "0"}, follow=True
    )
    assert b"Restored 1 image." in response.content
    media.refresh_from_db()
    assert (media.hidden, media.hidden_reason, media.is_public) == (False, "", True)


def test_make_private_turns_the_public_flag_off(staff_client):
    media = make_job().media.first()
    Media.objects.filter(pk=media.pk).update(is_public=True)
    staff_client.post(MEDIA_CHANGELIST, {"action": "make_private", "_selected_action": [str(media.pk)], "index": "0"})
    media.refresh_from_db()
    assert media.is_public is False


def test_media_search_finds_by_fal_request_id_and_generation_id(staff_client):
    wanted = make_job("needle@example.com").media.first()
    make_job("hay@example.com")
    for term in (wanted.fal_job_id, str(wanted.generation_id), str(wanted.pk), "needle"):
        response = staff_client.get(MEDIA_CHANGELIST, {"q": term})
        assert [row.pk for row in response.context["cl"].result_list] == [wanted.pk], term


def test_the_needs_attention_filter_finds_stuck_unpersisted_and_unsettled_jobs(staff_client):
    import datetime as dt

    import time_machine
    from django.utils import timezone

    with time_machine.travel(timezone.now() - dt.timedelta(minutes=20)):
        stuck = make_job("stuck@example.com", status=Generation.Status.RUNNING, media=0)
    make_job("fresh@example.com", status=Generation.Status.RUNNING, media=0)  # active, but young
    unpersisted = make_job("slow-cloud@example.com")
    Media.objects.filter(generation=unpersisted).update(persisted=False)
    unsettled = make_job("leak@example.com", status=Generation.Status.FAILED, media=0)  # reserved, never refunded
    refunded = make_job("fine@example.com", status=Generation.Status.FAILED, media=0)
    ledger.refund(generation=refunded)
    delivered = make_job("done@example.com", media=1)
    ledger.capture(generation=delivered)

    def found(value):
        response = staff_client.get(CHANGELIST, {"attention": value})
        return {row.pk for row in response.context["cl"].result_list}

    assert found("stuck") == {stuck.pk}
    assert found("unpersisted") == {unpersisted.pk}
    # make_job's succeeded jobs that were never captured are "unsettled" too; the
    # captured and the refunded ones are not.
    assert unsettled.pk in found("unsettled")
    assert refunded.pk not in found("unsettled") and delivered.pk not in found("unsettled")
    assert stuck.pk not in found("unsettled")  # still active: not over yet


def test_the_unsettled_filter_looks_at_the_latest_charge_after_a_retry(staff_client, staff):
    from generation.services import generation_refund, generation_retry

    generation = make_job("retry@example.com", status=Generation.Status.FAILED, media=0)
    ledger.refund(generation=generation)  # charge 1 settled
    generation_retry(generation_id=generation.pk, by=staff)  # charge 2 reserved
    Generation.objects.filter(pk=generation.pk).update(status=Generation.Status.FAILED)  # failed again, unrefunded

    def unsettled():
        response = staff_client.get(CHANGELIST, {"attention": "unsettled"})
        return {row.pk for row in response.context["cl"].result_list}

    assert generation.pk in unsettled()
    generation_refund(generation_id=generation.pk, by=staff)  # charge 2 settled
    assert generation.pk not in unsettled()


def test_the_list_says_why_a_generation_failed_and_the_page_gives_its_cost_in_credits(staff_client):
    failed = GenerationFactory(
        status=Generation.Status.FAILED, error_code="model_failed", error_message="Every model in the chain failed."
    )
    GenerationFactory(status=Generation.Status.SUCCEEDED)
    listing = staff_client.get(CHANGELIST, {"status__exact": "failed"}).content.decode()
    assert '<span title="Every model in the chain failed.">model_failed</span>' in listing
    page = staff_client.get(change_url(failed)).content.decode()
    assert f"{failed.cost} credits" in page


def test_support_finds_a_job_and_its_images_by_the_address_the_user_sent(staff_client):
    generation = GenerationFactory()
    media = MediaFactory(generation=generation)
    GenerationFactory(), MediaFactory()  # others that must not match
    media_changelist = reverse("admin:generation_media_changelist")

    def found(url, term):  # type: ignore[no-untyped-def]
        return [row.pk for row in staff_client.get(url, {"q": term}).context["cl"].result_list]

    assert found(CHANGELIST, f"https://stefna.example/g/{generation.pk}/") == [generation.pk]
    assert found(CHANGELIST, f"https://stefna.example/i/{media.share_id}") == [generation.pk]
    assert found(CHANGELIST, f"https://stefna.example/i/{media.pk}/") == [generation.pk]
    assert found(media_changelist, f"https://stefna.example/i/{media.share_id}?utm_source=x") == [media.pk]
    assert found(media_changelist, media.share_id) == [media.pk]


# --- Languages: Stefna's own admin words follow the staff member's, as Django's do ----------


def test_the_generation_admin_speaks_indonesian_to_indonesian_staff(staff_client):
    generation = make_job(status=Generation.Status.RUNNING)
    media = generation.media.first()
    Media.objects.filter(pk=media.pk).update(hidden=True, hidden_reason="mistake")
    headers = {"HTTP_ACCEPT_LANGUAGE": "id"}

    listing = staff_client.get(CHANGELIST, **headers).content.decode()
    confirm = staff_client.post(
        CHANGELIST, {"action": "cancel_generations", "index": "0", "_selected_action": [str(generation.pk)]}, **headers
    ).content.decode()
    restored = staff_client.post(
        MEDIA_CHANGELIST,
        {"action": "restore", "_selected_action": [str(media.pk)], "index": "0"},
        follow=True,
        **headers,
    )

    assert ">Model yang dipakai</a>" in listing  # a column title
    assert "Ulangi dari model pertama… (kredit disisihkan lagi)</option>" in listing  # an action
    assert "Berdasarkan perlu diperiksa" in listing  # a filter's title, in Django's own "By …" phrase
    # The confirmation step: its title, warning and button, and the job's cost.
    assert "Batalkan kreasi" in confirm and 'value="Ya, batalkan"' in confirm
    assert "kreditnya dikembalikan ke pemiliknya" in confirm and "kredit</li>" in confirm
    assert [str(message) for message in restored.context["messages"]] == ["1 gambar dipulihkan."]


def test_the_generation_admin_stays_english_for_english_staff(staff_client):
    generation = make_job(status=Generation.Status.RUNNING)

    listing = staff_client.get(CHANGELIST, HTTP_ACCEPT_LANGUAGE="en").content.decode()
    confirm = staff_client.post(
        CHANGELIST, {"action": "cancel_generations", "index": "0", "_selected_action": [str(generation.pk)]}
    ).content.decode()

    assert ">Model used</a>" in listing
    assert "Retry from the first model… (reserves credits again)</option>" in listing
    assert "By needs attention" in listing
    assert "Cancel generations" in confirm and 'value="Yes, cancel"' in confirm
    assert "Running jobs are stopped for good" in confirm and "credits</li>" in confirm
