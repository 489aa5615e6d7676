"""User management by an admin-role user (not a superuser) in a real browser: create a user
with the operator role, make it a viewer, deactivate it; the user is then locked out."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from core.audit.models import AuditEntry

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

NEW_PASSWORD = "Newbie-pw-2026"


def _log_in(page, username: str, password: str) -> None:
    page.goto("/login/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()


def test_an_admin_manages_a_user_who_is_then_locked_out(
    page, login, make_user, chromium, live_server
):
    admin = make_user("ada", "admin")
    assert not admin.is_superuser
    login(admin)
    page.get_by_role("link", name="Users").click()
    expect(page.get_by_role("heading", name="Users")).to_be_visible()

    # Create: operator role, an initial password, a reason from the page's bar.
    page.locator("#audit-reason").fill("new on-call engineer")
    create = page.get_by_test_id("user-create")
    create.locator("summary").click()
    create.get_by_label("Username").fill("newbie")
    create.get_by_label("operator").check()
    create.get_by_label("Initial password").fill(NEW_PASSWORD)
    create.get_by_role("button", name="Create user").click()
    expect(page.get_by_test_id("user-created")).to_contain_text("newbie")
    row = page.locator('tr[data-username="newbie"]')
    expect(row.get_by_label("operator")).to_be_checked()
    expect(row).to_contain_text("active")
    expect(row).to_contain_text("never")

    # The new user can log in (in a browser of their own).
    other = chromium.new_context(base_url=live_server.url)
    newbie_page = other.new_page()
    _log_in(newbie_page, "newbie", NEW_PASSWORD)
    newbie_page.wait_for_url("**/")
    expect(newbie_page.get_by_title("your roles")).to_contain_text("operator")

    # Change to viewer.
    page.locator("#audit-reason").fill("moved to read-only")
    row.get_by_label("operator").uncheck()
    row.get_by_label("viewer").check()
    row.get_by_role("button", name="Save roles").click()
    expect(page.get_by_role("alert").filter(has_text="newbie now holds viewer")).to_be_visible()
    row = page.locator('tr[data-username="newbie"]')
    expect(row.get_by_label("viewer")).to_be_checked()
    expect(row.get_by_label("operator")).not_to_be_checked()

    # Deactivate (the page asks for confirmation).
    page.locator("#audit-reason").fill("left the team")
    page.on("dialog", lambda dialog: dialog.accept())
    row.get_by_role("button", name="Deactivate").click()
    expect(page.get_by_role("alert").filter(has_text="newbie deactivated")).to_be_visible()
    expect(page.locator('tr[data-username="newbie"]')).to_contain_text("deactivated")
    # No control lets the admin lock themselves out.
    expect(
        page.locator('tr[data-username="ada"]').get_by_role("button", name="Deactivate")
    ).to_have_count(0)

    # The open session ends, and logging in again is refused.
    newbie_page.goto("/")
    newbie_page.wait_for_url("**/login/**")
    _log_in(newbie_page, "newbie", NEW_PASSWORD)
    expect(newbie_page.get_by_role("alert")).to_contain_text("Wrong username or password")
    assert "/login/" in newbie_page.url
    other.close()

    entries = AuditEntry.objects.filter(object_name="newbie", action__startswith="user_")
    assert [(e.action, e.reason, e.actor) for e in entries.order_by("seq")] == [
        ("user_create", "new on-call engineer", "ada"),
        ("user_roles", "moved to read-only", "ada"),
        ("user_deactivate", "left the team", "ada"),
    ]
    assert page.js_errors == []
