"""A generation keeps what its preset was; inactive or unknown presets cost nothing."""

from __future__ import annotations

import pytest

from credits import ledger
from credits.models import CreditEntry
from credits.reconcile import find_ledger_problems
from credits.selectors import balance_of
from generation.images import validate_image
from generation.models import Generation
from generation.registry import FAST_SDXL_I2I
from generation.services import generation_request
from presets.models import Preset
from presets.selectors import active_presets
from stefna.errors import InvalidInput
from tests.images import make_jpeg

pytestmark = pytest.mark.django_db


@pytest.fixture
def funded_user(user, settings):
    settings.DAILY_CREDITS = 0
    ledger.grant(user=user, amount=10)
    return user


@pytest.fixture
def image():  # type: ignore[no-untyped-def]
    return validate_image(make_jpeg(64, 48))


def test_editing_a_preset_after_a_generation_leaves_the_generation_as_it_was(funded_user, image):
    preset = Preset.objects.get(slug="ghibli_tears")
    original_prompt, original_chain, original_parameters = preset.prompt, list(preset.model_chain), preset.parameters
    generation, _ = generation_request(user=funded_user, preset_slug="ghibli_tears", image=image, prompt="at dusk")

    preset.prompt = "a completely different style, {prompt}"
    preset.model_chain = [FAST_SDXL_I2I]
    preset.parameters = {"strength": 0.3}
    preset.name = "Renamed"
    preset.full_clean()
    preset.save()

    generation = Generation.objects.get(pk=generation.pk)
    assert generation.prompt_template == original_prompt
    assert generation.prompt_sent == f"{original_prompt}, at dusk"
    assert generation.prompt == "at dusk"
    assert generation.model_chain == original_chain
    assert generation.parameters == original_parameters
    assert generation.preset_name == "Ghibli tears"


def test_the_custom_prompt_preset_sends_the_user_s_prompt_as_is(funded_user, image):
    prompt = "a lighthouse {at} night, 50% fog — ünïcode"
    generation, _ = generation_request(user=funded_user, preset_slug="custom_prompt", image=image, prompt=prompt)
    assert generation.prompt_sent == prompt


@pytest.mark.parametrize("slug", ["ghibli_shock", "no-such-style", ""])
def test_an_inactive_or_unknown_preset_is_refused_and_costs_nothing(funded_user, image, settings, slug):
    Preset.objects.filter(slug="ghibli_shock").update(is_active=False)
    with pytest.raises(InvalidInput) as caught:
        generation_request(user=funded_user, preset_slug=slug, image=image)
    assert caught.value.detail == {"field": "preset"}
    assert not Generation.objects.exists()
    assert balance_of(user=funded_user) == 10
    assert not CreditEntry.objects.filter(reason=CreditEntry.Reason.RESERVE).exists()
    uploads = settings.MEDIA_ROOT / "IMAGES_UPLOAD"
    assert not uploads.exists()
    assert "ghibli_shock" not in [preset.slug for preset in active_presets()]
    assert find_ledger_problems() == []
