"""Fixtures shared by every app's tests. App-specific factories live in each app's tests/factories.py."""

from __future__ import annotations

import time

import pytest
from django.core.cache import cache


@pytest.fixture(autouse=True)
def _outside_any_request():
    """Every test starts outside a request. The request id lives in a context variable that
    RequestIdMiddleware clears at request_finished, and Django's test client sends that for
    a streamed answer (a FileResponse, an image) only once its content is read: a test that
    checks only the status of one left the id set for whatever ran next on that worker."""
    from django.utils import translation

    from stefna.middleware import forget_request

    forget_request()
    # The same for the language: a test-client request activates its language on this
    # thread and leaves it active (a served request runs in a context of its own), so an
    # Indonesian request made code called directly in the next test answer in Indonesian.
    translation.deactivate()


@pytest.fixture(scope="session")
def live_server():
    """pytest-django's live server, but /media/ is answered by Stefna's own view.

    Django's live server answers MEDIA_URL from MEDIA_ROOT itself (its test media handler),
    in front of the app: every photo and result a browser test showed was served without
    asking who may see it. Only that wrapper is dropped; static files are still served."""
    import os

    from django.contrib.staticfiles.handlers import StaticFilesHandler
    from pytest_django.live_server_helper import LiveServer

    server = LiveServer(os.getenv("DJANGO_LIVE_TEST_SERVER_ADDRESS") or "localhost", start=False)
    # LiveServerThread wraps the app as static_handler(_MediaFilesHandler(WSGIHandler())).
    server.thread.static_handler = lambda media_handler: StaticFilesHandler(media_handler.application)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def clear_of_rate_window_end():
    """For a test that counts up to a rate limit: it starts at least 5 s before a window ends.

    Limits count in fixed windows that start on whole multiples of their length
    (stefna/ratelimit.py), and every window in settings is a whole number of minutes, so
    each one ends on a minute. A burst that straddled that end would rightly get a fresh
    allowance in the next window (a CI run's second start landed at 10:50:00.015 and was
    let through). Waiting out a minute's last 5 s keeps the test's hits in one window."""
    left = 60 - time.time() % 60
    if left < 5:
        time.sleep(left + 0.05)


@pytest.fixture(autouse=True)
def _isolated_media_and_cache(request, settings, tmp_path):
    """Every test writes files to its own folder and starts with an empty cache."""
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }
    # The cache is the database's (as in production without Redis): only tests that
    # may touch the database can clear it. Rate-limit counts are rows, rolled back per test.
    uses_db = request.node.get_closest_marker("django_db") or {"db", "transactional_db"} & set(request.fixturenames)
    if uses_db:
        # Set up the test's database access first (as its marker or fixtures ask).
        request.getfixturevalue("_django_db_helper")
        cache.clear()
    # The per-process memo of presets' translated names (presets/selectors.py) holds the
    # rows of the test that filled it: a later test on this worker has presets of its own.
    from generation import first_page
    from presets.selectors import forget_preset_names

    forget_preset_names()
    # Likewise the feed's first page (generation/first_page.py), kept a second per process.
    first_page.kept.clear()
    yield
    if uses_db:
        cache.clear()


@pytest.fixture
def user(db):
    from stefna.accounts.models import User

    return User.objects.create_user(email="ada@example.com", display_name="Ada")


@pytest.fixture
def other_user(db):
    from stefna.accounts.models import User

    return User.objects.create_user(email="grace@example.com", display_name="Grace")


@pytest.fixture
def api_token(user):
    from stefna.accounts.services import api_token_create

    _, plain = api_token_create(user=user, name="tests")
    return plain


@pytest.fixture
def api_client(client, api_token):
    """Django's test client sending the user's API token on every request."""
    client.defaults["HTTP_AUTHORIZATION"] = f"Bearer {api_token}"
    return client


@pytest.fixture
def staff(db):
    """An operator: staff and superuser, as the admin tests need."""
    from stefna.accounts.tests.factories import UserFactory

    return UserFactory(email="operator@example.com", is_staff=True, is_superuser=True)


@pytest.fixture
def staff_client(client, staff):
    """Django's test client signed in as the operator."""
    client.force_login(staff)
    return client


@pytest.fixture
def seeded_presets(transactional_db):
    """The presets the data migration seeds, written again by the migration's own code.

    pytest-django runs transactional tests last, and each one's flush empties every
    table, so a transactional test that needs the seeded presets asks for this. (Not
    serialized_rollback: reloading serialized content types clashes with the ones a
    flush re-creates.)
    """
    import importlib

    from django.apps import apps

    importlib.import_module("presets.migrations.0002_seed_presets").seed(apps, None)
    importlib.import_module("presets.migrations.0004_seed_indonesian_text").fill(apps, None)


@pytest.fixture
def seeded_packs(transactional_db):
    """The credit packs the data migrations seed (and rename), written again by their own
    code, for transactional tests (see `seeded_presets`)."""
    import importlib

    from django.apps import apps

    importlib.import_module("credits.migrations.0004_seed_packs_and_move_grants").seed_packs(apps, None)
    importlib.import_module("credits.migrations.0005_rename_studio_pack").rename_pack(apps, None)


# Fakes of fal and Cloudinary (fixtures `fake_fal`, `fake_cloudinary`; see tests/fakes/pytest_plugin.py).
pytest_plugins = ["tests.fakes.pytest_plugin"]
