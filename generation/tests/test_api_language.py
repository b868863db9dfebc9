"""CONTRACT: "API messages follow the request's Accept-Language (English, Bahasa Indonesia);
codes never change with the language". That includes a Generation's own messages: why it
ended (`error.message`) and its progress lines (`logs[].message`), which the services
write in English."""

from __future__ import annotations

import pytest

from generation.models import Generation
from generation.registry import FAST_SDXL_I2I
from generation.services.stop import all_failed_message
from generation.tests.pipeline_helpers import run_worker, start_generation
from presets.tests.factories import PresetFactory

pytestmark = pytest.mark.django_db


def indonesian(api_client, url: str) -> dict:
    return api_client.get(url, HTTP_ACCEPT_LANGUAGE="id").json()


def test_a_canceled_generation_answers_its_error_and_logs_in_the_request_language(api_client, user):
    generation = start_generation(user, PresetFactory())
    api_client.post(f"/api/generations/{generation.pk}/cancel")
    url = f"/api/generations/{generation.pk}"

    english = api_client.get(url, HTTP_ACCEPT_LANGUAGE="en").json()
    translated = indonesian(api_client, url)

    assert english["error"] == {"code": "canceled", "message": "Canceled"}
    assert translated["error"] == {"code": "canceled", "message": "Dibatalkan"}
    assert [line["message"] for line in english["logs"]][-1] == "Canceled; your credits were refunded"
    assert [line["message"] for line in translated["logs"]][-1] == "Dibatalkan; kreditmu sudah dikembalikan"
    assert translated["logs"][0]["message"] == "Dalam antrean"
    # The list and the cancel answer are the same Generation.
    listed = api_client.get("/api/generations", HTTP_ACCEPT_LANGUAGE="id").json()["items"][0]
    assert listed["error"] == translated["error"]


def test_content_blocked_keeps_its_code_and_translates_its_message(api_client, user, fake_fal):
    fake_fal.flag_images(FAST_SDXL_I2I, [True])
    generation = start_generation(user, PresetFactory(model_chain=[FAST_SDXL_I2I]))
    run_worker(generation)
    url = f"/api/generations/{generation.pk}"

    english = api_client.get(url).json()["error"]
    translated = indonesian(api_client, url)["error"]

    assert english["code"] == translated["code"] == "content_blocked"
    assert english["message"].startswith("The safety filter withheld every image")
    assert translated["message"].startswith("Filter keamanan menahan semua gambar yang dibuat Fast SDXL")
    assert "2 kreditmu sudah kembali" in translated["message"]
    assert indonesian(api_client, url)["logs"][-1]["message"] == translated["message"]


def test_every_model_failing_translates_the_sentence_and_keeps_the_models_own_words(api_client, user, fake_fal):
    fake_fal.fail_submit(FAST_SDXL_I2I, status=500)
    generation = start_generation(user, PresetFactory(model_chain=[FAST_SDXL_I2I]))
    run_worker(generation)
    assert generation.error_code == "all_models_failed"
    stored = Generation.objects.get(pk=generation.pk).error_message
    assert stored == all_failed_message(generation) and " (" in stored

    translated = indonesian(api_client, f"/api/generations/{generation.pk}")["error"]

    assert translated["code"] == "all_models_failed"
    assert translated["message"].startswith("Semua model untuk gaya ini gagal, jadi tidak ada yang dibuat dan 2 kredit")
    assert translated["message"].endswith(stored[stored.index(" (") :])
