"""Factories for rows in a given state. Credits are not touched: tests that care about
money go through services and the ledger, never through factories."""

import factory
from django.conf import settings
from django.utils import timezone

from generation.models import Attempt, Generation, Media
from presets.tests.factories import PresetFactory
from stefna.accounts.tests.factories import UserFactory


class GenerationFactory(factory.django.DjangoModelFactory[Generation]):
    class Meta:
        model = Generation

    user = factory.SubFactory(UserFactory)
    preset = factory.SubFactory(PresetFactory)
    preset_slug = factory.LazyAttribute(lambda o: o.preset.slug)
    preset_name = factory.LazyAttribute(lambda o: o.preset.name)
    kind = factory.LazyAttribute(lambda o: o.preset.kind)
    prompt = "a quiet harbour"
    prompt_sent = factory.LazyAttribute(lambda o: o.preset.prompt.replace("{prompt}", o.prompt))
    model_chain = factory.LazyAttribute(lambda o: list(o.preset.model_chain))
    num_images = 1
    cost = settings.GENERATION_COST
    status = Generation.Status.SUCCEEDED
    completed_at = factory.LazyFunction(timezone.now)


class AttemptFactory(factory.django.DjangoModelFactory[Attempt]):
    class Meta:
        model = Attempt

    generation = factory.SubFactory(GenerationFactory)
    position = 0
    model = factory.LazyAttribute(lambda o: o.generation.model_chain[0])
    fal_job_id = factory.Faker("uuid4")
    status = Attempt.Status.SUCCEEDED


class MediaFactory(factory.django.DjangoModelFactory[Media]):
    class Meta:
        model = Media

    generation = factory.SubFactory(GenerationFactory)
    user = factory.LazyAttribute(lambda o: o.generation.user)
    index = factory.Sequence(lambda n: n)
    fal_job_id = factory.Faker("uuid4")
    model = factory.LazyAttribute(lambda o: o.generation.model_chain[0])
    url = factory.Sequence(lambda n: f"https://res.cloudinary.com/demo/image/upload/stefna/generated/img_{n}.jpg")
    original_url = factory.Sequence(lambda n: f"https://v3.fal.media/files/test/{n}.png")
    width = 1024
    height = 1024
    persisted = True
    is_public = False
