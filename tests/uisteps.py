"""The page's steps as a user goes through them (Playwright): shared by the browser-mode tests."""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterator
from typing import Any

from playwright.sync_api import expect


def to(page, name: str) -> None:
    """Open a step or a view by its name in the navigation, as a user clicks it."""
    page.get_by_role("navigation").get_by_role("button", name=name, exact=True).click()


def pace(page, delay: str = "0") -> None:
    """Review & send's Pace box opened, the delay between messages set."""
    to(page, "Review & send")
    box = page.locator("#send-settings")
    if not box.evaluate("d => d.open"):
        box.locator("summary").click()
    page.get_by_label("Delay (ms)").fill(delay)


def send(page, delay: str = "0", *, confirm: bool = True) -> None:
    """Review & send, Send, and (confirm) the one confirmation's "Yes, send"."""
    pace(page, delay)
    page.get_by_role("button", name="Send", exact=True).click()
    if confirm:
        page.get_by_role("button", name="Yes, send").click()


def fill_message(page, subject: str, body: str) -> None:
    to(page, "Message")
    page.get_by_label("Subject").fill(subject)
    page.get_by_label("Message", exact=True).fill(body)


def compose_and_send(page, subject: str, body: str, *, confirm: bool = True) -> None:
    fill_message(page, subject, body)
    send(page, confirm=confirm)


def use_custom_server(page, host: str, port: int, security: str = "None", *, test: bool = True) -> None:
    """Account: a custom server, and (test) its connection tested, as Send requires."""
    to(page, "Account")
    page.get_by_label("Provider").select_option(label="Custom server")
    page.get_by_label("Host").fill(host)
    page.get_by_label("Port").fill(str(port))
    page.get_by_label("Security").select_option(label=security)
    page.get_by_label("Username").fill("")
    page.get_by_label("From").fill("me@example.com")
    if test:
        page.get_by_role("button", name="Test connection").click()
        expect(page.locator("#connection-result")).to_contain_text("Connection works", timeout=10_000)


def paste_list(page, text: str) -> None:
    to(page, "Recipients")
    page.get_by_label("Paste addresses").fill(text)
    page.get_by_role("button", name="Use pasted addresses").click()


# -- the browser the UI tests drive ----------------------------------------------------------

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"  # Debian's (.ci/run installs it)
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@contextlib.contextmanager
def chromium(executable: str) -> Iterator[Any]:
    """Debian's chromium under Playwright, for a module's tests."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


@contextlib.contextmanager
def app_page(browser: Any, url: str, *, width: int = 1280, height: int = 800, timeout: float = 20_000,
             grant: tuple[str, ...] = (), **context_options: Any) -> Iterator[Any]:
    """The app's page opened and ready; no page error or console error may happen meanwhile."""
    context = browser.new_context(viewport={"width": width, "height": height}, **context_options)
    if grant:
        context.grant_permissions(list(grant), origin=url.split("/#")[0])
    pg = context.new_page()
    pg.set_default_timeout(timeout)
    errors: list[str] = []
    pg.on("pageerror", lambda exc: errors.append(str(exc)))
    pg.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    pg.goto(url)
    pg.wait_for_selector('body[data-ready="true"]', timeout=10_000)
    yield pg
    context.close()
    assert errors == [], errors
