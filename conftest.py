"""Fixtures shared by every app's tests. App-specific factories live in each app's tests/factories.py."""

from __future__ import annotations

import os
import shutil
import tempfile
import time

import pytest
from django.core.cache import cache

# Where the xdist workers of one run share their migrated template database (see
# `django_db_setup`): a folder the controlling process makes and removes.
TEMPLATE_DIR_ENV = "STEFNA_TEST_DB_TEMPLATE_DIR"


def pytest_configure(config):
    # Only the controlling process of an xdist run (its workers inherit the environment).
    if getattr(config, "workerinput", None) is None and config.getoption("numprocesses", None):
        os.environ[TEMPLATE_DIR_ENV] = tempfile.mkdtemp(prefix="stefna-test-template-")


def pytest_unconfigure(config):
    if getattr(config, "workerinput", None) is None and os.environ.get(TEMPLATE_DIR_ENV):
        shutil.rmtree(os.environ.pop(TEMPLATE_DIR_ENV), ignore_errors=True)


@pytest.fixture(scope="session")
def django_db_setup(
    request,
    django_test_environment,
    django_db_blocker,
    django_db_use_migrations,
    django_db_keepdb,
    django_db_createdb,
    django_db_modify_db_settings,
):
    """The test database: under xdist, migrated once per run and copied for each worker.

    pytest-django has every xdist worker create its database and run all the migrations
    itself. Here the first worker to get there migrates a template and each worker takes
    a copy of it, as Django's own parallel runner does (clone_test_db: CREATE DATABASE …
    TEMPLATE on PostgreSQL, a file copy on SQLite). A migrate of an empty database cost
    7.9 s of CPU on PostgreSQL and 9.9 s on SQLite (7 Dec, `manage.py migrate`, 36 of our
    migrations plus Django's); a copy 0.7 s of wall, almost none of it in Python. At -n 3
    on SQLite, stefna/tests/test_health.py took 42.2 s of CPU before and 25.9 s after (the
    two migrates saved), back to back on the shared machine.

    Anywhere else (one process, --reuse-db, --no-migrations) it is pytest-django's own."""
    import fcntl
    from pathlib import Path

    from django.conf import settings
    from django.db import connection
    from django.test.utils import setup_databases, teardown_databases

    verbosity = request.config.option.verbose
    worker = getattr(request.config, "workerinput", {}).get("workerid")
    shared = os.environ.get(TEMPLATE_DIR_ENV)
    if not (worker and shared and django_db_use_migrations and not django_db_keepdb) or len(settings.DATABASES) != 1:
        # pytest-django's django_db_setup, as it is (no test here uses serialized_rollback).
        from pytest_django.fixtures import _disable_migrations

        if not django_db_use_migrations:
            _disable_migrations()
        keep = {"keepdb": True} if django_db_keepdb and not django_db_createdb else {}
        with django_db_blocker.unblock():
            db_cfg = setup_databases(verbosity=verbosity, interactive=False, **keep)
        yield
        if not django_db_keepdb:
            with django_db_blocker.unblock():
                teardown_databases(db_cfg, verbosity=verbosity)
        return

    old_name = connection.settings_dict["NAME"]
    # pytest-django's xdist fixture has suffixed the test database's name with the
    # worker's id; the template is the database under the name without it, and the
    # worker's copy gets that name back (clone names are "<template>_<suffix>").
    if connection.vendor == "sqlite":
        template = str(Path(shared) / "template.sqlite3")
    else:
        template = connection.creation._get_test_db_name().removesuffix(f"_{worker}")
    connection.settings_dict["TEST"]["NAME"] = template
    ready = Path(shared) / "ready"
    with django_db_blocker.unblock(), open(Path(shared) / "lock", "w") as lock:
        # One worker at a time: the first migrates the template, and PostgreSQL refuses to
        # copy a database someone is connected to.
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if not ready.exists():
                connection.creation.create_test_db(verbosity=verbosity, autoclobber=True)
                if connection.vendor == "sqlite":
                    # WAL mode: the copy is of the main file only, so everything goes into it.
                    with connection.cursor() as cursor:
                        cursor.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                ready.touch()
            connection.settings_dict["NAME"] = template
            connection.creation.clone_test_db(suffix=worker, verbosity=verbosity, autoclobber=True)
            clone = connection.creation.get_test_db_clone_settings(worker)["NAME"]
            # In place, as Django's setup_worker_connection: settings.DATABASES is what
            # the servers and workers a test starts are pointed at (tests/databases.py).
            connection.settings_dict["NAME"] = clone
            settings.DATABASES[connection.alias]["NAME"] = clone
            connection.close()
            if hasattr(connection, "close_pool"):
                connection.close_pool()
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    yield
    with django_db_blocker.unblock():
        if connection.vendor == "postgresql":
            # A server or worker process the worker's last test started may still be
            # closing its connection, and PostgreSQL refuses to drop a database anyone
            # is connected to (seen once: ObjectInUse at teardown). The run is over, so
            # whoever is still there is ended first.
            connection.close()
            with connection._nodb_cursor() as cursor:
                cursor.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
                    [clone],
                )
        # Drops this worker's copy; the template goes with the next run's (or its folder).
        teardown_databases([(connection, old_name, True)], verbosity=verbosity)


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
