"""The presets admin, driven through Django's admin views as a superuser."""

from __future__ import annotations

import json

import pytest
from django.urls import reverse

from presets.models import Preset

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff_client(client, admin_user):
    client.force_login(admin_user)
    return client


def form_data(preset: Preset, **changes: object) -> dict[str, object]:
    data: dict[str, object] = {
        "name": preset.name,
        "kind": preset.kind,
        "description": preset.description,
        "is_active": "on" if preset.is_active else "",
        "sort_order": preset.sort_order,
        "prompt": preset.prompt,
        "requires_prompt": "on" if preset.requires_prompt else "",
        "model_chain": json.dumps(preset.model_chain),
        "parameters": json.dumps(preset.parameters),
        "loras": json.dumps(preset.loras),
        "num_images": preset.num_images,
    }
    data.update(changes)
    return {key: value for key, value in data.items() if value != ""}


def change(staff_client, slug, **changes):  # type: ignore[no-untyped-def]
    preset = Preset.objects.get(slug=slug)
    url = reverse("admin:presets_preset_change", args=[preset.pk])
    return staff_client.post(url, form_data(preset, **changes))


def field_errors(response) -> dict[str, list[str]]:  # type: ignore[no-untyped-def]
    assert response.status_code == 200, "the form should be shown again with errors"
    return {field: list(errors) for field, errors in response.context["adminform"].form.errors.items()}


def test_an_unknown_endpoint_is_refused_on_the_model_chain_field(staff_client):
    response = change(staff_client, "ghibli_tears", model_chain=json.dumps(["fal-ai/ghiblify", "fal-ai/nope"]))
    errors = field_errors(response)
    assert list(errors) == ["model_chain"]
    assert "Unknown model endpoint 'fal-ai/nope'" in errors["model_chain"][0]
    assert Preset.objects.get(slug="ghibli_tears").model_chain[1] != "fal-ai/nope"


def test_a_changed_locked_value_is_refused_on_the_parameters_field(staff_client):
    response = change(staff_client, "image_to_image", parameters=json.dumps({"strength": 0.9}))
    errors = field_errors(response)
    assert list(errors) == ["parameters"]
    assert "strength is locked to 0.5" in errors["parameters"][0]
    assert Preset.objects.get(slug="image_to_image").parameters == {}


def test_a_missing_prompt_placeholder_is_refused_on_the_prompt_field(staff_client):
    response = change(staff_client, "image_to_image", prompt="a dreamy photo")
    errors = field_errors(response)
    assert list(errors) == ["prompt"]
    assert "{prompt}" in errors["prompt"][0]


def test_malformed_json_is_refused_on_its_field_and_shown_again(staff_client):
    response = change(staff_client, "realistic", parameters='{"strength": 0.5,')
    errors = field_errors(response)
    assert list(errors) == ["parameters"]
    assert b"{&quot;strength&quot;: 0.5," in response.content


def test_a_valid_edit_is_saved(staff_client):
    response = change(
        staff_client,
        "oil_painting",
        prompt="a gilded baroque oil painting, {prompt}",
        parameters=json.dumps({"strength": 0.55}),
        sort_order=5,
    )
    assert response.status_code == 302
    preset = Preset.objects.get(slug="oil_painting")
    assert (preset.prompt, preset.parameters, preset.sort_order) == (
        "a gilded baroque oil painting, {prompt}",
        {"strength": 0.55},
        5,
    )


def test_the_change_form_shows_cost_read_only_and_json_indented(staff_client):
    preset = Preset.objects.get(slug="ghibli_tears")
    response = staff_client.get(reverse("admin:presets_preset_change", args=[preset.pk]))
    assert response.status_code == 200
    form = response.context["adminform"].form
    assert "cost" not in form.fields and "slug" not in form.fields, "read-only, not inputs"
    page = response.content.decode()
    assert "Cost (credits)" in page
    assert "[\n  &quot;fal-ai/ghiblify&quot;," in page
    assert f'src="/static/img/presets/{preset.slug}.png"' in page


def test_the_list_filters_by_kind_searches_and_shows_thumbnails(staff_client):
    url = reverse("admin:presets_preset_changelist")
    response = staff_client.get(url, {"kind__exact": "ghibli_reaction"})
    shown = {preset.slug for preset in response.context["cl"].result_list}
    assert shown == {"ghibli_tears", "ghibli_shock", "ghibli_sparkle"}
    assert b'src="/static/img/presets/ghibli_tears.png"' in response.content
    response = staff_client.get(url, {"q": "vaporwave"})
    assert [preset.slug for preset in response.context["cl"].result_list] == ["neo_glitch_vaporwave"]


def test_sort_order_is_edited_in_the_list(staff_client):
    url = reverse("admin:presets_preset_changelist")
    presets = list(Preset.objects.order_by("sort_order", "name"))
    data = {
        "form-TOTAL_FORMS": len(presets),
        "form-INITIAL_FORMS": len(presets),
        "form-MIN_NUM_FORMS": 0,
        "form-MAX_NUM_FORMS": 1000,
        "_save": "Save",
    }
    for index, preset in enumerate(presets):
        data[f"form-{index}-id"] = preset.pk
        data[f"form-{index}-sort_order"] = -1 if preset.slug == "image_to_image" else preset.sort_order
    response = staff_client.post(url, data)
    assert response.status_code == 302
    assert Preset.objects.order_by("sort_order").first().slug == "image_to_image"


def test_activate_and_deactivate_actions(staff_client):
    url = reverse("admin:presets_preset_changelist")
    ids = list(Preset.objects.filter(kind=Preset.Kind.NEO_GLITCH).values_list("pk", flat=True))
    staff_client.post(url, {"action": "deactivate", "_selected_action": ids})
    assert not Preset.objects.filter(pk__in=ids, is_active=True).exists()
    response = staff_client.post(url, {"action": "activate", "_selected_action": ids}, follow=True)
    assert Preset.objects.filter(pk__in=ids, is_active=True).count() == len(ids)
    assert f"{len(ids)} presets activated." in response.content.decode()


def test_a_new_preset_can_be_added_with_its_slug(staff_client):
    url = reverse("admin:presets_preset_add")
    template = Preset(
        name="Ink wash",
        kind=Preset.Kind.PRESET,
        prompt="sumi-e ink wash painting, {prompt}",
        model_chain=["fal-ai/fast-sdxl/image-to-image"],
        parameters={"strength": 0.6},
        num_images=1,
        sort_order=300,
        is_active=True,
    )
    response = staff_client.post(url, {**form_data(template), "slug": "ink_wash"})
    assert response.status_code == 302, response.context["adminform"].form.errors
    assert Preset.objects.get(slug="ink_wash").thumbnail_url == "/static/img/presets/kind-preset.png"


def test_a_prompt_no_model_reads_is_refused_in_the_admin(staff_client):
    preset = Preset.objects.get(slug="oil_painting")
    response = change(staff_client, "oil_painting", model_chain=json.dumps(["fal-ai/ghiblify"]), parameters="{}")
    assert "never be sent" in " ".join(field_errors(response)["prompt"])
    assert Preset.objects.get(pk=preset.pk).model_chain == preset.model_chain


def test_activating_a_preset_that_would_fail_is_refused_with_the_reason(staff_client):
    url = reverse("admin:presets_preset_changelist")
    broken = Preset.objects.get(slug="watercolor")
    fine = Preset.objects.get(slug="oil_painting")
    # Saved before a rule, or its model left the registry: the row alone cannot tell.
    Preset.objects.filter(pk=broken.pk).update(is_active=False, model_chain=["fal-ai/retired-model"])
    Preset.objects.filter(pk=fine.pk).update(is_active=False)
    response = staff_client.post(url, {"action": "activate", "_selected_action": [broken.pk, fine.pk]}, follow=True)
    messages = [str(message) for message in response.context["messages"]]
    assert any(text.startswith(f"{broken.name} (watercolor) stays off: model_chain:") for text in messages), messages
    assert "1 preset activated." in messages
    assert not Preset.objects.get(pk=broken.pk).is_active and Preset.objects.get(pk=fine.pk).is_active


def test_the_list_warns_about_a_live_preset_whose_settings_would_fail(staff_client):
    url = reverse("admin:presets_preset_changelist")
    assert not [m for m in staff_client.get(url).context["messages"] if m.level_tag == "warning"]
    Preset.objects.filter(slug="watercolor").update(model_chain=["fal-ai/retired-model"])
    messages = [str(message) for message in staff_client.get(url).context["messages"]]
    assert [text for text in messages if "(watercolor) is live but would fail: model_chain:" in text], messages


# --- Languages: Stefna's own admin words follow the staff member's, as Django's do ----------


def glitch_presets_reactivated(client) -> tuple[str, list[str]]:
    """The changelist, then the activate action's messages for the glitch presets switched off."""
    url = reverse("admin:presets_preset_changelist")
    ids = list(Preset.objects.filter(kind=Preset.Kind.NEO_GLITCH).values_list("pk", flat=True))
    Preset.objects.filter(pk__in=ids).update(is_active=False)
    listing = client.get(url).content.decode()
    done = client.post(url, {"action": "activate", "_selected_action": ids}, follow=True)
    return listing, [str(message) for message in done.context["messages"]]


def test_the_preset_admin_speaks_indonesian_to_indonesian_staff(staff_client):
    staff_client.cookies["stefna_language"] = "id"
    count = Preset.objects.filter(kind=Preset.Kind.NEO_GLITCH).count()
    # A live preset that would fail is warned about on the list.
    Preset.objects.filter(slug="watercolor").update(model_chain=["fal-ai/retired-model"])

    listing, messages = glitch_presets_reactivated(staff_client)
    edit = staff_client.get(reverse("admin:presets_preset_change", args=[Preset.objects.first().pk])).content.decode()

    assert "<span>Urutan model</span>" in listing  # a column title
    assert ">Aktifkan gaya siap pakai yang dipilih</option>" in listing  # an action
    assert "(watercolor) aktif tapi akan gagal: model_chain:" in listing
    assert f"{count} gaya siap pakai diaktifkan." in messages
    assert ">Gambar mini</h2>" in edit  # a fieldset title
    assert "Endpoint yang dikenal, dicoba berurutan — fal-ai/ghiblify" in edit  # help built per request


def test_the_preset_admin_stays_english_for_english_staff(staff_client):
    count = Preset.objects.filter(kind=Preset.Kind.NEO_GLITCH).count()

    listing, messages = glitch_presets_reactivated(staff_client)
    edit = staff_client.get(reverse("admin:presets_preset_change", args=[Preset.objects.first().pk])).content.decode()

    assert "<span>Model chain</span>" in listing and ">Activate selected presets</option>" in listing
    assert messages == [f"{count} presets activated."]
    assert ">Thumbnail</h2>" in edit and "Known endpoints, tried in order — fal-ai/ghiblify" in edit
