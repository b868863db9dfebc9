"""Query budgets: every page and API answer costs a fixed number of queries, whatever its size.

Budgets (issue 10): feed page ≤ 5, history page ≤ 6, generation status ≤ 4, quota ≤ 3.
Authentication is part of the bill: a bearer token costs one query, a browser session
two (the session row and the user). Each budget is checked at two data sizes (5 and 50
rows) so a count that grows with the page (an N+1) fails here, not in production.

Counts are measured in the steady state: one warm-up request first, because the first
call of a token touches `last_used_at` (one UPDATE, at most once a minute per token) and
the first quota read of a UTC day writes the daily allowance.

The PostgreSQL plan tests pin the two index rules: a deep keyset cursor seeks in its
index (the redundant `created_at <= c` in stefna.pagination.keyset_page), and newest-first lists over
every row read an index instead of sorting the table.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import cast

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from credits import ledger
from generation import selectors, storage
from generation.models import Generation, Media
from generation.tests.factories import AttemptFactory, GenerationFactory, MediaFactory
from presets.tests.factories import PresetFactory
from stefna import pagination
from stefna.accounts.models import User
from stefna.accounts.tests.factories import UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _every_page_read_anew(settings):
    """The budgets are the pages' own: the feed's first page, kept a moment per process
    (generation/first_page.py, tested in generation/tests/test_first_page.py), would hide
    them on a second request."""
    settings.FEED_CACHE_SECONDS = 0


SIZES = [5, 50]

FEED_BUDGET = 5
HISTORY_BUDGET = 6
STATUS_BUDGET = 4
QUOTA_BUDGET = 3


def _preset():
    return PresetFactory(slug="perf-style", name="Perf style")


def make_history(user, count: int, *, media_each: int = 2, attempts_each: int = 2) -> list[Generation]:
    """`count` delivered generations for `user`, each with public media and attempts."""
    preset = _preset()
    generations = []
    for _ in range(count):
        generation = cast(Generation, GenerationFactory(user=user, preset=preset, is_public=True))
        for index in range(media_each):
            MediaFactory(generation=generation, index=index, is_public=True)
        for position in range(attempts_each):
            AttemptFactory(generation=generation, position=position)
        generations.append(generation)
    return generations


def make_feed(count: int) -> None:
    """`count` public images from generations of different users (so joins really vary)."""
    preset = _preset()
    for number in range(count):
        owner = UserFactory(email=f"feed-author-{number % 7}@example.com")
        generation = GenerationFactory(user=owner, preset=preset, is_public=True)
        MediaFactory(generation=generation, index=0, is_public=True)


def session_client(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def warm_up(client: Client, url: str = "/api/quota") -> None:
    assert client.get(url).status_code == 200


def query_count(fn) -> tuple[int, object]:
    with CaptureQueriesContext(connection) as context:
        result = fn()
    return len(context.captured_queries), result


# --- JSON API --------------------------------------------------------------------------------


@pytest.mark.parametrize("rows", SIZES)
def test_api_feed_page_costs_at_most_5_queries(client, rows, django_assert_max_num_queries):
    make_feed(rows)

    with django_assert_max_num_queries(FEED_BUDGET):
        response = client.get("/api/feed", {"limit": 50})

    assert response.status_code == 200
    assert len(response.json()["items"]) == rows


@pytest.mark.parametrize("rows", SIZES)
def test_api_history_page_costs_at_most_6_queries(api_client, user, rows, django_assert_max_num_queries):
    make_history(user, rows)
    warm_up(api_client)

    with django_assert_max_num_queries(HISTORY_BUDGET):
        response = api_client.get("/api/generations", {"limit": 50})

    assert response.status_code == 200
    items = response.json()["items"]
    assert len(items) == rows
    assert all(len(item["images"]) == 2 and len(item["attempts"]) == 2 for item in items)


@pytest.mark.parametrize("children", SIZES)
def test_api_generation_status_costs_at_most_4_queries(api_client, user, children, django_assert_max_num_queries):
    # A generation with many images and attempts must cost what one with few does.
    [generation] = make_history(user, 1, media_each=children, attempts_each=children)
    warm_up(api_client)

    with django_assert_max_num_queries(STATUS_BUDGET):
        response = api_client.get(f"/api/generations/{generation.pk}")

    assert response.status_code == 200
    body = response.json()
    assert len(body["images"]) == children
    assert len(body["attempts"]) == children


@pytest.mark.parametrize("reservations", SIZES)
def test_api_quota_costs_at_most_3_queries(api_client, user, reservations, django_assert_max_num_queries):
    ledger.grant(user=user, amount=1000, note="perf test")
    for number, generation in enumerate(make_history(user, reservations, media_each=0, attempts_each=0)):
        ledger.reserve(user=user, generation=generation, amount=2)
        if number % 3 == 0:
            ledger.refund(generation=generation)
    warm_up(api_client)

    with django_assert_max_num_queries(QUOTA_BUDGET):
        response = api_client.get("/api/quota")

    assert response.status_code == 200
    refunded = len(range(0, reservations, 3))
    assert response.json()["daily_used"] == 2 * (reservations - refunded)


# --- HTML pages ------------------------------------------------------------------------------


@pytest.mark.parametrize("rows", SIZES)
def test_feed_page_for_visitors_costs_at_most_5_queries(client, rows, django_assert_max_num_queries):
    make_feed(rows)

    with django_assert_max_num_queries(FEED_BUDGET):
        response = client.get("/feed/")

    assert response.status_code == 200
    assert response.content.decode().count('href="/i/') >= min(rows, 24)


@pytest.mark.parametrize("rows", SIZES)
def test_feed_page_for_a_signed_in_user_costs_at_most_5_queries(user, rows, django_assert_max_num_queries):
    make_feed(rows)
    client = session_client(user)
    warm_up(client, "/feed/")

    with django_assert_max_num_queries(FEED_BUDGET):
        response = client.get("/feed/")

    assert response.status_code == 200


@pytest.mark.parametrize("rows", SIZES)
def test_history_page_costs_at_most_6_queries(user, rows, django_assert_max_num_queries):
    make_history(user, rows)
    client = session_client(user)
    warm_up(client, "/history/")

    with django_assert_max_num_queries(HISTORY_BUDGET):
        response = client.get("/history/")

    assert response.status_code == 200
    assert response.content.decode().count('data-testid="history-item"') == min(rows, 12)


@pytest.mark.parametrize("children", SIZES)
def test_status_card_of_a_running_generation_costs_at_most_4_queries(user, children, django_assert_max_num_queries):
    # The card htmx polls every second while a job runs: the hottest HTML route there is.
    [generation] = make_history(user, 1, media_each=0, attempts_each=children)
    Generation.objects.filter(pk=generation.pk).update(status=Generation.Status.RUNNING, completed_at=None)
    client = session_client(user)
    warm_up(client, f"/g/{generation.pk}/card/")

    with django_assert_max_num_queries(STATUS_BUDGET):
        response = client.get(f"/g/{generation.pk}/card/")

    assert response.status_code == 200
    assert 'hx-trigger="every 1s"' in response.content.decode()


@pytest.mark.parametrize("children", SIZES)
def test_status_card_of_a_finished_generation_costs_at_most_5_queries(user, children, django_assert_max_num_queries):
    [generation] = make_history(user, 1, media_each=children, attempts_each=children)
    client = session_client(user)
    warm_up(client, f"/g/{generation.pk}/card/")

    # One more than a running card: a finished card lists its attempts in "Details".
    with django_assert_max_num_queries(STATUS_BUDGET + 1):
        response = client.get(f"/g/{generation.pk}/card/")

    assert response.status_code == 200


def test_a_finished_card_for_htmx_shows_the_balance_its_generation_was_read_with(user, django_assert_num_queries):
    """Once final, the htmx card swaps the header balance in: the wallet comes with the
    generation (the same figures its ETag names), so that costs no read of its own."""
    from credits.models import Wallet

    [generation] = make_history(user, 1, media_each=2, attempts_each=1)
    ledger.grant(user=user, amount=7, note="test")
    balance = Wallet.objects.get(pk=user.pk).balance
    client = session_client(user)
    warm_up(client, f"/g/{generation.pk}/card/")

    with django_assert_num_queries(STATUS_BUDGET + 1):  # as many as without htmx
        response = client.get(f"/g/{generation.pk}/card/", HTTP_HX_REQUEST="true")

    body = response.content.decode()
    assert 'id="header-balance" ' in body and 'hx-swap-oob="true"' in body
    assert f'<strong data-testid="balance">{balance}</strong>' in body


def test_a_finished_card_on_a_new_day_applies_the_allowance_before_showing_the_balance(user, settings):
    """The wallet read with the generation is from before today's allowance: the header
    then goes through the quota service, which applies it (the first read after midnight)."""
    from credits.models import Wallet

    [generation] = make_history(user, 1, media_each=1, attempts_each=1)
    Wallet.objects.filter(pk=user.pk).update(
        allowance_day=ledger.utc_today() - dt.timedelta(days=1), balance=0, purchased_balance=0
    )
    client = session_client(user)

    body = client.get(f"/g/{generation.pk}/card/", HTTP_HX_REQUEST="true").content.decode()

    assert f'<strong data-testid="balance">{settings.DAILY_CREDITS}</strong>' in body
    assert Wallet.objects.get(pk=user.pk).allowance_day == ledger.utc_today()


def test_html_page_costs_do_not_grow_with_the_data(user):
    """Whatever the budgets end up being, 50 rows must cost exactly what 5 do."""
    client = session_client(user)
    make_history(user, 5)
    make_feed(5)
    warm_up(client, "/history/")
    small = {url: query_count(lambda url=url: client.get(url))[0] for url in ("/feed/", "/history/")}

    make_history(user, 45)
    make_feed(45)
    large = {url: query_count(lambda url=url: client.get(url))[0] for url in ("/feed/", "/history/")}

    assert large == small


# --- Keyset pagination -----------------------------------------------------------------------


def _bulk_feed(count: int) -> None:
    """`count` public images, one generation each, inserted in two statements."""
    owner = cast(User, UserFactory(email="deep-feed@example.com"))
    preset = _preset()
    start = timezone.now() - dt.timedelta(days=30)
    generations = Generation.objects.bulk_create(
        Generation(
            user=owner,
            preset=preset,
            preset_slug=preset.slug,
            kind=preset.kind,
            cost=2,
            status=Generation.Status.SUCCEEDED,
            is_public=True,
        )
        for _ in range(count)
    )
    Media.objects.bulk_create(
        Media(generation=generation, user=owner, url=f"https://res.cloudinary.com/x/{n}.jpg", is_public=True)
        for n, generation in enumerate(generations)
    )
    # Distinct, known timestamps (auto_now_add stamps them all "now"); some ties on
    # purpose, which the id in the cursor breaks.
    media = list(Media.objects.order_by("id"))
    for n, row in enumerate(media):
        row.created_at = start + dt.timedelta(seconds=n // 3)
    Media.objects.bulk_update(media, ["created_at"], batch_size=500)


def test_page_1000_of_the_feed_costs_what_page_1_costs(client):
    page_size = 2
    _bulk_feed(1000 * page_size + 3)
    everything = list(selectors.feed_queryset().order_by("-created_at", "-id").values_list("id", flat=True))

    # Walk the cursor chain past the 1,998 images of pages 1 to 999, as a client scrolling
    # fast would: in the largest pages the API allows. A cursor names the last image seen,
    # not a page number, so this is the cursor page 999 hands out (and 20 queries, not 999).
    before_page_1000 = 999 * page_size
    cursor, seen = None, 0
    while seen < before_page_1000:
        page = selectors.generation_feed(cursor=cursor, limit=min(pagination.MAX_PAGE_SIZE, before_page_1000 - seen))
        cursor, seen = page.next_cursor, seen + len(page.items)
    assert cursor is not None
    assert seen == before_page_1000

    first_count, first = query_count(lambda: client.get("/api/feed", {"limit": page_size}))
    with CaptureQueriesContext(connection) as deep_queries:
        deep = client.get("/api/feed", {"limit": page_size, "cursor": cursor})

    assert first.status_code == deep.status_code == 200
    assert len(deep_queries.captured_queries) == first_count
    expected = everything[999 * page_size : 1000 * page_size]
    assert [item["id"] for item in deep.json()["items"]] == [str(pk) for pk in expected]
    # A keyset, not an offset: the database seeks to the cursor instead of counting
    # (and throwing away) the 1,998 rows before it.
    feed_sql = deep_queries.captured_queries[-1]["sql"].upper()
    assert "OFFSET" not in feed_sql
    assert "LIMIT 3" in feed_sql


def _plan(sql: str) -> str:
    """The database's plan for `sql`, as text: which index, and what it seeks on."""
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            # Fresh test tables have no statistics; without them the planner guesses.
            cursor.execute("ANALYZE generation_media; ANALYZE generation_generation")
            cursor.execute("EXPLAIN (FORMAT JSON) " + sql)
            return json.dumps(cursor.fetchone()[0])
        cursor.execute("ANALYZE")
        cursor.execute("EXPLAIN QUERY PLAN " + sql)
        return "\n".join(str(row[-1]) for row in cursor.fetchall())


def _seeks_on_created_at(plan: str, *indexes: str) -> bool:
    """True when one of `indexes` is entered at the cursor (an index condition on created_at)."""
    if connection.vendor == "postgresql":
        scans = [node for node in _plan_nodes(json.loads(plan)) if node.get("Index Name") in indexes]
        return any("created_at" in node.get("Index Cond", "") for node in scans)
    return any(index in line and "created_at<" in line for index in indexes for line in plan.splitlines())


def _plan_nodes(plan) -> list[dict]:
    nodes, stack = [], [plan[0]["Plan"]]
    while stack:
        node = stack.pop()
        nodes.append(node)
        stack.extend(node.get("Plans", []))
    return nodes


def _postgres_only() -> None:
    if connection.vendor != "postgresql":
        pytest.skip(
            "PostgreSQL only: SQLite's planner turns the cursor's OR into an index range by itself "
            "(EXPLAIN QUERY PLAN: SEARCH ... USING INDEX media_feed (created_at<?)); PostgreSQL's does not"
        )


@pytest.mark.postgres_only
def test_a_deep_feed_cursor_seeks_in_the_index_instead_of_scanning_down_to_it():
    _postgres_only()
    _bulk_feed(2003)
    cursor_row = selectors.feed_queryset().order_by("-created_at", "-id").values_list("created_at", "id")[1500]

    with CaptureQueriesContext(connection) as queries:
        page = selectors.generation_feed(cursor=pagination.encode_cursor(*cursor_row), limit=2)

    assert len(page.items) == 2
    assert _seeks_on_created_at(_plan(queries.captured_queries[0]["sql"]), "media_feed", "media_recent")


@pytest.mark.postgres_only
def test_a_deep_history_cursor_seeks_in_the_index_instead_of_scanning_down_to_it(user):
    _postgres_only()
    preset = _preset()
    # Many people's rows, as in production, so the planner weighs the per-owner index properly.
    owners = [user, *(UserFactory() for _ in range(20))]
    Generation.objects.bulk_create(
        Generation(user=owner, preset=preset, preset_slug=preset.slug, kind=preset.kind, cost=2)
        for owner in owners
        for _ in range(600)
    )
    with connection.cursor() as cursor:
        cursor.execute(f"ANALYZE {Generation._meta.db_table}")
    cursor_row = (
        Generation.objects.filter(user=user).order_by("-created_at", "-id").values_list("created_at", "id")[500]
    )

    with CaptureQueriesContext(connection) as queries:
        page = selectors.generation_history(user=user, cursor=pagination.encode_cursor(*cursor_row), limit=2)

    assert len(page.items) == 2
    assert _seeks_on_created_at(_plan(queries.captured_queries[0]["sql"]), "gen_history")


# --- Staff pages -----------------------------------------------------------------------------


@pytest.mark.postgres_only
@pytest.mark.parametrize("model", [Generation, Media], ids=["generations", "images"])
def test_newest_first_over_every_row_reads_an_index_not_a_sort(model):
    if connection.vendor != "postgresql":
        pytest.skip("PostgreSQL only: the plan is PostgreSQL's (EXPLAIN FORMAT JSON)")
    _bulk_feed(5000)
    sql, params = model.objects.order_by("-created_at", "-id")[:100].query.sql_with_params()

    with connection.cursor() as cursor:
        cursor.execute(f"ANALYZE {model._meta.db_table}")
        cursor.execute("EXPLAIN (FORMAT JSON) " + sql, params)
        nodes = _plan_nodes(cursor.fetchone()[0])

    assert not [node for node in nodes if node["Node Type"] in ("Sort", "Incremental Sort")]
    assert any(node["Node Type"] == "Index Scan" and node["Relation Name"] == model._meta.db_table for node in nodes)


# --- Media served by name ------------------------------------------------------------------


def test_an_image_and_a_source_photo_are_found_by_name_through_an_index():
    # Every /media/generated/<name> and /media/sources/<name> request looks its row up by
    # file name; without an index that read the whole table each time.
    _bulk_feed(2000)
    media = list(Media.objects.order_by("id")[:1500])
    for n, row in enumerate(media):
        row.storage_key = f"{storage.RESULTS_FOLDER}/{n:040x}.png"
    Media.objects.bulk_update(media, ["storage_key"])
    Generation.objects.filter(pk=media[7].generation_id).update(source_image=f"{storage.SOURCES_FOLDER}/photo.jpg")

    with CaptureQueriesContext(connection) as queries:
        found = storage.media_for_name(media[700].storage_key)
        source = storage.generation_for_source(f"{storage.SOURCES_FOLDER}/photo.jpg")

    assert found is not None and found.pk == media[700].pk
    assert source is not None and source.pk == media[7].generation_id
    assert "media_storage_key" in _plan(queries.captured_queries[0]["sql"])
    assert "gen_source_image" in _plan(queries.captured_queries[1]["sql"])


@pytest.mark.parametrize("jobs", [2, 8])
def test_a_poll_round_over_jobs_waiting_at_fal_costs_7_queries_however_many(fake_fal, jobs):
    """The worker's hot path: each round checks every job in flight (up to a thousand),
    most of them still waiting in fal's queue. Claiming them, loading their attempts and
    rescheduling them (`advance.generation_poll_batch`) is a fixed number of queries (with
    the savepoints of the test's transaction: 2 more than in the worker)."""
    from generation import services
    from generation.tests.pipeline_helpers import start_generation

    fake_fal.manual = True
    preset = PresetFactory()
    for _ in range(jobs):
        start_generation(UserFactory(), preset)
    assert services.generation_poll_due(limit=100) == jobs  # sent to fal
    Generation.objects.update(next_check_at=timezone.now())
    assert services.generation_poll_due(limit=100) == jobs  # in fal's queue: place 2 (moved)
    Generation.objects.update(next_check_at=timezone.now())

    with CaptureQueriesContext(connection) as queries:
        assert services.generation_poll_due(limit=100) == jobs  # still there: unchanged
    assert len(queries) == 7, "\n".join(query["sql"][:200] for query in queries.captured_queries)
    assert Generation.objects.filter(queue_position=2).count() == jobs
