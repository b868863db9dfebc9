"""`GET /api/generations/{id}` (and each live status event) as one static SQL statement.

API clients poll the status while a job runs, and a live stream reads it for every change
of the job it watches, so it is one of the hottest reads. Building its queries through
the ORM (the generation with its balance subquery, then two prefetches) was most of the
request's CPU in bench/api.py, for statements PostgreSQL runs in a fraction of that
(figures in bench/README.md). Here the SQL text is built once per database backend from
the models' own table and column names, parameters go through the fields' own
conversion, and every value read comes back through the same converters the ORM applies
(UUIDs, datetimes and booleans on SQLite, JSON everywhere), so the answer is exactly what
`selectors.generation_get_with_balance` + `schemas.generation_out` give. The generation,
its images and its attempts come back in one round trip (a UNION ALL whose first column
tells the kind of row), where the ORM takes three. Equivalent ORM:

    Generation.objects.filter(user=user, pk=generation_id)
        .annotate(owner_balance=Subquery(Wallet…balance))
        .prefetch_related(media ordered by index, attempts ordered by started_at)

Rows are named tuples whose attribute names match the models' (`pk` for the id), so
`schemas.image_out` and the attempt builder take them as they take model instances.
"""

from __future__ import annotations

import datetime as dt
import uuid
import weakref
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

from django.db import DEFAULT_DB_ALIAS, connection, connections
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import Model
from django.utils.translation import gettext_lazy as _

from credits.models import Wallet
from stefna.errors import NotFound

from .models import Attempt, Generation, Media

if TYPE_CHECKING:
    from stefna.accounts.models import User

# What the contract's Generation shows, and nothing else. Attribute names are the models'
# fields (`pk` for the primary key), in column order.


class MediaRow(NamedTuple):
    pk: uuid.UUID
    url: str
    original_url: str
    fal_job_id: str
    model: str
    width: int | None
    height: int | None
    persisted: bool
    is_public: bool


class AttemptRow(NamedTuple):
    model: str
    fal_job_id: str
    status: str
    error: str
    started_at: dt.datetime
    finished_at: dt.datetime | None


class GenerationRow(NamedTuple):
    pk: uuid.UUID
    preset_slug: str
    kind: str
    status: str
    prompt: str
    prompt_sent: str
    cost: int
    queue_position: int | None
    logs: Any
    current_model: str
    error_code: str
    error_message: str
    created_at: dt.datetime
    completed_at: dt.datetime | None
    version: int  # not in the answer: its ETag
    # Not columns of the generation:
    balance: int | None
    media: list[MediaRow]
    attempts: list[AttemptRow]


GENERATION_FIELDS = GenerationRow._fields[:-3]
MEDIA_FIELDS = MediaRow._fields
ATTEMPT_FIELDS = AttemptRow._fields


# One statement, three kinds of row (UNION ALL), told apart by the first column:
KIND_GENERATION, KIND_MEDIA, KIND_ATTEMPT = 0, 1, 2
# Each row: kind, two sort keys (an image's index, an attempt's start), the generation's
# columns and its owner's balance, an image's columns, an attempt's columns; the columns
# of the other kinds are NULL.
_SORT = 3
_GENERATION = slice(_SORT, _SORT + len(GENERATION_FIELDS) + 1)  # + the balance
_MEDIA = slice(_GENERATION.stop, _GENERATION.stop + len(MEDIA_FIELDS))
_ATTEMPT = slice(_MEDIA.stop, _MEDIA.stop + len(ATTEMPT_FIELDS))
_SPANS = {KIND_GENERATION: _GENERATION, KIND_MEDIA: _MEDIA, KIND_ATTEMPT: _ATTEMPT}


class _Statement(NamedTuple):
    sql: str
    fields: dict[int, tuple[Any, ...]]  # per kind of row: the model fields its span reads, in order


Converter = Callable[[Any, Any, BaseDatabaseWrapper], Any]


class _Prepared(NamedTuple):
    sql: str
    # Per kind of row: (column position, converters, its Col) for that kind's columns.
    converters: dict[int, list[tuple[int, list[Converter], Any]]]


def _field(model: type[Model], name: str) -> Any:
    return model._meta.pk if name == "pk" else model._meta.get_field(name)


def _columns(model: type[Model], names: Sequence[str], alias: str) -> tuple[list[str], tuple[Any, ...]]:
    quote = connection.ops.quote_name
    fields = tuple(_field(model, name) for name in names)
    return [f"{alias}.{quote(field.column)}" for field in fields], fields


def _statement() -> _Statement:
    """The generation with its owner's balance, its images by index and its attempts by
    start, in one round trip (the stream reads it for every change of every job watched)."""
    quote = connection.ops.quote_name

    def table(model: type[Model]) -> str:
        return quote(model._meta.db_table)

    def column(model: type[Model], name: str) -> str:
        return quote(_field(model, name).column)

    generation_columns, generation_fields = _columns(Generation, GENERATION_FIELDS, "g")
    media_columns, media_fields = _columns(Media, MEDIA_FIELDS, "m")
    attempt_columns, attempt_fields = _columns(Attempt, ATTEMPT_FIELDS, "a")
    balance = (
        f"(SELECT w.{column(Wallet, 'balance')} FROM {table(Wallet)} w "  # noqa: S608
        f"WHERE w.{column(Wallet, 'user')} = g.{column(Generation, 'user')})"
    )

    def nulls(count: int) -> list[str]:
        return ["NULL"] * count

    def typed_nulls(fields: Sequence[Any]) -> list[str]:
        # PostgreSQL types a UNION's columns pair by pair from the left: a bare NULL in the
        # first branch would make a column text, which a later uuid or timestamp cannot join.
        return [f"CAST(NULL AS {field.cast_db_type(connection)})" for field in fields]

    index_field, started_field = _field(Media, "index"), _field(Attempt, "started_at")
    generation_row = [
        str(KIND_GENERATION), *typed_nulls([index_field, started_field]), *generation_columns, balance,
        *typed_nulls(media_fields), *typed_nulls(attempt_fields),
    ]  # fmt: skip
    media_row = [
        str(KIND_MEDIA), f"m.{column(Media, 'index')}", "NULL", *nulls(len(generation_columns) + 1),
        *media_columns, *nulls(len(attempt_columns)),
    ]  # fmt: skip
    attempt_row = [
        str(KIND_ATTEMPT), "NULL", f"a.{column(Attempt, 'started_at')}", *nulls(len(generation_columns) + 1),
        *nulls(len(media_columns)), *attempt_columns,
    ]  # fmt: skip
    # Only identifiers from the models are formatted in; every value is a parameter. The
    # images and attempts are read by the generation's id alone: when it is not the
    # user's, the answer is NotFound and they are never used.
    sql = (
        f"SELECT {', '.join(generation_row)} FROM {table(Generation)} g "  # noqa: S608
        f"WHERE g.{column(Generation, 'pk')} = %s AND g.{column(Generation, 'user')} = %s "
        f"UNION ALL SELECT {', '.join(media_row)} FROM {table(Media)} m "
        f"WHERE m.{column(Media, 'generation')} = %s "
        f"UNION ALL SELECT {', '.join(attempt_row)} FROM {table(Attempt)} a "
        f"WHERE a.{column(Attempt, 'generation')} = %s "
        "ORDER BY 1 ASC, 2 ASC, 3 ASC"
    )
    fields = {KIND_GENERATION: generation_fields, KIND_MEDIA: media_fields, KIND_ATTEMPT: attempt_fields}
    return _Statement(sql, fields)


# Per connection object: the SQL is the backend's (its quoting), the converters are its
# operations' (a thread has its own connection; a closed one is collected with its entry).
_prepared: weakref.WeakKeyDictionary[BaseDatabaseWrapper, _Prepared] = weakref.WeakKeyDictionary()


def _prepare() -> _Prepared:
    wrapper = connections[DEFAULT_DB_ALIAS]
    prepared = _prepared.get(wrapper)
    if prepared is None:
        statement = _statement()
        converters: dict[int, list[tuple[int, list[Converter], Any]]] = {}
        for kind, fields in statement.fields.items():
            converters[kind] = []
            for position, field in enumerate(fields, start=_SPANS[kind].start):
                col = field.get_col(field.model._meta.db_table)
                # What the ORM's compiler applies to a column: the backend's, then the field's.
                column_converters = wrapper.ops.get_db_converters(col) + col.get_db_converters(wrapper)
                if column_converters:
                    converters[kind].append((position, column_converters, col))
        prepared = _prepared[wrapper] = _Prepared(statement.sql, converters)
    return prepared


def _rows(statement: _Prepared, params: list[Any]) -> list[list[Any]]:
    with connection.cursor() as cursor:
        cursor.execute(statement.sql, params)
        rows = cursor.fetchall()
    converted = []
    for row in rows:
        values = list(row)
        for position, column_converters, col in statement.converters[values[0]]:
            value = values[position]
            for converter in column_converters:
                value = converter(value, col, connection)
            values[position] = value
        converted.append(values)
    return converted


def generation_status_row(*, user: User, generation_id: uuid.UUID) -> GenerationRow:
    """One of the user's generations with its images, attempts and the owner's balance
    (a GenerationRow). Someone else's is NotFound, never Forbidden."""
    prepared = _prepare()
    pk = Generation._meta.pk.get_db_prep_value(generation_id, connection)  # type: ignore[union-attr]
    owner = Generation._meta.get_field("user").target_field.get_db_prep_value(user.pk, connection)  # type: ignore[union-attr]
    rows = _rows(prepared, [pk, owner, pk, pk])
    if not rows or rows[0][0] != KIND_GENERATION:
        raise NotFound(_("Generation not found."))
    media = [MediaRow._make(values[_MEDIA]) for values in rows if values[0] == KIND_MEDIA]
    attempts = [AttemptRow._make(values[_ATTEMPT]) for values in rows if values[0] == KIND_ATTEMPT]
    return GenerationRow._make([*rows[0][_GENERATION], media, attempts])


# --- What a watcher needs to know whether anything changed ----------------------------------


class WatchState(NamedTuple):
    """A generation's version and the owner's wallet figures: everything a status answer
    depends on besides the generation itself (its balance, and the card's header)."""

    version: int
    balance: int | None
    purchased_balance: int | None
    allowance_day: dt.date | None
    status: str


def generation_watch_state(*, user_id: uuid.UUID, generation_id: uuid.UUID | str) -> WatchState | None:
    """The version of one of the user's generations and the owner's wallet, in one query
    that loads neither the generation's columns, its attempts nor its images; None when
    it is not the user's (or does not exist). What a conditional GET answers 304 from."""
    found = (
        Generation.objects.filter(pk=generation_id, user_id=user_id)
        .values_list(
            "version",
            "user__wallet__balance",
            "user__wallet__purchased_balance",
            "user__wallet__allowance_day",
            "status",
        )
        .first()
    )
    return WatchState._make(found) if found else None


def generation_versions(*, generation_ids: Sequence[uuid.UUID | str]) -> dict[str, int]:
    """Each generation's version by its id (as text): one query for every generation a
    process watches (the live status's polling fallback, generation/live.py)."""
    rows = Generation.objects.filter(pk__in=list(generation_ids)).values_list("pk", "version")
    return {str(pk): version for pk, version in rows}
