"""The hostile-input corpus (tests/data/corpus.py) against every way in: `POST /api/generations`
as multipart and as JSON base64 (data URI and bare), and the studio form.

Each refusal answers its documented error, costs nothing (balance and entries as they
were), stores nothing (no generation, task, file). Each acceptance stores a clean,
re-encoded photo: orientation applied, no EXIF or GPS, no smuggled payload.
"""

from __future__ import annotations

import base64
import io
import json

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from PIL import Image

from credits.models import CreditEntry
from generation.models import Generation
from tests.data.corpus import (
    ACCEPTED,
    EXIF_DISPLAY_SIZE,
    IMAGES,
    MALFORMED_BASE64,
    MALFORMED_JSON_BODIES,
    POLYGLOT_MARKER,
    PROMPTS,
    Sample,
)
from tests.images import make_jpeg

from .conftest import STYLE_SLUG, assert_error, stored_files

URL = "/api/generations"
pytestmark = pytest.mark.django_db


def _ids(samples):
    return [sample.name for sample in samples]


def _upload(sample: Sample) -> SimpleUploadedFile:
    return SimpleUploadedFile(sample.name, sample.make(), content_type=sample.content_type)


def _check_stored_photo(sample: Sample, generation: Generation) -> None:
    """What we keep of an accepted photo: a fresh encode, metadata and payloads gone."""
    files = stored_files()
    assert len(files) == 1, files
    assert files[0].name.endswith(("jpg", "png", "webp"))
    assert sample.name.rsplit(".", 1)[0] not in files[0].name, "the client's file name is never used"
    data = files[0].read_bytes()
    image = Image.open(io.BytesIO(data))
    image.load()
    assert image.mode in ("RGB", "RGBA"), image.mode
    assert not image.getexif(), "no EXIF survives"
    assert "exif" not in image.info
    assert (generation.source_width, generation.source_height) == image.size
    if sample.name == "phone.jpg":
        assert image.size == EXIF_DISPLAY_SIZE, "orientation applied"
        top, bottom = image.getpixel((15, 5)), image.getpixel((15, 55))
        assert isinstance(top, tuple) and isinstance(bottom, tuple)  # RGB(A): a pixel is a tuple
        assert top[0] > 200 and top[2] < 60, f"red on top once upright, got {top}"
        assert bottom[2] > 200 and bottom[0] < 60, f"blue at the bottom, got {bottom}"
        assert b"StefnaTestCam" not in data and b"GPS" not in data
    if sample.name == "scan.png":
        grey = image.getpixel((10, 10))
        assert isinstance(grey, tuple)  # RGB(A): a pixel is a tuple
        assert all(110 <= channel <= 145 for channel in grey[:3]), f"16-bit mid-grey stays mid-grey, got {grey}"
    if sample.name == "polyglot.jpg":
        assert POLYGLOT_MARKER not in data and b"<html>" not in data


def _check_answer(response, expect, sample: Sample, untouched) -> None:
    if expect == ACCEPTED:
        assert response.status_code == 202, response.content[:300]
        generation = Generation.objects.get(pk=response.json()["id"])
        assert CreditEntry.objects.filter(generation=generation, reason=CreditEntry.Reason.RESERVE).count() == 1
        _check_stored_photo(sample, generation)
    else:
        status, code = expect
        assert_error(response, status, code)
        untouched()


# --- Uploads -------------------------------------------------------------------------------


@pytest.mark.parametrize("sample", IMAGES, ids=_ids(IMAGES))
def test_each_upload_gets_its_documented_answer_as_multipart(api_client, style, untouched, sample):
    response = api_client.post(URL, {"image": _upload(sample), "preset": STYLE_SLUG, "prompt": "x"})

    _check_answer(response, sample.expect, sample, untouched)


# Every sample as a data URI; bare base64 (same decoder after the prefix) for a few.
JSON_CASES = [(sample, True) for sample in IMAGES] + [
    (sample, False) for sample in IMAGES if sample.name in ("empty.jpg", "letter.jpg", "bomb.png", "phone.jpg")
]


@pytest.mark.parametrize(
    ("sample", "as_data_uri"),
    JSON_CASES,
    ids=[f"{sample.name}-{'data-uri' if uri else 'bare'}" for sample, uri in JSON_CASES],
)
def test_each_upload_gets_its_documented_answer_as_json_base64(api_client, style, untouched, sample, as_data_uri):
    encoded = base64.b64encode(sample.make()).decode()
    value = f"data:{sample.content_type};base64,{encoded}" if as_data_uri else encoded
    body = {"image_base64": value, "preset": STYLE_SLUG, "prompt": "x"}

    response = api_client.post(URL, data=json.dumps(body), content_type="application/json")

    expect = sample.expected_json
    if as_data_uri and sample.name == "empty.jpg":
        # "data:image/jpeg;base64," decodes to zero bytes: an empty file, not a schema error.
        expect = sample.expect
    _check_answer(response, expect, sample, untouched)


@pytest.mark.parametrize("sample", IMAGES, ids=_ids(IMAGES))
def test_each_upload_gets_a_readable_answer_from_the_studio_form(signed_in, style, untouched, sample):
    response = signed_in.post("/", {"image": _upload(sample), "preset": STYLE_SLUG, "prompt": "x"})

    if sample.expect == ACCEPTED:
        assert response.status_code == 302, response.content[:300]
        generation = Generation.objects.get()
        assert response["Location"] == f"/g/{generation.pk}/"
        _check_stored_photo(sample, generation)
        return
    # Zero bytes never reach our decoder: Django's FileField refuses an empty file first.
    expected_status = 422 if sample.name == "empty.jpg" else sample.expect[0]
    assert response.status_code == expected_status, response.content[:300]
    page = response.content.decode()
    assert 'class="field-error"' in page or "errorlist" in page or 'role="alert"' in page, "the error is shown"
    untouched()


def test_a_client_file_name_cannot_choose_where_the_photo_is_stored(api_client, style, funded):
    evil = SimpleUploadedFile("../../../../etc/evil\x00.jpg", make_jpeg(64, 64), content_type="image/jpeg")

    response = api_client.post(URL, {"image": evil, "preset": STYLE_SLUG})

    assert response.status_code == 202, response.content
    (stored,) = stored_files()
    assert "evil" not in str(stored) and ".." not in Generation.objects.get().source_image.name


def test_a_file_sent_under_another_field_name_is_a_clear_invalid_input(api_client, style, untouched):
    response = api_client.post(URL, {"photo": SimpleUploadedFile("a.jpg", make_jpeg(64, 64)), "preset": STYLE_SLUG})

    body = assert_error(response, 422, "invalid_input")
    assert body["detail"] == {"field": "image"}
    untouched()


def test_two_image_files_store_only_the_one_named_image(api_client, style, funded):
    response = api_client.post(
        URL,
        {
            "image": SimpleUploadedFile("a.jpg", make_jpeg(64, 64), content_type="image/jpeg"),
            "other": SimpleUploadedFile("b.jpg", make_jpeg(80, 80), content_type="image/jpeg"),
            "preset": STYLE_SLUG,
        },
    )

    assert response.status_code == 202, response.content
    assert len(stored_files()) == 1


# --- Prompts -------------------------------------------------------------------------------


@pytest.mark.parametrize("sample", PROMPTS, ids=[sample.name for sample in PROMPTS])
def test_each_prompt_gets_its_documented_answer_from_the_api(api_client, style, untouched, sample):
    body = {"image_base64": base64.b64encode(make_jpeg(64, 64)).decode(), "preset": STYLE_SLUG, "prompt": sample.prompt}

    response = api_client.post(URL, data=json.dumps(body), content_type="application/json")

    if sample.expect == ACCEPTED:
        assert response.status_code == 202, response.content[:300]
        answer = response.json()
        # Sent as-is: no rewriting, escaping or trimming of the inside of the text.
        assert answer["prompt"] == sample.prompt.strip()
        assert answer["debug_info"]["original_prompt"] == sample.prompt.strip()
        assert answer["debug_info"]["prompt_sent"] == f"an oil painting, {sample.prompt.strip()}"
        assert Generation.objects.get().prompt == sample.prompt.strip()
    else:
        status, code = sample.expect
        body = assert_error(response, status, code)
        assert body["detail"]["field"] == "prompt"
        untouched()


@pytest.mark.parametrize("sample", PROMPTS, ids=[sample.name for sample in PROMPTS])
def test_each_prompt_gets_its_documented_answer_from_the_studio_form(signed_in, style, untouched, sample):
    photo = SimpleUploadedFile("me.jpg", make_jpeg(64, 64), content_type="image/jpeg")

    response = signed_in.post("/", {"image": photo, "preset": STYLE_SLUG, "prompt": sample.prompt})

    if sample.expect == ACCEPTED:
        assert response.status_code == 302, response.content[:300]
        assert Generation.objects.get().prompt == sample.prompt.strip()
    else:
        assert response.status_code == 422, response.content[:300]
        assert b'id="prompt-error"' in response.content
        untouched()


# --- Bodies --------------------------------------------------------------------------------


@pytest.mark.parametrize("body", [body for _, body in MALFORMED_JSON_BODIES], ids=[n for n, _ in MALFORMED_JSON_BODIES])
def test_malformed_json_is_invalid_input(api_client, style, untouched, body):
    response = api_client.post(URL, data=body, content_type="application/json")

    assert_error(response, 422, "invalid_input")
    untouched()


@pytest.mark.parametrize("value", [value for _, value in MALFORMED_BASE64], ids=[n for n, _ in MALFORMED_BASE64])
def test_malformed_base64_is_refused_at_no_cost(api_client, style, untouched, value):
    body = {"image_base64": value, "preset": STYLE_SLUG}

    response = api_client.post(URL, data=json.dumps(body), content_type="application/json")

    # Base64 that decodes to something other than an image is an unreadable image; base64
    # that does not decode is invalid input.
    expected = (415, "unsupported_image") if value == "aGVsbG8gd29ybGQ=" else (422, "invalid_input")
    assert_error(response, *expected)
    untouched()


@pytest.mark.parametrize(
    "content_type",
    ["text/plain", "application/x-www-form-urlencoded", "application/xml", "multipart/mixed; boundary=x"],
)
def test_other_content_types_are_invalid_input(api_client, style, untouched, content_type):
    response = api_client.post(URL, data=b"preset=x&image=y", content_type=content_type)

    assert_error(response, 422, "invalid_input")
    untouched()


def test_a_multipart_body_that_lies_about_its_boundary_is_invalid_input(api_client, style, untouched):
    response = api_client.generic(
        "POST",
        URL,
        data=b"--not-the-boundary\r\nContent-Disposition: form-data; name=preset\r\n\r\nx\r\n--not-the-boundary--\r\n",
        content_type="multipart/form-data; boundary=something-else",
    )

    assert_error(response, 422, "invalid_input")
    untouched()


@pytest.mark.parametrize(
    "fields",
    [
        {"preset": "no-such-style"},
        {"preset": "../../admin"},
        {"preset": "x" * 65},
        {"preset": ""},
        {"preset": STYLE_SLUG, "is_public": "maybe"},
        {"preset": ["a", "b"]},
    ],
    ids=["unknown", "traversal", "too-long", "empty", "bad-boolean", "list"],
)
def test_bad_fields_are_invalid_input(api_client, style, untouched, fields):
    body = {"image_base64": base64.b64encode(make_jpeg(64, 64)).decode(), **fields}

    response = api_client.post(URL, data=json.dumps(body), content_type="application/json")

    assert_error(response, 422, "invalid_input")
    untouched()


def test_an_inactive_style_is_refused_like_an_unknown_one(api_client, style, untouched):
    style.is_active = False
    style.save()
    before_body = {"image_base64": base64.b64encode(make_jpeg(64, 64)).decode(), "preset": STYLE_SLUG}

    response = api_client.post(URL, data=json.dumps(before_body), content_type="application/json")

    assert_error(response, 422, "invalid_input")
    untouched()


# --- The one-call studio shares the same front door ----------------------------------------


@pytest.fixture
def studio_style(db):
    from presets.tests.factories import PresetFactory

    # The seeded studio preset (get-or-create: a flushed test database may have lost it).
    return PresetFactory(slug="image_to_image", kind="image_to_image", prompt="{prompt}", requires_prompt=True)


STUDIO_CASES = [sample for sample in IMAGES if sample.name in ("empty.jpg", "drawing.svg", "bomb.png", "half.jpg")]


@pytest.mark.parametrize("sample", STUDIO_CASES, ids=_ids(STUDIO_CASES))
def test_the_one_call_studio_refuses_hostile_uploads_at_no_cost(api_client, studio_style, untouched, sample):
    response = api_client.post("/api/generate-image", {"image": _upload(sample), "prompt": "a cat"})

    assert_error(response, *sample.expect)
    untouched()


@pytest.mark.parametrize("prompt", ["a\x00b", "x" * 10_000, ""], ids=["nul", "ten-thousand", "empty"])
def test_the_one_call_studio_refuses_hostile_prompts_at_no_cost(api_client, studio_style, untouched, prompt):
    body = {"image_base64": base64.b64encode(make_jpeg(64, 64)).decode(), "prompt": prompt}

    response = api_client.post("/api/generate-image", data=json.dumps(body), content_type="application/json")

    body = assert_error(response, 422, "invalid_input")
    assert "prompt" in json.dumps(body["detail"]), "refused for the prompt, not for something else"
    untouched()


def test_thousands_of_form_fields_are_invalid_input_not_a_500(api_client, style, untouched):
    fields = {f"field{n}": "x" for n in range(1500)}
    fields.update({"preset": STYLE_SLUG, "image": SimpleUploadedFile("a.jpg", make_jpeg(32, 32))})

    response = api_client.post(URL, fields)

    assert_error(response, 422, "invalid_input")
    untouched()


def test_multipart_without_a_boundary_is_invalid_input(api_client, style, untouched):
    response = api_client.generic("POST", URL, data=b"garbage", content_type="multipart/form-data")

    assert_error(response, 422, "invalid_input")
    untouched()


@pytest.mark.parametrize(
    "kept",
    [
        "javascript:alert(1)",
        "data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==",
        "data:image/svg+xml;base64," + base64.b64encode(b"<svg xmlns='http://www.w3.org/2000/svg'/>").decode(),
    ],
    ids=["javascript", "html-data-uri", "svg-data-uri"],
)
def test_a_forged_kept_photo_is_refused_and_never_echoed_as_a_live_url(signed_in, style, untouched, kept):
    """`kept_image` carries an already-checked photo between form posts; a forged one is
    checked again, and a page that comes back never puts it where a browser would run it."""
    for data in ({"kept_image": kept, "preset": STYLE_SLUG}, {"kept_image": kept, "preset": ""}):
        response = signed_in.post("/", data)

        assert 400 <= response.status_code < 500, response.status_code
        page = response.content.decode()
        assert "<script>alert(1)" not in page
        assert f'src="{kept}"' not in page, "an unchecked value became an image source"
    untouched()


def test_a_forged_kept_photo_cannot_break_out_of_its_attribute(signed_in, style, untouched):
    response = signed_in.post("/", {"kept_image": '"><script>alert(1)</script>', "preset": ""})

    assert response.status_code == 422
    assert "<script>alert(1)" not in response.content.decode()
    untouched()
