"""Preset.clean(): every refusal names the field it is about."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError

from generation.registry import FAST_SDXL_I2I, FLUX_GENERAL_I2I, GHIBLIFY, REALISTIC_VISION
from presets.models import Preset


def make(**fields):  # type: ignore[no-untyped-def]
    values = {
        "slug": "x",
        "name": "X",
        "kind": Preset.Kind.PRESET,
        "prompt": "an oil painting, {prompt}",
        "model_chain": [FAST_SDXL_I2I],
        "parameters": {"strength": 0.6},
        "loras": [],
        "num_images": 1,
        "requires_prompt": False,
    }
    values.update(fields)
    return Preset(**values)


def errors_of(preset):  # type: ignore[no-untyped-def]
    with pytest.raises(ValidationError) as caught:
        preset.clean()
    return caught.value.message_dict


def test_a_valid_preset_passes():
    make().clean()
    make(kind=Preset.Kind.IMAGE_TO_IMAGE, prompt="{prompt}", model_chain=[FLUX_GENERAL_I2I], parameters={},
         requires_prompt=True, num_images=2).clean()  # fmt: skip


@pytest.mark.parametrize(
    ("fields", "field", "words"),
    [
        ({"model_chain": ["fal-ai/does-not-exist"]}, "model_chain", "Unknown model endpoint"),
        ({"model_chain": []}, "model_chain", "at least one"),
        ({"model_chain": [FLUX_GENERAL_I2I], "parameters": {"strength": 0.8}}, "parameters", "locked"),
        ({"model_chain": [FLUX_GENERAL_I2I], "parameters": {"num_inference_steps": 30}}, "parameters", "locked"),
        ({"parameters": {"strenght": 0.5}}, "parameters", "strenght"),
        ({"parameters": {"strength": 3}}, "parameters", "at most"),
        ({"loras": [{"scale": 1}]}, "loras", "path"),
        ({"model_chain": [GHIBLIFY], "loras": [{"path": "x/y", "scale": 1}], "parameters": {}}, "loras", "LoRA"),
        ({"num_images": 9}, "num_images", "between 1 and 4"),
        ({"requires_prompt": True, "prompt": "an oil painting"}, "prompt", "{prompt}"),
        ({"prompt": "an oil painting of {promt}"}, "prompt", "{promt}"),
        ({"kind": Preset.Kind.CUSTOM_PROMPT, "prompt": "{prompt}"}, "requires_prompt", "must ask"),
        ({"prompt": "", "model_chain": [REALISTIC_VISION], "parameters": {}}, "prompt", "Realistic Vision"),
        # Ghiblify takes no prompt: a prompt asked for, or written, would silently go nowhere.
        (
            {"model_chain": [GHIBLIFY], "parameters": {}, "requires_prompt": True, "prompt": "{prompt}"},
            "requires_prompt",
            "Ghiblify ignores it",
        ),
        ({"model_chain": [GHIBLIFY], "parameters": {}, "prompt": "a quiet harbour"}, "prompt", "never be sent"),
    ],
)
def test_bad_settings_are_refused_on_the_field_they_concern(fields, field, words):
    errors = errors_of(make(**fields))
    assert field in errors, errors
    assert words in " ".join(errors[field])


def test_an_empty_template_is_fine_when_the_user_must_write_the_prompt_or_no_model_reads_it():
    make(prompt="", requires_prompt=True).clean()
    make(prompt="", model_chain=[GHIBLIFY], parameters={}).clean()


def test_user_braces_other_than_placeholders_are_allowed_in_a_template():
    make(prompt="a {prompt} in {{double braces}} and a lone } brace").clean()
