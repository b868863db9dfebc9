"""The generation log is appended by the database (AppendLogLines), on SQLite and PostgreSQL."""

import pytest

from generation.models import AppendLogLines, Generation

from .factories import GenerationFactory

pytestmark = pytest.mark.django_db


def line(n: int) -> dict[str, str]:
    return {"message": f"line {n}", "level": "info", "timestamp": f"2026-11-30T00:00:{n:02d}"}


def append(generation: Generation, lines: list[dict[str, str]], *, keep: int = 200) -> list[object]:
    Generation.objects.filter(pk=generation.pk).update(logs=AppendLogLines("logs", lines, keep=keep))
    generation.refresh_from_db(fields=["logs"])
    return generation.logs


def test_it_appends_after_the_existing_lines_in_order():
    generation = GenerationFactory(logs=[line(1)])

    assert append(generation, [line(2), line(3)]) == [line(1), line(2), line(3)]


def test_it_starts_an_empty_log():
    generation = GenerationFactory(logs=[])

    assert append(generation, [line(1)]) == [line(1)]


def test_it_keeps_only_the_newest_lines():
    generation = GenerationFactory(logs=[line(n) for n in range(5)])

    assert append(generation, [line(5), line(6)], keep=4) == [line(3), line(4), line(5), line(6)]
    assert append(generation, [line(n) for n in range(10, 16)], keep=4) == [line(n) for n in range(12, 16)]


def test_values_that_are_not_objects_survive_an_append():
    # Lines are always objects when we write them; a hand-edited log must not break appends.
    odd = ["text", 3, 2.5, True, False, None, [1, "x"], {"nested": {"a": [1]}}]
    generation = GenerationFactory(logs=odd)

    assert append(generation, [line(1)]) == [*odd, line(1)]


def test_text_with_quotes_and_unicode_is_stored_as_written():
    tricky = {"message": "He said \"hi\" \\ then → 🎨 and 'bye'", "level": "info", "timestamp": "t"}
    generation = GenerationFactory(logs=[])

    assert append(generation, [tricky]) == [tricky]


def test_two_appends_keep_both_lines():
    generation = GenerationFactory(logs=[])
    stale = Generation.objects.get(pk=generation.pk)  # a writer holding an old copy of the row

    append(generation, [line(1)])
    append(stale, [line(2)])

    generation.refresh_from_db(fields=["logs"])
    assert generation.logs == [line(1), line(2)]
