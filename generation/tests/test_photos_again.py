"""A photo given once is used again: `source_generation` (API and studio form), recent
photos, and the formats phones save (HEIC, AVIF, WebP)."""

from __future__ import annotations

import io
import json

import pytest
from django.core.files.storage import default_storage
from PIL import Image

from credits.models import CreditEntry
from generation.images import validate_image
from generation.models import Generation
from generation.photos import recent_photos
from presets.tests.factories import PresetFactory
from stefna.accounts.models import User
from tests.images import make_image_bytes

from .api_support import assert_error, photo

URL = "/api/generations"


@pytest.fixture
def style(db):
    return PresetFactory(slug="oil", prompt="an oil painting, {prompt}", requires_prompt=False)


@pytest.fixture
def other_style(db):
    return PresetFactory(slug="ink", prompt="an ink drawing", requires_prompt=False)


def _first_generation(api_client) -> Generation:
    response = api_client.post(URL, {"image": photo(), "preset": "oil"})
    assert response.status_code == 202, response.content
    return Generation.objects.get(pk=response.json()["id"])


def test_source_generation_reuses_the_stored_photo_without_an_upload(api_client, user, style, other_style):
    first = _first_generation(api_client)

    response = api_client.post(
        URL, data=json.dumps({"preset": "ink", "source_generation": str(first.pk)}), content_type="application/json"
    )

    assert response.status_code == 202, response.content
    second = Generation.objects.get(pk=response.json()["id"])
    assert second.pk != first.pk and second.preset_slug == "ink"
    with default_storage.open(first.source_image.name) as a, default_storage.open(second.source_image.name) as b:
        assert a.read() == b.read()
    assert (second.source_width, second.source_height) == (first.source_width, first.source_height)
    assert CreditEntry.objects.filter(generation=second, reason=CreditEntry.Reason.RESERVE).count() == 1


def test_source_generation_works_in_multipart_too(api_client, user, style, other_style):
    first = _first_generation(api_client)
    response = api_client.post(URL, {"preset": "ink", "source_generation": str(first.pk)})
    assert response.status_code == 202, response.content


def test_a_blank_source_generation_means_none_in_multipart(api_client, user, style):
    """A form cannot send null; a blank field is no stored photo, and the upload is used."""
    response = api_client.post(URL, {"image": photo(), "preset": "oil", "source_generation": ""})
    assert response.status_code == 202, response.content
    assert Generation.objects.get(pk=response.json()["id"]).source_image

    response = api_client.post(URL, {"preset": "oil", "source_generation": " "})
    body = assert_error(response, 422, "invalid_input")
    assert body["detail"] == {"field": "image"}


def test_someone_elses_generation_is_not_a_photo_source(api_client, user, style, client):
    stranger = User.objects.create_user("stranger@example.com")
    theirs = Generation.objects.create(
        user=stranger, preset=style, preset_slug="oil", kind=style.kind, cost=2, source_image="IMAGES_UPLOAD/x.jpg"
    )
    response = api_client.post(
        URL, data=json.dumps({"preset": "oil", "source_generation": str(theirs.pk)}), content_type="application/json"
    )
    body = assert_error(response, 422, "invalid_input")
    assert body["detail"] == {"field": "source_generation"}
    assert not Generation.objects.filter(user=user).exists()


def test_no_image_and_no_source_is_still_refused(api_client, user, style):
    response = api_client.post(URL, data=json.dumps({"preset": "oil"}), content_type="application/json")
    assert_error(response, 422, "invalid_input")


def test_the_studio_form_starts_from_a_stored_photo(client, user, style, other_style):
    client.force_login(user)
    client.post("/", {"image": photo(), "preset": "oil"})
    first = Generation.objects.get()

    page = client.get(f"/?source={first.pk}").content.decode()
    assert f'name="source_generation" value="{first.pk}" checked' in page

    response = client.post("/", {"source_generation": str(first.pk), "preset": "ink"})
    assert response.status_code == 302
    assert Generation.objects.filter(user=user, preset_slug="ink").exists()


def test_a_missing_style_keeps_a_fresh_upload(client, user, style):
    client.force_login(user)
    response = client.post("/", {"image": photo()})
    body = response.content.decode()
    assert response.status_code == 422
    assert 'name="kept_image" value="data:image/jpeg;base64,' in body
    assert 'data-testid="error-summary"' in body
    assert 'href="#styles">Pick a style.' in body


def test_an_overlong_prompt_is_refused_whole_not_cut(client, user):
    client.force_login(user)
    PresetFactory(slug="words", prompt="{prompt}", requires_prompt=True)
    long_prompt = "a" * 10_000
    response = client.post("/", {"image": photo(), "preset": "words", "prompt": long_prompt})
    body = response.content.decode()
    assert response.status_code == 422
    assert "The prompt is 10000 characters; the limit is 2000. Please shorten it." in body
    assert long_prompt in body  # nothing the person typed is lost
    assert not Generation.objects.exists()


def test_recent_photos_show_each_photo_once_newest_first(api_client, user, style, other_style):
    first = _first_generation(api_client)
    api_client.post(
        URL, data=json.dumps({"preset": "ink", "source_generation": str(first.pk)}), content_type="application/json"
    )
    wide = api_client.post(URL, {"image": photo(make_image_bytes(800, 400)), "preset": "oil"})
    photos = recent_photos(user=user)
    assert [str(p.generation_id) for p in photos][0] == wide.json()["id"]
    assert len(photos) == 2


@pytest.mark.parametrize("fmt", ["HEIF", "AVIF", "WEBP"])
def test_phone_formats_are_accepted_and_converted(fmt):
    image = Image.new("RGB", (300, 200), (200, 80, 60))
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to view"
    buffer = io.BytesIO()
    image.save(buffer, fmt, exif=exif.tobytes())
    validated = validate_image(buffer.getvalue())
    assert validated.format in ("JPEG", "WEBP")
    decoded = Image.open(io.BytesIO(validated.content))
    assert not decoded.getexif(), "metadata must be stripped"
    if fmt != "HEIF":  # pillow-heif applies the orientation while decoding; either way it ends upright
        assert decoded.size == (200, 300)
    else:
        assert decoded.size in ((200, 300), (300, 200))


def test_notify_emails_the_owner_once_when_it_ends(api_client, user, style, mailoutbox):
    from django_tasks_db.models import DBTaskResult

    from generation.notify import generation_notify_send
    from generation.tests.pipeline_helpers import run_worker

    response = api_client.post(URL, {"image": photo(), "preset": "oil", "notify": "true"})
    generation = Generation.objects.get(pk=response.json()["id"])
    assert generation.notify
    run_worker(generation)
    generation.refresh_from_db()
    assert generation.status == Generation.Status.SUCCEEDED
    queued = DBTaskResult.objects.filter(task_path="generation.notify.generation_notify_task")
    assert [row.args_kwargs["kwargs"] for row in queued] == [{"generation_id": str(generation.pk)}], (
        "the email is queued with the end"
    )
    assert generation_notify_send(generation_id=str(generation.pk))
    assert not generation_notify_send(generation_id=str(generation.pk)), "once"
    assert len(mailoutbox) == 1
    assert mailoutbox[0].to == [user.email]
    assert "ready" in mailoutbox[0].subject
    assert f"/g/{generation.pk}/" in mailoutbox[0].body


def test_without_notify_nobody_is_emailed(api_client, user, style, mailoutbox):
    from generation.notify import generation_notify_send

    response = api_client.post(URL, {"image": photo(), "preset": "oil"})
    assert not generation_notify_send(generation_id=response.json()["id"])
    assert mailoutbox == []
