"""The studio, status card, history, feed and share pages through Django's test client."""

from __future__ import annotations

import re

import pytest
from django.conf import settings
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from credits import ledger
from credits.models import CreditEntry
from generation import first_page
from generation.models import Generation, Media
from generation.tests.factories import GenerationFactory, MediaFactory
from generation.views import FEED_PAGE_SIZE
from presets.tests.factories import PresetFactory
from tests.images import make_jpeg

pytestmark = pytest.mark.django_db


@pytest.fixture
def signed_in(client, user):
    client.force_login(user)
    return client


@pytest.fixture
def preset(db):
    return PresetFactory(slug="view-test-style", name="Test Watercolour", requires_prompt=False)


@pytest.fixture
def prompt_preset(db):
    return PresetFactory(slug="view-test-prompted", name="Prompted", requires_prompt=True, prompt="{prompt}")


def upload(name="me.jpg"):
    return SimpleUploadedFile(name, make_jpeg(320, 240), content_type="image/jpeg")


def drain(user):
    """Spend the user's whole balance through the ledger, the way a real account runs dry."""
    ledger.ensure_daily_allowance(user=user)
    from credits.selectors import balance_of

    balance = balance_of(user=user)
    if balance:
        ledger.grant(user=user, amount=-balance, reason=CreditEntry.Reason.ADJUST, note="test: empty the wallet")


# --- Studio ------------------------------------------------------------------------------


def test_studio_shows_a_sign_in_invitation_and_the_styles_to_visitors(client, preset):
    response = client.get("/")
    assert response.status_code == 200
    body = response.content.decode()
    assert "Sign in to create" in body
    assert "Test Watercolour" in body
    assert 'type="file"' not in body


def test_studio_shows_the_form_with_radio_presets_cost_and_balance(signed_in, preset, prompt_preset):
    response = signed_in.get("/")
    body = response.content.decode()
    assert response.status_code == 200
    # Presets are real radio inputs (keyboard reachable), grouped and labelled.
    assert re.search(r'<input class="visually-hidden" type="radio" name="preset" value="view-test-style"', body)
    assert 'data-requires-prompt="true"' in body
    assert f"{settings.GENERATION_COST} credits" in body
    assert f'data-testid="studio-balance">{settings.DAILY_CREDITS}<' in body
    # No maxlength: a long paste must arrive whole and be refused with a message, not cut.
    assert "maxlength" not in body.split('id="id_prompt"')[1].split(">")[0]
    assert f'data-counter-max="{settings.MAX_PROMPT_CHARS}"' in body
    assert '<label for="id_prompt">' in body


def test_studio_preselects_the_preset_from_the_query_string(signed_in, preset):
    body = signed_in.get("/?preset=view-test-style").content.decode()
    assert re.search(r'value="view-test-style" data-name="[^"]*" data-requires-prompt="false" checked', body)


def test_a_link_with_a_style_names_it_at_the_top_of_the_form_with_a_way_to_pick_another(signed_in, preset):
    # A share page's "Make your own" lands here; the chosen card itself can be far below.
    body = signed_in.get("/?preset=view-test-style").content.decode()
    notice = body.split('data-testid="style-from-link"')[1].split("</div>")[0]
    assert "Style chosen: <strong>Test Watercolour</strong>" in notice
    assert re.search(r'<a class="button small" href="#styles"[^>]*>Pick another style</a>', notice)
    # Above the first step, in the form, and the link's target is the style fieldset.
    assert body.index('data-testid="style-from-link"') < body.index('id="photo-heading"')
    assert '<fieldset class="studio-styles card" id="styles"' in body
    # The sticky bar names the style too (in words, not its slug), without JavaScript.
    assert re.search(r"data-chosen-style[^>]*>Test Watercolour</p>", body)


def test_the_chosen_style_notice_speaks_the_visitors_language(signed_in, preset):
    preset.name_id = "Cat Air Uji"
    preset.save(update_fields=["name_id"])
    body = signed_in.get("/?preset=view-test-style", HTTP_ACCEPT_LANGUAGE="id").content.decode()
    notice = body.split('data-testid="style-from-link"')[1].split("</div>")[0]
    assert "Gaya pilihanmu: <strong>Cat Air Uji</strong>" in notice
    assert ">Pilih gaya lain</a>" in notice


@pytest.mark.parametrize("query", ["", "?preset=no-such-style", "?preset="])
def test_the_studio_without_a_style_link_has_no_chosen_style_notice(signed_in, preset, query):
    body = signed_in.get(f"/{query}").content.decode()
    assert 'data-testid="style-from-link"' not in body
    assert "No style picked yet" in body


def test_a_refused_submit_shows_the_summary_not_the_chosen_style_notice(signed_in, preset):
    # The notice and the error summary share the top of the form: never both at once.
    response = signed_in.post("/?preset=view-test-style", {"preset": preset.slug, "prompt": ""})
    body = response.content.decode()
    assert response.status_code == 422
    assert 'data-testid="error-summary"' in body
    assert 'data-testid="style-from-link"' not in body
    assert re.search(r"data-chosen-style[^>]*>Test Watercolour</p>", body)


def test_submitting_the_studio_starts_a_generation_and_shows_its_card(signed_in, user, preset):
    response = signed_in.post("/", {"image": upload(), "preset": preset.slug, "prompt": "", "is_public": "on"})
    generation = Generation.objects.get(user=user)
    assert response.status_code == 302
    assert response["Location"] == f"/g/{generation.pk}/"
    assert generation.is_public is True
    assert generation.status == Generation.Status.QUEUED

    page = signed_in.get(response["Location"])
    body = page.content.decode()
    assert page.status_code == 200
    assert 'data-testid="status-card"' in body
    assert f'hx-get="/g/{generation.pk}/card/"' in body
    assert 'hx-trigger="every 1s"' in body
    assert "Cancel and refund" in body
    # The reservation already shows in the header.
    assert f'data-testid="balance">{settings.DAILY_CREDITS - settings.GENERATION_COST}<' in body


def test_a_missing_prompt_keeps_the_photo_style_and_choices(signed_in, user, prompt_preset):
    response = signed_in.post("/", {"image": upload(), "preset": prompt_preset.slug, "prompt": "  ", "is_public": "on"})
    body = response.content.decode()
    assert response.status_code == 422
    assert "This style needs a prompt" in body
    assert re.search(r'value="view-test-prompted" data-name="[^"]*" data-requires-prompt="true" checked', body)
    assert re.search(r'name="is_public" value="on" checked', body)
    # The validated photo comes back so the person does not have to choose it again...
    kept = re.search(r'name="kept_image" value="(data:image/jpeg;base64,[^"]+)"', body).group(1)
    assert not Generation.objects.exists()

    # ...and the next submit can use it without a file.
    again = signed_in.post("/", {"kept_image": kept, "preset": prompt_preset.slug, "prompt": "a fox"})
    assert again.status_code == 302
    assert Generation.objects.get(user=user).prompt == "a fox"


def test_no_photo_is_a_readable_error(signed_in, preset):
    response = signed_in.post("/", {"preset": preset.slug})
    assert response.status_code == 422
    assert "Choose a photo to transform." in response.content.decode()


def test_a_file_that_is_not_an_image_is_a_readable_error(signed_in, preset):
    bogus = SimpleUploadedFile("notes.jpg", b"these are not pixels", content_type="image/jpeg")
    response = signed_in.post("/", {"image": bogus, "preset": preset.slug})
    assert response.status_code == 415
    assert "isn&#x27;t an image we can read" in response.content.decode()
    assert not Generation.objects.exists()


@pytest.mark.parametrize(
    ("refused", "said"),
    [
        ("not_image", "That file isn&#x27;t an image we can read."),
        ("too_large", "That image is larger than"),
        ("too_many_pixels:9000x8000", "That image is 9000×8000 pixels; the limit is"),
        ("something-else", "Choose a photo to transform."),
        ("too_many_pixels:<b>x1", "Choose a photo to transform."),
    ],
)
def test_a_photo_the_page_refused_before_upload_is_named_in_the_error(signed_in, preset, refused, said):
    """stefna.js refuses a bad file before upload and says which refusal it was; the
    server's summary then gives its own words for that reason, not "choose a photo"."""
    response = signed_in.post("/", {"preset": preset.slug, "image_refused": refused})
    assert response.status_code == 422
    body = response.content.decode()
    summary = body.split('data-testid="error-summary"', 1)[1].split("</div>", 1)[0]
    assert said in summary
    assert "<b>" not in body


def test_an_unknown_style_is_a_readable_error(signed_in):
    response = signed_in.post("/", {"image": upload(), "preset": "no-such-style"})
    assert response.status_code == 422
    assert "There is no active style called" in response.content.decode()


def test_insufficient_credits_is_explained_before_upload(signed_in, user, preset):
    drain(user)
    response = signed_in.get("/")
    body = response.content.decode()
    assert 'data-testid="insufficient-credits"' in body
    assert "You're out of credits for today" in body
    assert f'comes back at <strong><time datetime="{ledger.next_reset():%Y-%m-%dT%H:%M:%S}' in body
    assert 'type="file"' not in body
    # One message, with its way out.
    assert body.count("out of credits") == 1
    assert 'data-testid="buy-credits"' in body


def test_insufficient_credits_on_submit_is_explained_and_charges_nothing(signed_in, user, preset):
    signed_in.get("/")  # the form was shown while the balance was fine...
    drain(user)  # ...then the credits went elsewhere
    response = signed_in.post("/", {"image": upload(), "preset": preset.slug})
    assert response.status_code == 402
    body = response.content.decode()
    assert "This costs 2 credits and you have 0" in body
    assert "refill at" in body
    assert not Generation.objects.exists()


def test_posting_to_the_studio_needs_a_csrf_token(user, preset):
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    response = client.post("/", {"image": upload(), "preset": preset.slug})
    assert response.status_code == 403
    assert not Generation.objects.exists()


def test_visitors_posting_to_the_studio_are_sent_to_sign_in(client, preset):
    response = client.post("/", {"image": upload(), "preset": preset.slug})
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/sign-in/")


# --- Status card ---------------------------------------------------------------------------


def test_the_card_of_an_active_generation_polls_and_shows_progress(signed_in, user):
    generation = GenerationFactory(
        user=user,
        status=Generation.Status.RUNNING,
        completed_at=None,
        queue_position=3,
        current_model="fal-ai/ghiblify",
        logs=[{"message": "Submitted to Ghiblify", "level": "info", "timestamp": "2026-01-01T00:00:00+00:00"}],
    )
    response = signed_in.get(f"/g/{generation.pk}/card/", HTTP_HX_REQUEST="true")
    body = response.content.decode()
    assert 'hx-trigger="every 1s"' in body
    assert 'data-testid="queue-position">3 ahead of you<' in body  # fal's queue counts from 0
    assert "Ghiblify" in body
    assert "Submitted to Ghiblify" in body
    assert 'id="header-balance"' not in body  # no out-of-band swap while running


@pytest.mark.parametrize(
    ("status", "position", "shown"),
    [
        # Waiting for a free slot of Stefna's own (queued): 1 is next.
        (Generation.Status.QUEUED, 1, "next up"),
        (Generation.Status.QUEUED, 3, "2 ahead of you"),
        # In fal's queue (running): 0 is next. Both read the same way.
        (Generation.Status.RUNNING, 0, "next up"),
        (Generation.Status.RUNNING, 1, "1 ahead of you"),
    ],
)
def test_the_queue_position_says_how_many_are_ahead_whichever_queue_counts_it(signed_in, user, status, position, shown):
    """Both showed "#1": next in Stefna's queue, but second in fal's."""
    generation = GenerationFactory(user=user, status=status, completed_at=None, queue_position=position)
    body = signed_in.get(f"/g/{generation.pk}/card/", HTTP_HX_REQUEST="true").content.decode()
    assert f'data-testid="queue-position">{shown}<' in body


def test_a_running_card_shows_the_elapsed_time_once(signed_in, user):
    running = GenerationFactory(user=user, status=Generation.Status.RUNNING, completed_at=None)
    body = signed_in.get(f"/g/{running.pk}/").content.decode()
    assert body.count("<dt>Elapsed</dt>") == 1
    # Once it is over, the folded details say how long it took.
    done = GenerationFactory(user=user, status=Generation.Status.SUCCEEDED)
    body = signed_in.get(f"/g/{done.pk}/").content.decode()
    assert body.count("<dt>Elapsed</dt>") == 1


@pytest.mark.parametrize("language", ["en", "id"])
def test_the_eyebrow_is_dropped_when_it_would_repeat_the_title(signed_in, user, language):
    """A custom prompt's kind and style share a name: "CUSTOM PROMPT / Custom prompt"."""
    custom = PresetFactory(
        slug="custom_prompt", name="Custom prompt", name_id="Prompt sendiri", kind="custom_prompt", requires_prompt=True
    )
    ghibli = PresetFactory(slug="view-test-ghibli", name="Ghibli tears", kind="ghibli_reaction")
    for preset, eyebrow in ((custom, False), (ghibli, True)):
        generation = GenerationFactory(user=user, preset=preset)
        media = MediaFactory(generation=generation, is_public=True)
        for path in (f"/g/{generation.pk}/", f"/i/{media.share_id}"):
            body = signed_in.get(path, HTTP_ACCEPT_LANGUAGE=language).content.decode()
            assert ('class="eyebrow"' in body) is eyebrow, (preset.slug, path, language)


def test_a_result_offers_the_same_style_with_a_new_photo_only_to_styles_that_take_one(signed_in, user):
    from generation.registry import GHIBLIFY, REALISTIC_VISION

    painted = PresetFactory(
        slug="view-test-scene", model_chain=[REALISTIC_VISION], requires_prompt=True, prompt="{prompt}"
    )
    photo_style = PresetFactory(slug="view-test-photo", model_chain=[GHIBLIFY])
    from_words = GenerationFactory(user=user, preset=painted)
    from_photo = GenerationFactory(user=user, preset=photo_style)

    body = signed_in.get(f"/g/{from_words.pk}/").content.decode()
    assert "Same style, new photo" not in body
    assert f'href="/?preset={painted.slug}" data-testid="same-style">Use this style again<' in body
    body = signed_in.get(f"/g/{from_photo.pk}/").content.decode()
    assert f'href="/?preset={photo_style.slug}" data-testid="same-style">Same style, new photo<' in body


def test_a_final_card_stops_polling_and_updates_the_header_balance(signed_in, user):
    generation = GenerationFactory(user=user, status=Generation.Status.SUCCEEDED)
    MediaFactory(generation=generation, is_public=False)
    response = signed_in.get(f"/g/{generation.pk}/card/", HTTP_HX_REQUEST="true")
    body = response.content.decode()
    assert "hx-trigger" not in body.split('id="header-balance"')[0].split("<article", 1)[1].split(">", 1)[0]
    assert 'id="header-balance" ' in body and 'hx-swap-oob="true"' in body
    assert "Download" in body and "Share" in body and "Make public" in body


def test_a_failed_card_explains_and_confirms_the_refund(signed_in, user, preset):
    from generation import services

    generation, _ = services.generation_request(user=user, preset_slug=preset.slug, image=_validated())
    Generation.objects.filter(pk=generation.pk).update(
        status=Generation.Status.FAILED, error_code="all_models_failed", error_message="fal answered <b>500</b>"
    )
    ledger.refund(generation=generation)
    body = signed_in.get(f"/g/{generation.pk}/").content.decode()
    assert "We couldn't make this image." in body
    assert "None of the image models could finish this one." in body
    assert "Your 2 credits were refunded." in body
    assert "fal answered &lt;b&gt;500&lt;/b&gt;" in body


def test_someone_elses_generation_is_not_found(signed_in, other_user):
    generation = GenerationFactory(user=other_user)
    assert signed_in.get(f"/g/{generation.pk}/").status_code == 404
    assert signed_in.get(f"/g/{generation.pk}/card/").status_code == 404
    assert signed_in.post(f"/g/{generation.pk}/delete/").status_code == 404
    assert Generation.objects.get(pk=generation.pk).deleted_at is None


def test_the_404_page_is_styled(client, db):
    response = client.get("/g/00000000-0000-0000-0000-000000000000/")
    assert response.status_code == 302  # visitors sign in first
    response = client.get("/no/such/page/")
    assert response.status_code == 404
    assert "We couldn't find that page" in response.content.decode()


# --- History -------------------------------------------------------------------------------


def test_history_lists_own_generations_with_escaped_prompts(signed_in, user, other_user):
    GenerationFactory(user=user, prompt="<script>alert(1)</script>", preset_name="Mine")
    GenerationFactory(user=other_user, prompt="not yours", preset_name="Theirs")
    body = signed_in.get("/history/").content.decode()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in body
    assert "<script>alert(1)</script>" not in body
    assert "Mine" in body
    assert "not yours" not in body


def test_history_filters_by_kind_and_status(signed_in, user):
    ghibli = PresetFactory(slug="filter-ghibli", kind="ghibli_reaction")
    glitch = PresetFactory(slug="filter-glitch", kind="neo_glitch")
    GenerationFactory(user=user, preset=ghibli, prompt="ghibli ok")
    GenerationFactory(user=user, preset=ghibli, prompt="ghibli failed", status=Generation.Status.FAILED)
    GenerationFactory(user=user, preset=glitch, prompt="glitch ok")

    body = signed_in.get("/history/?kind=ghibli_reaction").content.decode()
    assert "ghibli ok" in body and "ghibli failed" in body and "glitch ok" not in body

    body = signed_in.get("/history/?kind=ghibli_reaction&status=failed").content.decode()
    assert "ghibli failed" in body and "ghibli ok" not in body

    # An unknown filter value is ignored, not an error.
    response = signed_in.get("/history/?status=bogus")
    assert response.status_code == 200
    assert "glitch ok" in response.content.decode()


@pytest.mark.parametrize(
    ("query", "english", "indonesian"),
    [
        (
            "kind=emotion_mask",
            "You have no “Emotion mask” generations.",
            "Kamu belum punya kreasi berjenis “Topeng emosi”.",
        ),
        (
            "status=failed",
            "You have no generations with the status “Failed”.",
            "Kamu tidak punya kreasi berstatus “Gagal”.",
        ),
        (
            "kind=emotion_mask&status=failed",
            "You have no “Emotion mask” generations with the status “Failed”.",
            "Kamu tidak punya kreasi berjenis “Topeng emosi” yang berstatus “Gagal”.",
        ),
    ],
)
def test_an_empty_filtered_history_says_so_in_a_natural_sentence(signed_in, user, query, english, indonesian):
    GenerationFactory(user=user, preset=PresetFactory(slug="filter-ghibli", kind="ghibli_reaction"))
    for language, sentence in (("en", english), ("id", indonesian)):
        body = signed_in.get(f"/history/?{query}", HTTP_ACCEPT_LANGUAGE=language).content.decode()
        empty = body.split('data-testid="empty-state"', 1)[1].split("</div>", 1)[0]
        assert sentence in empty, empty


def test_history_pages_with_a_revealed_sentinel(signed_in, user):
    for number in range(14):
        GenerationFactory(user=user, prompt=f"prompt number {number}")
    body = signed_in.get("/history/").content.decode()
    assert body.count('data-testid="history-item"') == 12
    next_url = re.search(r'hx-get="(\?cursor=[^"]+)" hx-trigger="revealed"', body).group(1)
    more = signed_in.get("/history/" + next_url.replace("&amp;", "&"), HTTP_HX_REQUEST="true").content.decode()
    assert more.count('data-testid="history-item"') == 2
    assert "<html" not in more
    assert 'hx-trigger="revealed"' not in more


def test_removing_a_generation_hides_it_from_history(signed_in, user):
    generation = GenerationFactory(user=user, prompt="remove me")
    response = signed_in.post(f"/g/{generation.pk}/delete/", {"next": "/history/"})
    assert response.status_code == 302
    assert "remove me" not in signed_in.get("/history/").content.decode()


def test_a_running_history_card_fetches_itself_until_its_generation_ends(signed_in, user, other_user):
    running = GenerationFactory(user=user, status=Generation.Status.RUNNING, prompt="still painting")
    card_url = f"/g/{running.pk}/history-item/"
    body = signed_in.get("/history/").content.decode()
    assert f'hx-get="{card_url}" hx-trigger="every 3s"' in body

    fragment = signed_in.get(card_url, HTTP_HX_REQUEST="true").content.decode()
    assert fragment.count('data-testid="history-item"') == 1 and "still painting" in fragment
    assert "<html" not in fragment and 'hx-trigger="every 3s"' in fragment

    Generation.objects.filter(pk=running.pk).update(status=Generation.Status.SUCCEEDED)
    MediaFactory(generation=running)
    fragment = signed_in.get(card_url, HTTP_HX_REQUEST="true").content.decode()
    assert 'data-testid="media-tile"' in fragment and 'data-status="succeeded"' in fragment
    assert "hx-trigger" not in fragment, "an ended card stops asking"

    theirs = GenerationFactory(user=other_user, status=Generation.Status.RUNNING)
    assert signed_in.get(f"/g/{theirs.pk}/history-item/").status_code == 404
    signed_in.post(f"/g/{running.pk}/delete/")
    assert signed_in.get(card_url).status_code == 404


def test_a_running_history_cards_poll_that_changed_nothing_is_a_304_without_loading_it(signed_in, user):
    """The card asks every 3 s: while nothing changed it costs one small query, as the
    status card's fallback polling does (generation/etags.py)."""
    running = GenerationFactory(user=user, status=Generation.Status.RUNNING, prompt="still painting")
    card_url = f"/g/{running.pk}/history-item/"
    first = signed_in.get(card_url, HTTP_HX_REQUEST="true")
    etag = first["ETag"]
    assert first["Cache-Control"] == "private, no-cache"
    assert f'data-version="{Generation.objects.get(pk=running.pk).version}"' in first.content.decode()

    with CaptureQueriesContext(connection) as queries:
        again = signed_in.get(card_url, HTTP_HX_REQUEST="true", HTTP_IF_NONE_MATCH=etag)

    assert again.status_code == 304 and again["ETag"] == etag and again.content == b""
    generation_reads = [query["sql"] for query in queries if '"generation_generation"' in query["sql"]]
    assert len(generation_reads) == 1, generation_reads
    assert "generation_media" not in generation_reads[0] and '"prompt"' not in generation_reads[0]

    # A change moves the version: the card comes whole, with a new tag.
    Generation.objects.filter(pk=running.pk).update(status=Generation.Status.SUCCEEDED)
    changed = signed_in.get(card_url, HTTP_HX_REQUEST="true", HTTP_IF_NONE_MATCH=etag)
    assert changed.status_code == 200 and changed["ETag"] != etag
    assert 'data-status="succeeded"' in changed.content.decode()
    # Deleted from the history (by another tab): the tag no longer matches, and it is gone.
    signed_in.post(f"/g/{running.pk}/delete/")
    assert signed_in.get(card_url, HTTP_IF_NONE_MATCH=changed["ETag"]).status_code == 404


def test_history_needs_sign_in(client, db):
    response = client.get("/history/")
    assert response.status_code == 302
    assert "/accounts/sign-in/" in response["Location"]


# --- Images: visibility, delete, share, feed -----------------------------------------------


def test_toggling_public_puts_an_image_in_the_feed(signed_in, user, client):
    media = MediaFactory(generation=GenerationFactory(user=user, preset_name="Feedable"), is_public=False)
    assert "Feedable" not in Client().get("/feed/").content.decode()

    response = signed_in.post(f"/i/{media.pk}/visibility/", {"is_public": "1"}, HTTP_HX_REQUEST="true")
    assert response.status_code == 200
    assert "Make private" in response.content.decode()
    media.refresh_from_db()
    assert media.is_public is True
    # The first page is kept a moment per process (generation/first_page.py): once it passes.
    first_page.kept.clear()
    assert "Feedable" in Client().get("/feed/").content.decode()


def test_someone_elses_image_cannot_be_toggled_or_deleted(signed_in, other_user):
    media = MediaFactory(generation=GenerationFactory(user=other_user), is_public=False)
    assert signed_in.post(f"/i/{media.pk}/visibility/", {"is_public": "1"}).status_code == 404
    assert signed_in.post(f"/i/{media.pk}/delete/").status_code == 404
    assert signed_in.get(f"/i/{media.pk}/").status_code == 404  # private: not shared
    media.refresh_from_db()
    assert media.is_public is False


def test_deleting_an_image(signed_in, user):
    media = MediaFactory(generation=GenerationFactory(user=user))
    response = signed_in.post(f"/i/{media.pk}/delete/", HTTP_HX_REQUEST="true")
    assert response.status_code == 200
    assert not Media.objects.filter(pk=media.pk).exists()


@pytest.mark.parametrize(
    ("layout", "placeholder"),
    [("", ">Images deleted<"), ("result", ">The images of this generation were deleted.<")],
    ids=["history", "result-page"],
)
def test_deleting_the_last_image_in_place_leaves_the_placeholder_a_reload_shows(signed_in, user, layout, placeholder):
    generation = GenerationFactory(user=user)
    first, second = MediaFactory(generation=generation, index=0), MediaFactory(generation=generation, index=1)

    # Another image is left: the tile just goes.
    response = signed_in.post(f"/i/{first.pk}/delete/", {"layout": layout}, HTTP_HX_REQUEST="true")
    assert response.status_code == 200 and response.content == b""

    # The last one: the tile becomes what the page shows for a generation without images.
    response = signed_in.post(f"/i/{second.pk}/delete/", {"layout": layout}, HTTP_HX_REQUEST="true")
    assert placeholder in response.content.decode()
    reloaded = signed_in.get("/history/" if not layout else f"/g/{generation.pk}/").content.decode()
    assert placeholder in reloaded
    if not layout:
        assert f'href="/g/{generation.pk}/"' in response.content.decode()


def test_image_writes_need_a_csrf_token(user):
    media = MediaFactory(generation=GenerationFactory(user=user), is_public=False)
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    assert client.post(f"/i/{media.pk}/visibility/", {"is_public": "1"}).status_code == 403
    assert client.post(f"/i/{media.pk}/delete/").status_code == 403
    assert client.post(f"/g/{media.generation_id}/delete/").status_code == 403
    media.refresh_from_db()
    assert media.is_public is False


def test_the_share_page_has_open_graph_tags_with_absolute_urls(client, user):
    user.display_name = "Ada <b>L</b>"
    user.save()
    generation = GenerationFactory(user=user, preset_name="Ghibli Tears", prompt="<script>alert(1)</script>")
    media = MediaFactory(generation=generation, is_public=True, url="/media/generated/x.png")
    body = client.get(f"/i/{media.share_id}").content.decode()
    assert '<meta property="og:image" content="http://testserver/media/generated/x.png">' in body
    assert f'<meta property="og:url" content="http://testserver/i/{media.share_id}">' in body
    assert '<meta name="twitter:card" content="summary_large_image">' in body
    assert "Ada &lt;b&gt;L&lt;/b&gt;" in body
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in body
    assert "<script>alert(1)</script>" not in body


def test_the_owner_can_see_their_private_share_page(signed_in, user):
    media = MediaFactory(generation=GenerationFactory(user=user), is_public=False)
    body = signed_in.get(f"/i/{media.share_id}").content.decode()
    assert "Only you can see this page" in body


def test_the_feed_pages_newest_first_with_infinite_scroll(client, user):
    items = [MediaFactory(generation=GenerationFactory(user=user), is_public=True) for _ in range(26)]
    body = client.get("/feed/").content.decode()
    assert body.count('data-testid="feed-item"') == 24
    assert body.index(f"/i/{items[-1].share_id}") < body.index(f"/i/{items[-2].share_id}")
    next_url = re.search(r'hx-get="(\?cursor=[^"]+)" hx-trigger="revealed"', body).group(1)
    more = client.get("/feed/" + next_url, HTTP_HX_REQUEST="true").content.decode()
    assert more.count('data-testid="feed-item"') == 2
    assert f"/i/{items[0].share_id}" in more


def test_the_feed_page_reads_each_image_once_and_no_author_s_private_details(client, user, other_user):
    other_user.display_name = "Sari"
    other_user.save(update_fields=["display_name"])
    for owner in (user, other_user):
        for _ in range(6):
            MediaFactory(generation=GenerationFactory(user=owner, preset_name="Oil paint"), is_public=True)

    with CaptureQueriesContext(connection) as queries:
        body = client.get("/feed/").content.decode()

    assert body.count('data-testid="feed-item"') == 12
    assert "by Sari" in body and f"by {user.public_name}" in body and "Oil paint" in body
    # One query for the page, whatever its size: a field the template reads but the
    # selector leaves out would cost one more query per image.
    [page] = [query["sql"] for query in queries if "generation_media" in query["sql"]]
    assert len(queries) <= 3, [query["sql"][:80] for query in queries]
    for column in ("email", "password", "logs", "prompt_sent", "request_payload"):
        assert f'"{column}"' not in page, column


def test_only_the_feeds_first_page_is_for_search_engines_to_list(client, user):
    for _ in range(FEED_PAGE_SIZE + 1):
        MediaFactory(generation=GenerationFactory(user=user), is_public=True)
    first = client.get("/feed/").content.decode()
    assert 'name="robots"' not in first and 'name="description"' in first
    next_url = re.search(r'href="(\?cursor=[^"]+)"', first).group(1)

    later = client.get("/feed/" + next_url.replace("&amp;", "&")).content.decode()

    assert '<meta name="robots" content="noindex, follow">' in later


def test_a_broken_feed_cursor_starts_at_the_top(client, db):
    assert client.get("/feed/?cursor=not-a-cursor").status_code == 200


def test_pages_send_a_strict_csp_and_no_inline_script(signed_in, user, preset):
    for url in ["/", "/feed/", "/history/", "/accounts/"]:
        response = signed_in.get(url)
        assert response.status_code == 200, url
        assert "script-src 'self'" in response["Content-Security-Policy"]
        assert not re.search(r"<script(?![^>]*\bsrc=)", response.content.decode()), url
        assert " style=" not in response.content.decode(), url
        assert "hx-on" not in response.content.decode(), url


def _validated():
    from generation.images import validate_image

    return validate_image(make_jpeg(64, 64))


@pytest.mark.usefixtures("clear_of_rate_window_end")
def test_too_many_starts_are_a_readable_429_with_retry_after(signed_in, user, preset, settings):
    settings.RATE_LIMIT_GENERATIONS = (1, 60)
    assert signed_in.post("/", {"image": upload(), "preset": preset.slug}).status_code == 302
    response = signed_in.post("/", {"image": upload(), "preset": preset.slug})
    assert response.status_code == 429
    assert int(response["Retry-After"]) >= 1
    assert "Too many requests" in response.content.decode()
    assert Generation.objects.filter(user=user).count() == 1


def test_the_500_page_renders_on_its_own():
    from django.template.loader import render_to_string

    body = render_to_string("500.html")  # no request, no context processors
    assert "Something went wrong on our side" in body
    assert "/static/css/stefna.css" in body


def test_offline_preview_mode_is_announced_on_every_page(client, settings, db):
    settings.OFFLINE_MODE = True
    for url in ["/", "/feed/", "/accounts/sign-in/"]:
        assert "Offline preview mode" in client.get(url).content.decode(), url
    settings.OFFLINE_MODE = False
    assert "Offline preview mode" not in client.get("/").content.decode()
