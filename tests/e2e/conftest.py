"""Browser tests: pytest-django's live server driven by Playwright with Debian's Chromium.

Playwright never downloads a browser here: it drives Debian's /usr/bin/chromium
(Chromium 156 matches playwright 1.64.1). Playwright's sync API runs an event loop in this thread, which trips
Django's async-safety check for ORM calls made by the test itself, hence
DJANGO_ALLOW_ASYNC_UNSAFE. The test database is a file (not SQLite's in-memory default)
so a Celery worker process can share it with the live server.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "1")

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SCREENSHOTS = Path(__file__).with_name("screenshots")
PASSWORD = "pw-Rampart-123"


def pytest_collection_modifyitems(items):
    for item in items:
        if "tests/e2e/" in str(item.fspath):
            item.add_marker(pytest.mark.e2e)


@pytest.fixture(autouse=True)
def role_groups(transactional_db) -> None:
    """The role groups come from a data migration, which a transactional test's flush empties."""
    from django.contrib.auth.models import Group

    from core.accounts import roles

    for name in roles.ALL:
        Group.objects.get_or_create(name=name)


@pytest.fixture(scope="session")
def chromium():
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium); browser tests need it")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(chromium, live_server) -> Iterator:
    context = chromium.new_context(
        viewport={"width": 1440, "height": 900}, base_url=live_server.url
    )
    context.set_default_timeout(15_000)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.js_errors = errors  # type: ignore[attr-defined]
    yield page
    context.close()


@pytest.fixture
def login(page):
    """Log in through the form, as a user holding `role`."""

    def do(user) -> None:
        page.goto("/login/")
        page.get_by_label("Username").fill(user.username)
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Log in").click()
        page.wait_for_url("**/")

    return do


def shot(page, name: str) -> Path:
    """Save a full-page screenshot under tests/e2e/screenshots/ (gitignored)."""
    SCREENSHOTS.mkdir(exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
