"""`generation_history_cards` (the history page's read) pages exactly as `generation_history`
(the API's) does, and loads only what a history card shows."""

from __future__ import annotations

import pytest

from generation import selectors
from generation.tests.factories import AttemptFactory, GenerationFactory, MediaFactory


@pytest.mark.django_db
def test_history_cards_page_like_the_full_history(user, other_user):
    for number in range(5):
        generation = GenerationFactory(user=user, status="failed" if number % 2 else "succeeded")
        MediaFactory(generation=generation, index=1)
        MediaFactory(generation=generation, index=0)
        AttemptFactory(generation=generation, position=0)
    GenerationFactory(user=other_user)
    for filters in ({}, {"status": "failed"}):
        cursor = None
        while True:
            full = selectors.generation_history(user=user, cursor=cursor, limit=2, **filters)
            cards = selectors.generation_history_cards(user=user, cursor=cursor, limit=2, **filters)
            assert [g.pk for g in cards.items] == [g.pk for g in full.items]
            assert cards.next_cursor == full.next_cursor
            for card, generation in zip(cards.items, full.items, strict=True):
                assert [m.pk for m in card.media.all()] == [m.pk for m in generation.media.all()]
            if not full.next_cursor:
                break
            cursor = full.next_cursor


@pytest.mark.django_db
def test_history_cards_leave_the_heavy_columns_unread(user, django_assert_num_queries):
    generation = GenerationFactory(user=user, logs=[{"message": "long"}], request_payload={"x": 1})
    media = MediaFactory(generation=generation, index=0)

    # Everything a card and its tiles read, in the page's two queries.
    with django_assert_num_queries(2):
        [card] = selectors.generation_history_cards(user=user).items
        [image] = card.media.all()
        shown = (card.status, card.prompt, card.created_at, image.url, image.is_public, image.generation.preset_name)
    assert shown == (
        generation.status,
        generation.prompt,
        generation.created_at,
        media.url,
        media.is_public,
        generation.preset_name,
    )
    assert {"logs", "request_payload", "prompt_sent", "user_id"} <= card.get_deferred_fields()
    assert "attempts" not in card._prefetched_objects_cache
