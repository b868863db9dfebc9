import factory

from generation.registry import FAST_SDXL_I2I
from presets.models import Preset


class PresetFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Preset
        django_get_or_create = ("slug",)

    slug = factory.Sequence(lambda n: f"test-style-{n}")
    name = factory.Sequence(lambda n: f"Test style {n}")
    kind = Preset.Kind.PRESET
    prompt = "an oil painting, {prompt}"
    model_chain = factory.LazyFunction(lambda: [FAST_SDXL_I2I])
    parameters = factory.LazyFunction(dict)
    loras = factory.LazyFunction(list)
    num_images = 1
    requires_prompt = False
    is_active = True
