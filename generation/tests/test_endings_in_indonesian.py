"""How a generation ended, on its page, for an owner who reads Bahasa Indonesia.

The pipeline writes a failure's summary in English (it is also the API's `error.message`
and a `logs` line, read by scripts); the page says it in the owner's language, with the
same figures, and says what happened rather than "every model failed" when the images
were made and then withheld.
"""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone, translation

from generation import services
from generation.models import Generation
from generation.registry import FAST_SDXL_I2I
from generation.services.finish import withheld_message
from generation.services.stop import result_lost_message
from generation.tests.factories import GenerationFactory
from generation.tests.pipeline_helpers import run_worker, start_generation
from presets.tests.factories import PresetFactory
from stefna.i18n_tags import log_message

pytestmark = pytest.mark.django_db


@pytest.fixture
def indonesian_owner(client, user):
    user.language = "id"
    user.save(update_fields=["language"])
    client.force_login(user)
    return user


def result_page(client, generation: Generation) -> str:
    return client.get(f"/g/{generation.pk}/", HTTP_ACCEPT_LANGUAGE="en").content.decode()


def test_a_result_the_safety_filter_withheld_is_explained_in_indonesian(client, indonesian_owner, fake_fal):
    fake_fal.flag_images(FAST_SDXL_I2I, [True])
    generation = run_worker(start_generation(indonesian_owner, PresetFactory(model_chain=[FAST_SDXL_I2I])))
    assert generation is not None and generation.error_code == "content_blocked"

    html = result_page(client, generation)

    assert "Filter keamanan menahan semua gambar yang dibuat untuk permintaan ini" in html  # the headline
    assert "Semua model yang kami coba gagal" not in html  # no model failed
    # The summary the pipeline wrote (in the details and the log), with its figure.
    assert "2 kreditmu sudah kembali" in html
    assert "The safety filter withheld" not in html


def test_every_model_failing_is_summed_up_in_indonesian(client, indonesian_owner, fake_fal):
    fake_fal.error_on_completion(FAST_SDXL_I2I, message="CUDA out of memory")
    generation = run_worker(start_generation(indonesian_owner, PresetFactory(model_chain=[FAST_SDXL_I2I])))
    assert generation is not None and generation.error_code == "all_models_failed"

    html = result_page(client, generation)

    assert "Semua model untuk gaya ini gagal, jadi tidak ada yang dibuat dan 2 kreditmu sudah dikembalikan." in html
    assert "Every model for this style failed" not in html
    assert "CUDA out of memory" in html  # fal's own words are shown as they came


def test_a_partly_withheld_result_logs_in_indonesian():
    with translation.override("id"):
        assert log_message(withheld_message(1, 2)) == "1 dari 2 gambar ditahan oleh filter keamanan"


def test_a_generation_stopped_for_taking_too_long_reads_in_indonesian(client, indonesian_owner, fake_fal, settings):
    settings.FAL_ATTEMPT_TIMEOUT_SECONDS = 60
    fake_fal.stick_in_queue(FAST_SDXL_I2I)
    generation = start_generation(indonesian_owner, PresetFactory(model_chain=[FAST_SDXL_I2I]))
    run_worker(rounds=1)
    long_ago = timezone.now() - dt.timedelta(hours=2)
    Generation.objects.filter(pk=generation.pk).update(created_at=long_ago, started_at=long_ago)
    services.generation_sweep()
    generation.refresh_from_db()
    assert generation.error_code == "timeout"

    html = result_page(client, generation)

    assert "Kreasi ini berjalan lebih dari" in html and "2 kreditmu sudah dikembalikan" in html
    assert "took longer than" not in html


def test_results_lost_at_fal_read_in_indonesian(client, indonesian_owner):
    lost = GenerationFactory(user=indonesian_owner, status=Generation.Status.FAILED, error_code="result_lost", cost=2)
    Generation.objects.filter(pk=lost.pk).update(error_message=result_lost_message(lost))

    html = result_page(client, lost)

    assert "Gambarnya sudah jadi, tapi terhapus sebelum sempat kami simpan." in html  # the headline
    assert "fal menghapusnya sebelum sempat kami simpan" in html  # the pipeline's summary, with its figure
    assert "2 kreditmu sudah dikembalikan" in html
    assert "fal deleted them" not in html


def test_a_staff_cancel_says_our_team_stopped_it_and_the_owners_own_says_canceled(client, indonesian_owner, fake_fal):
    """The owner did not stop it: "Canceled." alone would read as if they had."""
    fake_fal.stick_in_queue(FAST_SDXL_I2I)
    by_staff, by_owner = (start_generation(indonesian_owner, PresetFactory(model_chain=[FAST_SDXL_I2I])) for _ in "ab")
    services.generation_cancel(generation_id=by_staff.pk, user=None)
    services.generation_cancel(generation_id=by_owner.pk, user=indonesian_owner)

    staff_page, owner_page = result_page(client, by_staff), result_page(client, by_owner)

    assert "Dihentikan oleh tim kami." in staff_page and "Dibatalkan." not in staff_page
    assert "Dibatalkan." in owner_page and "Dihentikan oleh tim kami." not in owner_page
    assert "2 kreditmu sudah dikembalikan" in staff_page
