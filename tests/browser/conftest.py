"""Playwright fixtures: Debian's Chromium against pytest-django's live server.

The live server runs in this process (a thread) with the locmem email backend, so a
test reads the sign-in code from `django.core.mail.outbox`. Background tasks run in a
real `manage.py db_worker` subprocess pointed at the same test database and media folder.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from django.conf import settings
from django.core import mail

# Debian's headless shell (package chromium-headless-shell) is the build Playwright runs
# headless; it costs a fraction of the full browser's CPU (Makefile). The full browser
# serves where it is all there is.
CHROMIUM = os.environ.get("CHROMIUM_PATH") or next(
    (path for path in ("/usr/bin/chromium-headless-shell", "/usr/bin/chromium") if Path(path).exists()),
    "/usr/bin/chromium-headless-shell",
)
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ROOT = Path(__file__).resolve().parents[2]
# `make screenshots` (STEFNA_SCREENSHOTS=docs) refreshes the README's pictures; an ordinary
# run still takes every screenshot (a page that fails to render fails the test) but keeps
# them out of the work tree.
SCREENSHOTS = (
    ROOT / "docs" / "screenshots"
    if os.environ.get("STEFNA_SCREENSHOTS") == "docs"
    else Path(tempfile.gettempdir()) / "stefna-screenshots"
)
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}


@pytest.fixture(scope="session")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright pip package is not installed")
    if not Path(CHROMIUM).exists():
        pytest.skip(f"Chromium is not installed at {CHROMIUM} (apt-get install chromium-headless-shell)")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser, live_server):
    context = browser.new_context(viewport=DESKTOP, base_url=live_server.url)
    context.set_default_timeout(15_000)
    page = context.new_page()
    # Any CSP violation or script error fails the test: the pages must work under the strict policy.
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on(
        "console",
        lambda message: (
            errors.append(message.text)
            if message.type == "error" and "Content Security Policy" in message.text
            else None
        ),
    )
    yield page
    context.close()
    assert not errors, f"browser errors: {errors}"


def sign_in(page, email: str) -> None:
    """The real flow: ask for a code, read it from the outbox, type it in."""
    mail.outbox.clear()
    page.goto("/accounts/sign-in/")
    page.get_by_label("Email address").fill(email)
    page.get_by_role("button", name="Email me a code").click()
    page.wait_for_url(re.compile(r"/accounts/code/"))
    assert mail.outbox, "no sign-in email was sent"
    match = re.search(r"\b(\d{6})\b", str(mail.outbox[-1].subject))
    assert match, mail.outbox[-1].subject
    code = match.group(1)
    page.get_by_label("Sign-in code").fill(code)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(lambda url: "/accounts/" not in url)


def screenshot(page, name: str, *, full_page: bool = True) -> None:
    """Save <name>-desktop.png and <name>-phone.png of the current page (see SCREENSHOTS)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    original = page.viewport_size
    for label, size in (("desktop", DESKTOP), ("phone", PHONE)):
        page.set_viewport_size(size)
        page.wait_for_timeout(150)  # let the layout settle after the resize
        page.screenshot(path=str(SCREENSHOTS / f"{name}-{label}.png"), full_page=full_page)
    page.set_viewport_size(original)


def _worker_env() -> dict[str, str]:
    database = settings.DATABASES["default"]
    if database["ENGINE"] == "django.db.backends.sqlite3":
        url = f"sqlite:///{database['NAME']}"
    else:
        password = f":{database['PASSWORD']}" if database.get("PASSWORD") else ""
        host = database.get("HOST") or "127.0.0.1"
        port = database.get("PORT") or 5432
        url = f"postgres://{database['USER']}{password}@{host}:{port}/{database['NAME']}"
    return {
        **os.environ,
        "DATABASE_URL": url,
        "SECRET_KEY": settings.SECRET_KEY,
        "MEDIA_ROOT": str(settings.MEDIA_ROOT),
        "FAL_KEY": "",
        "DEBUG": "0",
        "PYTHONUNBUFFERED": "1",
    }


@pytest.fixture
def start_worker(live_server, transactional_db, tmp_path, settings):
    """Start a real `manage.py db_worker` on the test database; the live server can't run tasks.

    Keyword arguments become environment variables of the worker (e.g. slower offline
    timings). The offline provider keeps its job files in a folder both processes share,
    because a cancel in the web process must reach the job the worker is running.
    """
    processes: list[tuple[subprocess.Popen, Path]] = []
    settings.OFFLINE_PROVIDER_DIR = tmp_path / "offline-provider"

    def start(**env: str) -> subprocess.Popen:
        log_path = tmp_path / f"worker-{len(processes)}.log"
        with open(log_path, "wb") as log:
            process = subprocess.Popen(
                [sys.executable, str(ROOT / "manage.py"), "db_worker"],
                cwd=ROOT,
                env={**_worker_env(), "OFFLINE_PROVIDER_DIR": str(settings.OFFLINE_PROVIDER_DIR), **env},
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        processes.append((process, log_path))
        return process

    yield start
    for process, log_path in processes:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        # Shown by pytest only when the test failed: the worker's side of the story.
        print(f"--- {log_path.name} ---\n{log_path.read_text(errors='replace')[-3000:]}")


def wait_until(predicate, *, timeout: float = 30.0, interval: float = 0.2, message: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {message}")


@pytest.fixture(autouse=True)
def _browser_presets(seeded_presets):
    """Every browser test picks from the real seeded styles (see the root conftest's `seeded_presets`)."""
