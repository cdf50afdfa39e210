"""The whole UI in a real browser (Debian's chromium driven by Playwright) in browser mode."""

from __future__ import annotations

import csv
import email
import email.policy
import io
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.uisteps import (
    CHROMIUM,
    app_page,
    chromium,
    compose_and_send,
    fill_message,
    pace,
    paste_list,
    send,
    to,
    use_custom_server,
)

sync_api = pytest.importorskip("playwright.sync_api")
if not Path(CHROMIUM).exists():
    pytest.skip("Debian's chromium is not installed (.ci/run installs it)", allow_module_level=True)

XSS_NAME = '<img src=x onerror="window.__xss=1">'


@pytest.fixture(scope="module")
def browser():
    with chromium(CHROMIUM) as b:
        yield b


@pytest.fixture
def app(web_app):
    return web_app


@pytest.fixture
def page(browser, app):
    with app_page(browser, app[0].url, width=1400, height=1000, timeout=30_000, accept_downloads=True) as pg:
        yield pg


def write_people(tmp_path: Path, rows: list[tuple[str, str]]) -> Path:
    path = tmp_path / "people.csv"
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["email", "name"])
    w.writerows(rows)
    path.write_text(buf.getvalue(), encoding="utf-8")
    return path


def test_local_inbox_campaign_from_the_form(page, app, tmp_path):
    _, inbox = app
    expect = sync_api.expect
    # first start: the local test inbox is the account
    expect(page.get_by_label("Provider")).to_have_value("local-inbox")
    page.get_by_label("From").fill("Me <me@example.com>")
    people = write_people(tmp_path, [("ann@example.org", "Ann"), ("bob@example.org", XSS_NAME),
                                     ("not-an-address", "X"), ("ANN@example.org", "dup")])
    to(page, "Recipients")
    page.get_by_label("Recipients file").set_input_files(str(people))
    expect(page.locator("#recipients-summary")).to_contain_text("2 valid")
    expect(page.locator("#rejected-list")).to_contain_text("line 4", ignore_case=True)
    expect(page.locator("#duplicates-list")).to_contain_text("line 5", ignore_case=True)
    expect(page.locator("#recipients-table")).to_contain_text(XSS_NAME)  # shown as text
    compose_and_send(page, "Hello {{ name }}", "<p>Hi <b>{{ name }}</b></p>")
    expect(page.locator('#log tr[data-status="sent"]')).to_have_count(2, timeout=15_000)
    expect(page.locator("#summary")).to_contain_text("2")
    assert page.evaluate("window.__xss") is None
    assert sorted(m.rcpt_tos for m in inbox.messages()) == [("ann@example.org",), ("bob@example.org",)]
    # the inbox section shows what arrived, opened as text/sandboxed HTML
    to(page, "Local test inbox")
    page.get_by_role("button", name="Refresh", exact=True).click()
    expect(page.locator("#inbox-list")).to_contain_text("Hello Ann")
    # export results
    to(page, "Review & send")
    with page.expect_download() as dl:
        page.get_by_role("button", name="Export results").click()
    rows = list(csv.DictReader(io.StringIO(Path(dl.value.path()).read_text(encoding="utf-8"))))
    assert [(r["line"], r["email"], r["status"]) for r in rows] == [
        ("2", "ann@example.org", "sent"), ("3", "bob@example.org", "sent"), ("4", "not-an-address", "skipped"),
        ("5", "ANN@example.org", "skipped")]
    assert rows[3]["error"] == "duplicate of line 2: sent once, for that line"


def test_real_smtp_server_with_failures_and_fix_steps(page, smtp_server, tmp_path):
    server = smtp_server("plain", auth=False)
    expect = sync_api.expect
    use_custom_server(page, server.host, server.port)
    page.get_by_role("button", name="Test connection").click()
    expect(page.locator("#connection-result")).to_contain_text("ehlo", ignore_case=True, timeout=10_000)
    paste_list(page, "a@example.org\nreject550@example.org\nc@example.org")
    expect(page.locator("#recipients-summary")).to_contain_text("3 valid")
    compose_and_send(page, "Hi", "Plain body")
    expect(page.locator('#log tr[data-status="sent"]')).to_have_count(2, timeout=15_000)
    failed = page.locator('#log tr[data-status="failed"]')
    expect(failed).to_have_count(1)
    expect(failed).to_contain_text("reject550@example.org")
    expect(failed).to_contain_text("Recipient refused")
    failed.get_by_role("button", name="How to fix").click()
    expect(page.locator("#log")).to_contain_text("Check the address for typos")
    page.get_by_label("Failed only").check()
    expect(page.locator('#log tr[data-status="sent"]:visible')).to_have_count(0)
    assert [m.rcpt_tos for m in server.messages] == [["a@example.org"], ["c@example.org"]]


def test_connection_failure_shows_category_cause_and_fix(page, tmp_path):
    expect = sync_api.expect
    page.get_by_label("Provider").select_option(label="Custom server")
    page.get_by_label("Host").fill("127.0.0.1")
    page.get_by_label("Port").fill("1")
    page.get_by_label("Security").select_option(label="STARTTLS")
    page.get_by_role("button", name="Test connection").click()
    result = page.locator("#connection-result")
    expect(result).to_contain_text("Connection refused", timeout=10_000)
    expect(result).to_contain_text("587")


def test_every_control_is_labelled_and_reachable_by_keyboard(page):
    unlabelled = page.evaluate("""Array.from(document.querySelectorAll('input, select, textarea'))
        .filter(el => el.type !== 'hidden' && el.labels.length === 0).map(el => el.id || el.name)""")
    assert unlabelled == []
    # Tab from the top of a fresh page: the step list, then Account's fields in order, then Next
    def tabs(n: int) -> list[str]:
        order = []
        for _ in range(n):
            page.keyboard.press("Tab")
            order.append(page.evaluate("document.activeElement.id || document.activeElement.className"))
        return order

    def before(order: list[str], *ids: str) -> None:
        assert all(i in order for i in ids), (ids, order)
        assert [order.index(i) for i in ids] == sorted(order.index(i) for i in ids), (ids, order)

    order = tabs(45)
    before(order, "nav-account", "nav-review", "nav-history", "provider", "host", "test-connection")
    assert "step-next primary" in order[order.index("test-connection"):]
    # Next with the keyboard: Recipients, its heading focused, then its fields
    page.get_by_role("button", name="Next: Recipients").focus()
    page.keyboard.press("Enter")
    expect = sync_api.expect
    expect(page.get_by_role("heading", name="Recipients")).to_be_focused()
    before(tabs(6), "paste", "use-paste", "import-file")
    # Alt+Right and Alt+Left move between steps; Alt+4 jumps to Review & send
    page.keyboard.press("Alt+ArrowRight")
    expect(page.get_by_role("heading", name="Message", exact=True)).to_be_focused()
    before(tabs(8), "subject", "message")
    page.keyboard.press("Alt+ArrowLeft")
    expect(page.get_by_role("heading", name="Recipients")).to_be_focused()
    page.keyboard.press("Alt+4")
    expect(page.get_by_role("heading", name="Review & send")).to_be_focused()
    expect(page.locator("#nav-review")).to_have_attribute("aria-current", "step")
    # Send is there, disabled until the checklist is done (no list yet)
    expect(page.get_by_role("button", name="Send", exact=True)).to_be_disabled()
    expect(page.locator("#review-checklist")).to_contain_text("Add recipients")


def test_import_warnings_are_shown(page, tmp_path):
    people = tmp_path / "latin.csv"
    people.write_bytes(b"email,name\na@example.org,J\xc3\xb6rg\nb@example.org,Ren\xe9\n")
    to(page, "Recipients")
    page.get_by_label("Recipients file").set_input_files(str(people))
    sync_api.expect(page.locator("#recipients-summary")).to_contain_text("Warning: line 3", ignore_case=True)


def test_launch_page_leads_to_the_app_and_a_dropped_file_is_imported(browser, app, tmp_path):
    webapp, _ = app
    context = browser.new_context()
    pg = context.new_page()
    launch = webapp.launch_page(tmp_path / "launch")  # what the browser is opened on
    pg.goto(launch.as_uri())
    pg.wait_for_selector('body[data-ready="true"]', timeout=10_000)
    assert "code=" not in pg.url and not launch.exists()  # the code was swapped, the page deleted
    pg.evaluate("""() => {
        const dt = new DataTransfer();
        dt.items.add(new File(['email,name\\ndrop@example.org,Drop\\n'], 'dropped.csv', {type: 'text/csv'}));
        window.dispatchEvent(new DragEvent('drop', {dataTransfer: dt, bubbles: true, cancelable: true}));
    }""")
    sync_api.expect(pg.locator("#recipients-summary")).to_contain_text("1 valid", timeout=10_000)
    assert pg.url.startswith(f"http://127.0.0.1:{webapp.port}/")  # still the app, not the file
    context.close()


def test_a_failed_run_does_not_look_finished(page, smtp_server):
    expect = sync_api.expect
    server = smtp_server("plain", auth=False)
    use_custom_server(page, server.host, server.port)  # tested: Send needs a tested account
    paste_list(page, "a@example.org\nb@example.org")
    expect(page.locator("#recipients-summary")).to_contain_text("2 valid")
    fill_message(page, "Hi", "Body")
    server.stop()  # ... and the server goes away before the run
    send(page)
    state = page.locator("#send-state")
    expect(state).to_have_text(f"Failed: Connection refused — 127.0.0.1:{server.port}: connection refused",
                               timeout=10_000)
    progress = page.locator("#progress")
    assert page.evaluate("document.querySelector('#progress').value") == 0
    expect(progress).to_have_attribute("aria-valuetext", "0 of 2, 2 not sent")
    expect(page.locator("#counts")).not_to_contain_text("done")
    summary = page.locator("#summary")
    expect(summary.locator("h3")).to_have_text("Run failed")
    # the error with its fix steps comes first in the summary
    expect(summary.locator(".error-box .fix-steps li").first).to_contain_text("Check the port")
    expect(summary).to_contain_text("Not sent 2")
    expect(summary).to_contain_text("Took under 1 s.")
    for text in (summary, page.locator("#counts")):
        expect(text).not_to_contain_text("Skipped")
    expect(page.locator("#log-empty")).to_contain_text("Nothing was sent: the run failed")
    expect(page.locator("#log-scroll")).to_be_hidden()
    # focus came back to Send, not to <body>
    assert page.evaluate("document.activeElement.id") == "send"


def test_sending_the_same_list_again_asks_first_but_not_after_a_practice_run(page, app, smtp_server):
    _, inbox = app
    server = smtp_server("plain", auth=False)
    expect = sync_api.expect
    page.get_by_label("From").fill("me@example.com")
    paste_list(page, "a@example.org\nb@example.org\nreject550@example.org")
    # a practice run into the local test inbox, then the real send: no question
    compose_and_send(page, "Hi", "Once")
    expect(page.locator("#send-state")).to_have_text("Finished: 3 sent.", timeout=10_000)
    assert len(inbox.messages()) == 3
    use_custom_server(page, server.host, server.port)
    send(page)  # no question but the one confirmation
    expect(page.locator("#send-state")).to_contain_text("Finished: 2 sent", timeout=10_000)
    send_button = page.get_by_role("button", name="Send", exact=True)
    assert len(server.messages) == 2  # reject550 refused
    confirm = page.locator("#resend-confirm")
    expect(confirm).to_have_count(0)
    # the second real send asks, the safe choice focused
    send_button.click()
    expect(confirm).to_be_visible()
    expect(confirm).to_contain_text("This list was already sent through this account")
    expect(confirm).to_contain_text(f"Send 3 messages through {server.host} as me@example.com?")
    expect(confirm).to_contain_text("1 recipient of this list did not get it yet")
    cancel = confirm.get_by_role("button", name="Cancel")
    expect(cancel).to_be_focused()
    page.keyboard.press("Enter")  # Cancel: nothing is sent
    expect(confirm).to_have_count(0)
    expect(send_button).to_be_focused()
    assert len(server.messages) == 2
    send_button.click()
    expect(cancel).to_be_focused()  # the core is asked first: the question comes after its answer
    page.keyboard.press("Escape")
    expect(confirm).to_have_count(0)
    # only those not yet sent: a and b do not get it twice
    send_button.click()
    confirm.get_by_role("button", name="Send only to those not yet sent").click()
    expect(page.locator("#send-state")).to_contain_text("Finished: 0 sent", timeout=10_000)
    assert [m.rcpt_tos for m in server.messages] == [["a@example.org"], ["b@example.org"]]
    # everyone again
    send_button.click()
    confirm.get_by_role("button", name="Send to everyone again").click()
    for _ in range(100):
        if len(server.messages) == 4:
            break
        page.wait_for_timeout(100)
    assert len(server.messages) == 4


def test_switching_provider_resets_the_server_fields_and_the_connection_result(page):
    expect = sync_api.expect
    expect(page.get_by_label("Provider")).to_have_value("local-inbox")
    page.get_by_role("button", name="Test connection").click()
    result = page.locator("#connection-result")
    expect(result).to_contain_text("Connection works", timeout=10_000)
    page.get_by_label("Provider").select_option(label="Custom server")
    expect(page.get_by_label("Host")).to_have_value("")
    expect(page.get_by_label("Port")).to_have_value("587")
    expect(page.get_by_label("Security")).to_have_value("starttls")
    expect(result).to_be_empty()
    page.get_by_label("Host").fill("127.0.0.1")
    page.get_by_label("Port").fill("1")
    page.get_by_role("button", name="Test connection").click()
    expect(result).to_contain_text("Connection failed", timeout=10_000)
    page.get_by_label("Provider").select_option("gmail")
    expect(page.get_by_label("Host")).to_have_value("smtp.gmail.com")
    expect(page.get_by_label("Port")).to_have_value("587")
    expect(page.get_by_label("Security")).to_have_value("starttls")
    expect(result).to_be_empty()
    page.get_by_label("Provider").select_option(label="Custom server")
    expect(page.get_by_label("Host")).to_have_value("")


def test_an_empty_field_is_a_warning_before_sending(page, app):
    _, inbox = app
    expect = sync_api.expect
    page.get_by_label("From").fill("me@example.com")
    paste_list(page, "email,name\nann@example.org,Ann\nbob@example.org,\ncy@example.org,\n")
    fill_message(page, "Hi {{ name }}", "<p>Hello {{ name }}</p>")
    to(page, "Review & send")
    warning = page.locator('#review-warnings [data-kind="empty_field"]')
    expect(warning).to_contain_text(
        '2 recipients have an empty name (lines 3, 4): use a default, e.g. {{ name | default("there") }}, or skip them')
    # Skip them: the confirmation counts one message, and only Ann gets it
    warning.get_by_role("button", name="Skip them").click()
    expect(warning).to_contain_text("2 recipients have an empty name: left out, as you chose")
    page.get_by_role("button", name="Send", exact=True).click()
    expect(page.locator("#send-confirm")).to_contain_text("Send 1 message through the local test inbox as me@example.com?")
    page.get_by_role("button", name="Yes, send").click()
    expect(page.locator("#send-state")).to_have_text("Finished: 1 sent.", timeout=10_000)
    assert [m.rcpt_tos for m in inbox.messages()] == [("ann@example.org",)]
    # Send to them too, then the default fix: Subject and Message get it, the warning goes
    warning.get_by_role("button", name="Send to them too").click()
    warning.get_by_role("button", name=re.compile("Use a default")).click()
    expect(warning).to_have_count(0)
    to(page, "Message")
    expect(page.get_by_label("Subject")).to_have_value('Hi {{ name | default("there") }}')
    expect(page.get_by_label("Message", exact=True)).to_have_value('<p>Hello {{ name | default("there") }}</p>')
    send(page)
    wait_for_messages(page, inbox, 4)
    assert sorted(m["Subject"] for m in received(inbox)) == ["Hi Ann", "Hi Ann", "Hi there", "Hi there"]


def test_field_chips_insert_at_the_cursor(page):
    expect = sync_api.expect
    paste_list(page, "email,first_name,city\na@example.org,Ann,Oslo")
    expect(page.locator("#recipients-summary")).to_contain_text("1 valid address")
    to(page, "Message")
    subject = page.get_by_label("Subject")
    subject.fill("Hello !")
    subject.focus()
    page.keyboard.press("End")
    page.keyboard.press("ArrowLeft")  # cursor before the "!"
    chips = page.get_by_role("group", name="Insert a field")
    expect(chips.get_by_role("button")).to_have_text(["{{ email }}", "{{ first_name }}", "{{ city }}"])
    chips.get_by_role("button", name="{{ first_name }}").click()
    expect(subject).to_have_value("Hello {{ first_name }}!")
    expect(subject).to_be_focused()
    # the Message is the default target, and the last focused of the two wins
    message = page.get_by_label("Message", exact=True)
    message.fill("Dear ")
    chips.get_by_role("button", name="{{ city }}").click()
    expect(message).to_have_value("Dear {{ city }}")
    expect(message).to_be_focused()
    # with the keyboard: Tab to a chip, Enter
    chips.get_by_role("button", name="{{ first_name }}").focus()
    page.keyboard.press("Enter")
    expect(message).to_have_value("Dear {{ city }}{{ first_name }}")


def test_focus_returns_to_the_button_and_inbox_buttons_have_names(page, app):
    expect = sync_api.expect
    page.get_by_label("From").fill("me@example.com")
    paste_list(page, "email,name\na@example.org,Ann\nb@example.org,Bob")
    expect(page.locator("#recipients-summary")).to_contain_text("2 valid")
    expect(page.get_by_role("button", name="Use pasted addresses")).to_be_focused()
    fill_message(page, "Hi {{ name }}", "Body")
    page.get_by_role("button", name="Preview", exact=True).click()
    expect(page.locator("#compose-status")).to_contain_text("Preview of recipient 1 of 2")
    expect(page.get_by_role("button", name="Preview", exact=True)).to_be_focused()
    send(page)
    expect(page.locator("#send-state")).to_have_text("Finished: 2 sent.", timeout=10_000)
    expect(page.get_by_role("button", name="Send", exact=True)).to_be_focused()
    to(page, "Local test inbox")
    page.get_by_role("button", name="Refresh", exact=True).click()
    expect(page.locator("#inbox-list tr")).to_have_count(2)
    expect(page.get_by_role("button", name="Refresh", exact=True)).to_be_focused()
    names = page.locator("#inbox-list button").evaluate_all("bs => bs.map(b => b.getAttribute('aria-label'))")
    assert sorted(names) == ["Open message: Hi Ann, sent by me@example.com to a@example.org",
                             "Open message: Hi Bob, sent by me@example.com to b@example.org"]
    opener = page.get_by_role("button", name="Open message: Hi Bob")
    opener.click()
    expect(page.locator("#inbox-view")).to_contain_text("Hi Bob")
    expect(opener).to_be_focused()
    page.get_by_role("button", name="Close message").click()
    expect(opener).to_be_focused()


def test_wording_counts_and_grouped_problems(page, smtp_server):
    expect = sync_api.expect
    server = smtp_server("plain", auth=False)
    use_custom_server(page, server.host, server.port)
    page.get_by_role("button", name="Test connection").click()
    result = page.locator("#connection-result")
    expect(result).to_contain_text("Connection works, with no encryption.", timeout=10_000)
    ehlo = result.locator('li[data-step="ehlo"] .step-detail')
    expect(ehlo).to_contain_text("Server features: 8BITMIME, SIZE 33554432")  # words, not "8bitmime help"
    assert "help" not in ehlo.inner_text().lower()
    expect(result).not_to_contain_text("None")  # Security None reads "no encryption" in sentences
    paste_list(page, "email,name\na@example.org,A\nb@example.org,B\nbad,X\nb@example.org,B\n"
                     "c@example.org,C\nd@example.org,D")
    summary = page.locator("#recipients-summary")
    expect(summary).to_contain_text("4 valid addresses · 1 invalid · 1 duplicate")
    assert summary.inner_text().count("duplicate") == 1  # the counts are said once, not twice
    # every row has the same mistake: one line, its rows listed compactly
    compose_and_send(page, "Hi {{ nmae }}", "Body", confirm=False)
    problems = page.locator("#send-status .problems li")
    expect(problems).to_have_count(1)
    expect(problems).to_contain_text("Lines 2, 3, 6 and 7:")
    expect(page.locator("#send-status")).to_contain_text("Not started: 4 messages cannot be built (1 problem).")
    paste_list(page, "a@example.org")
    expect(summary).to_contain_text("1 valid address ·")
    compose_and_send(page, "Hi", "Body")
    expect(page.locator("#send-state")).to_have_text("Finished: 1 sent.", timeout=10_000)
    expect(page.locator("#summary")).to_contain_text("1 recipient: Sent 1 · Failed 0")
    expect(page.locator("#summary")).to_contain_text("Took under 1 s.")
    page.get_by_label("Failed only").check()
    expect(page.locator("#log-empty")).to_have_text("No failed recipients.")
    expect(page.locator("#log-scroll")).to_be_hidden()
    page.get_by_label("Failed only").uncheck()
    expect(page.locator("#log-scroll")).to_be_visible()


def test_from_address_offers_settings_and_log_folder_is_shown(page, isolated_home):
    expect = sync_api.expect
    page.get_by_label("Provider").select_option(label="Custom server")
    page.get_by_label("From").fill("Me <me@gmail.com>")
    page.get_by_label("From").press("Tab")
    box = page.locator("#from-suggestion")
    expect(box).to_contain_text("smtp.gmail.com", timeout=10_000)
    expect(box).to_contain_text("Gmail address")
    page.get_by_role("button", name="Use these settings").click()
    expect(page.get_by_label("Provider")).to_have_value("gmail")
    expect(page.get_by_label("Host")).to_have_value("smtp.gmail.com")
    expect(page.get_by_label("Port")).to_have_value("587")
    page.get_by_role("button", name="Open log folder").click()
    expect(page.locator("#connection-result")).to_contain_text(str(isolated_home / "logs"))


def test_sender_check_from_the_window(page, smtp_server):
    server = smtp_server("plain", auth=False)
    expect = sync_api.expect
    page.get_by_label("Provider").select_option(label="Custom server")
    page.get_by_label("Host").fill(server.host)
    page.get_by_label("Port").fill(str(server.port))
    page.get_by_label("Security").select_option(label="None")
    page.get_by_label("From").fill("blocked@example.com")
    page.locator("#advanced summary").click()
    page.get_by_label("Also check the sender address").check()
    page.get_by_role("button", name="Test connection").click()
    result = page.locator("#connection-result")
    expect(result).to_contain_text("Sender address refused", timeout=10_000)
    expect(result).to_contain_text("550")


# -- mail merge: attachments, unsubscribe, suppression, templates, skipping rows ----------------


def prepare_run(page, addresses: str, subject: str) -> None:
    """From, a pasted list and a plain message: ready for Send."""
    to(page, "Account")
    page.get_by_label("From").fill("me@example.com")
    paste_list(page, addresses)
    fill_message(page, subject, "Hello")


def received(inbox) -> list[email.message.EmailMessage]:
    return [email.message_from_bytes(m.data, policy=email.policy.default) for m in inbox.messages()]


def wait_for_messages(page, inbox, n: int) -> None:
    for _ in range(100):
        if len(inbox.messages()) >= n:
            return
        page.wait_for_timeout(100)
    assert len(inbox.messages()) == n


def test_attachments_for_everyone_are_listed_previewed_sent_and_removable(
    isolated_home, page, app, tmp_path
):
    _, inbox = app
    expect = sync_api.expect
    page.get_by_label("From").fill("me@example.com")
    paste_list(page, "a@example.org")
    expect(page.locator("#recipients-summary")).to_contain_text("1 valid address")
    report = tmp_path / "report.txt"
    report.write_text("quarterly numbers\n", encoding="utf-8")
    photo = tmp_path / "photo.png"
    photo.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(3000))
    to(page, "Message")
    page.get_by_label("Attachment files").set_input_files([str(report), str(photo)])
    items = page.locator("#attachments-list li")
    expect(items).to_have_count(2)
    expect(items.nth(0)).to_contain_text("report.txt")
    expect(items.nth(1)).to_contain_text("photo.png")
    expect(items.nth(1)).to_contain_text("2.9 KB")
    expect(page.locator("#attachments-total")).to_have_text("2 files for everyone, 3 KB in all.")
    expect(page.locator("#attachments-warning")).to_be_hidden()
    # the preview lists what goes with the message
    fill_message(page, "Numbers", "<p>Attached.</p>")
    page.get_by_role("button", name="Preview").click()
    area = page.locator("#preview-area")
    expect(area).to_contain_text("Attachments (2 files")
    expect(area).to_contain_text("photo.png")
    # Remove names its file; focus moves to the next file's Remove, then to "Add attachments..."
    page.get_by_role("button", name="Remove report.txt").click()
    expect(items).to_have_count(1)
    expect(page.get_by_role("button", name="Remove photo.png")).to_be_focused()
    page.keyboard.press("Enter")
    expect(items).to_have_count(0)
    expect(page.locator("#attachments-total")).to_have_text("No files attached.")
    expect(page.get_by_role("button", name="Add attachments...")).to_be_focused()
    # over 10 MB in all: a warning
    big = tmp_path / "big.bin"
    big.write_bytes(bytes(11 * 1024 * 1024))
    page.get_by_label("Attachment files").set_input_files([str(report), str(big)])
    expect(items).to_have_count(2, timeout=20_000)
    expect(page.locator("#attachments-warning")).to_be_visible()
    expect(page.locator("#attachments-warning")).to_contain_text("add up to 11 MB")
    page.get_by_role("button", name="Remove big.bin").click()
    expect(page.locator("#attachments-warning")).to_be_hidden()
    send(page)
    expect(page.locator("#send-state")).to_have_text("Finished: 1 sent.", timeout=10_000)
    [msg] = received(inbox)
    files = [(part.get_filename(), part.get_content()) for part in msg.iter_attachments()]
    assert files == [("report.txt", "quarterly numbers\n")]


def test_unsubscribe_link_is_checked_previewed_and_sent(isolated_home, page, app):
    _, inbox = app
    expect = sync_api.expect
    page.get_by_label("From").fill("me@example.com")
    paste_list(page, "a@example.org")
    fill_message(page, "Hi", "Body")
    unsubscribe = page.get_by_label("Unsubscribe link")
    unsubscribe.fill("http://example.com/u")
    expect(page.locator("#unsubscribe-check")).to_contain_text("https://")
    unsubscribe.fill("https://example.com/u?e={{ email }}, mailto:unsub@example.com")
    expect(page.locator("#unsubscribe-check")).to_be_hidden()
    page.get_by_role("button", name="Preview").click()
    headers = page.locator("#preview-area dl.headers")
    expect(headers).to_contain_text("List-Unsubscribe")
    expect(headers).to_contain_text(re.compile(r"https://example\.com/u\?e=a(@|%40)example\.org"))
    expect(headers).to_contain_text("mailto:unsub@example.com")
    send(page)
    expect(page.locator("#send-state")).to_have_text("Finished: 1 sent.", timeout=10_000)
    [msg] = received(inbox)
    assert "<mailto:unsub@example.com>" in msg["List-Unsubscribe"]
    assert re.search(r"<https://example\.com/u\?e=a(@|%40)example\.org>", msg["List-Unsubscribe"])
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"


def test_suppression_list_is_kept_applied_and_editable(isolated_home, page, app):
    _, inbox = app
    expect = sync_api.expect
    page.get_by_label("From").fill("me@example.com")
    paste_list(page, "a@example.org\nb@example.org")
    summary = page.locator("#recipients-summary")
    expect(summary).to_contain_text("2 valid addresses")
    expect(summary).not_to_contain_text("never mailed")
    to(page, "Suppression list")
    count = page.locator("#suppression-count")
    expect(count).to_contain_text("The list is empty")
    page.get_by_label("Addresses never to mail").fill("b@example.org\nnot-an-address")
    page.get_by_role("button", name="Add to suppression list").click()
    status = page.locator("#suppression-status")
    expect(status).to_contain_text("Added 1 address.")
    expect(status.locator(".issue-list")).to_contain_text("not-an-address")
    # what was not added stays in the box to be corrected
    expect(page.get_by_label("Addresses never to mail")).to_have_value("not-an-address")
    expect(count).to_have_text("1 address never to be mailed.")
    expect(page.locator("#suppression-entries")).to_contain_text("b@example.org")
    expect(page.locator("#suppression-entries")).to_contain_text("added by hand")
    # the recipients preview was read again: b is counted and listed as never mailed
    expect(summary).to_contain_text("1 never mailed (suppression list)")
    to(page, "Recipients")
    expect(page.locator("#suppressed-block")).to_be_visible()
    expect(page.locator("#suppressed-list")).to_contain_text("Line 2: b@example.org")
    compose_and_send(page, "Hi", "Body")
    expect(page.locator("#send-state")).to_contain_text("Finished: 1 sent", timeout=10_000)
    assert [m.rcpt_tos for m in inbox.messages()] == [("a@example.org",)]
    # Remove takes it off; focus goes to the box (no other entry is left)
    to(page, "Suppression list")
    page.get_by_role("button", name="Remove b@example.org").click()
    expect(count).to_contain_text("The list is empty")
    expect(page.get_by_label("Addresses never to mail")).to_be_focused()
    expect(summary).not_to_contain_text("never mailed")
    to(page, "Recipients")
    expect(page.locator("#suppressed-block")).to_be_hidden()


def test_templates_save_replace_load_rename_export_delete_import(isolated_home, page, tmp_path):
    expect = sync_api.expect
    to(page, "Templates")
    select = page.get_by_label("Saved templates")
    status = page.locator("#templates-status")
    load = page.get_by_role("button", name="Load", exact=True)
    expect(select).to_have_value("")
    expect(load).to_be_disabled()
    fill_message(page, "Welcome {{ name }}", "<p>Hello</p>")
    page.get_by_label("Unsubscribe link").fill("mailto:unsub@example.com")
    to(page, "Templates")
    page.get_by_role("button", name="Save as...").click()
    name = page.get_by_label("Template name")
    expect(name).to_be_focused()
    name.fill("Welcome")
    page.get_by_role("button", name="Save", exact=True).click()
    expect(status).to_have_text("Saved “Welcome”.")
    expect(select).to_have_value("Welcome")
    expect(page.locator("#template-name-row")).to_be_hidden()
    expect(select).to_be_focused()
    expect(load).to_be_enabled()
    # the same name again: asked inline, the safe answer has focus; Replace overwrites
    to(page, "Message")
    page.get_by_label("Subject").fill("Welcome again")
    to(page, "Templates")
    page.get_by_role("button", name="Save as...").click()
    expect(name).to_have_value("Welcome")
    name.press("Enter")
    confirm = page.get_by_role("group", name="A template named “Welcome” already exists. Replace it?")
    expect(confirm.get_by_role("button", name="Keep the saved one")).to_be_focused()
    confirm.get_by_role("button", name="Replace").click()
    expect(status).to_have_text("Saved “Welcome”.")
    # Load fills Subject, Message, Format and Unsubscribe link
    fill_message(page, "something else", "else")
    page.get_by_label("Unsubscribe link").fill("")
    page.locator("#format-text").check()
    to(page, "Templates")
    load.click()
    expect(status).to_contain_text("Loaded “Welcome”.")
    expect(load).to_be_focused()
    status.get_by_role("button", name="Go to Message").click()
    expect(page.get_by_label("Subject")).to_have_value("Welcome again")
    expect(page.get_by_label("Message", exact=True)).to_have_value("<p>Hello</p>")
    expect(page.locator("#format-html")).to_be_checked()
    expect(page.get_by_label("Unsubscribe link")).to_have_value("mailto:unsub@example.com")
    to(page, "Templates")
    # Rename uses the Template name field
    rename = page.get_by_role("button", name="Rename", exact=True)
    rename.click()
    expect(name).to_be_focused()
    expect(name).to_have_value("Welcome")
    name.fill("Onboarding")
    name.press("Enter")
    expect(status).to_have_text("Renamed “Welcome” to “Onboarding”.")
    expect(select).to_have_value("Onboarding")
    expect(rename).to_be_focused()
    # Export... downloads the template as a file
    with page.expect_download() as dl:
        page.get_by_role("button", name="Export...").click()
    exported = Path(dl.value.path()).read_text(encoding="utf-8")
    assert "Onboarding" in exported and "Welcome again" in exported
    expect(status).to_contain_text("Downloaded")
    # Delete asks inline; Escape keeps, "Delete template" deletes
    delete = page.get_by_role("button", name="Delete", exact=True)
    delete.click()
    confirm = page.get_by_role("group", name="Delete the template “Onboarding”? This cannot be undone.")
    expect(confirm.get_by_role("button", name="Keep template")).to_be_focused()
    page.keyboard.press("Escape")
    expect(confirm).to_have_count(0)
    expect(delete).to_be_focused()
    delete.click()
    confirm.get_by_role("button", name="Delete template").click()
    expect(status).to_have_text("Deleted “Onboarding”.")
    expect(select).to_have_value("")
    expect(select).to_be_focused()
    expect(delete).to_be_disabled()
    # Import... reads the exported file back; a second import asks before replacing
    saved = tmp_path / (dl.value.suggested_filename or "onboarding.json")
    saved.write_text(exported, encoding="utf-8")
    page.get_by_label("Template file").set_input_files(str(saved))
    expect(status).to_contain_text("Imported “Onboarding”.")
    expect(select).to_have_value("Onboarding")
    page.get_by_label("Template file").set_input_files(str(saved))
    confirm = page.get_by_role("group", name=re.compile("Replace it with the imported one"))
    expect(confirm.get_by_role("button", name="Keep the saved one")).to_be_focused()
    confirm.get_by_role("button", name="Replace").click()
    expect(status).to_contain_text("Imported “Onboarding”.")


def test_rows_that_cannot_be_built_can_be_skipped(isolated_home, page, app, tmp_path):
    _, inbox = app
    expect = sync_api.expect
    page.get_by_label("From").fill("me@example.com")
    people = tmp_path / "people.csv"
    people.write_text(
        'email,name\na@example.org,Ann\nb@example.org,"Bad\nSubject: x"\nc@example.org,Cy\n',
        encoding="utf-8",
    )
    to(page, "Recipients")
    page.get_by_label("Recipients file").set_input_files(str(people))
    expect(page.locator("#recipients-summary")).to_contain_text("3 valid addresses")
    compose_and_send(page, "Hi {{ name }}", "Body", confirm=False)
    out = page.locator("#send-status")
    expect(out).to_contain_text("Not started: 1 message cannot be built")
    skip = page.get_by_role("button", name="Skip these rows and send the rest")
    expect(skip).to_be_visible()
    skip.click()
    expect(page.locator("#send-confirm")).to_contain_text("Send 2 messages through the local test inbox")
    page.get_by_role("button", name="Yes, send").click()
    expect(page.locator("#send-state")).to_contain_text("Finished: 2 sent", timeout=10_000)
    assert sorted(m.rcpt_tos for m in inbox.messages()) == [("a@example.org",), ("c@example.org",)]


def test_name_column_and_per_recipient_files_in_browser_mode(isolated_home, page):
    expect = sync_api.expect
    page.get_by_label("From").fill("me@example.com")
    paste_list(page, "email,first,nick,file\na@example.org,Ann,Annie,a.pdf")
    expect(page.locator("#recipients-summary")).to_contain_text("1 valid address")
    name_column = page.get_by_label("Name column")
    options = name_column.locator("option").all_inner_texts()
    assert options[0] == "(automatic)" and {"first", "nick"} <= set(options)
    name_column.select_option("nick")
    expect(name_column).to_have_value("nick")
    fill_message(page, "Hi", "Body")
    page.get_by_role("button", name="Preview").click()
    expect(page.locator("#preview-area dl.headers")).to_contain_text("Annie <a@example.org>")
    # per-recipient files need a folder, which only the desktop window can choose
    column = page.get_by_label("Attachment column")
    assert column.locator("option").all_inner_texts() == ["(none)", "email", "first", "nick", "file"]
    expect(column).to_be_disabled()
    expect(page.locator("#attachment-column-note")).to_be_visible()
    expect(page.get_by_role("button", name="Choose folder...")).to_be_hidden()


def test_new_controls_keep_the_form_labels_unambiguous(isolated_home, page, tmp_path):
    # Names from files and lists must not become labels: "from@..." or "report.pdf" inside
    # an aria-label would make get_by_label("From") / ("Port") match a Remove button.
    expect = sync_api.expect
    paste_list(page, "from@example.org\nport@example.org")
    tricky = tmp_path / "subject-from-port-host.txt"
    tricky.write_text("x", encoding="utf-8")
    page.get_by_label("Attachment files").set_input_files(str(tricky))
    expect(page.locator("#attachments-list li")).to_have_count(1)
    to(page, "Suppression list")
    page.get_by_label("Addresses never to mail").fill("from@example.org")
    page.get_by_role("button", name="Add to suppression list").click()
    expect(page.locator("#suppression-entries li")).to_have_count(1)
    to(page, "Templates")
    for label in ("From", "Subject", "Host", "Port", "Provider", "Security", "Username"):
        assert page.get_by_label(label).count() == 1, label
    assert page.get_by_label("Message", exact=True).count() == 1
    to(page, "Suppression list")
    assert page.get_by_role("button", name="Remove from@example.org").count() == 1
    unlabelled = page.evaluate("""Array.from(document.querySelectorAll('input, select, textarea'))
        .filter(el => el.type !== 'hidden' && el.labels.length === 0).map(el => el.id || el.name)""")
    assert unlabelled == []


def test_preview_keeps_the_message_styles_but_runs_no_script(page):
    paste_list(page, "a@example.org")
    sync_api.expect(page.locator("#recipients-summary")).to_contain_text("1 valid")
    fill_message(page, "Styled",
                 '<style>p.x { font-weight: 700 }</style><p class="x" style="color: rgb(0, 0, 255)">Blue</p>')
    page.get_by_role("button", name="Preview", exact=True).click()
    frame = page.frame_locator("#preview-area iframe.frame-desktop")
    paragraph = frame.locator("p.x")
    sync_api.expect(paragraph).to_have_text("Blue")
    assert paragraph.evaluate("p => getComputedStyle(p).color") == "rgb(0, 0, 255)"
    assert paragraph.evaluate("p => getComputedStyle(p).fontWeight") == "700"
    src = page.locator("#preview-area iframe.frame-desktop").get_attribute("src")
    assert src and src.startswith("/preview/")


def test_history_lists_the_campaign_and_its_recipients(isolated_home, page, app):
    _, inbox = app
    expect = sync_api.expect
    page.get_by_label("From").fill("me@example.com")
    paste_list(page, "ann@example.org\nbob@example.org")
    compose_and_send(page, "Hi", "History")
    expect(page.locator("#send-state")).to_have_text("Finished: 2 sent.", timeout=10_000)
    assert len(inbox.messages()) == 2
    to(page, "History")
    page.get_by_role("button", name="Refresh history", exact=True).click()
    row = page.locator("#history-list tr").first
    expect(row.locator(".history-state")).to_have_text("Finished")
    expect(row.locator(".history-sent")).to_have_text("2")
    expect(row.locator(".history-failed")).to_have_text("0")
    # a finished campaign with nothing failed offers only its details
    expect(row.get_by_role("button", name=re.compile("^Resume|^Resend"))).to_have_count(0)
    row.get_by_role("button", name=re.compile(r"^Details of campaign ")).click()
    details = page.locator("#history-details")
    expect(details.locator("tbody tr")).to_have_count(2)
    expect(details).to_contain_text("ann@example.org")
    expect(details).to_contain_text("bob@example.org")
    expect(details.locator('tbody tr[data-status="sent"]')).to_have_count(2)
    for label in ("From", "Subject", "Host", "Port", "Provider", "Security", "Username"):
        assert page.get_by_label(label).count() == 1, label


def test_history_resends_to_the_failed_recipients(isolated_home, page, smtp_server):
    server = smtp_server("plain", auth=False)
    expect = sync_api.expect
    use_custom_server(page, server.host, server.port)
    paste_list(page, "a@example.org\nreject550@example.org")
    compose_and_send(page, "Hi", "Body")
    expect(page.locator('#log tr[data-status="failed"]')).to_have_count(1, timeout=15_000)
    expect(page.locator("#history-list tr")).to_have_count(1)  # refreshed when the run ended
    to(page, "History")
    row = page.locator("#history-list tr").first
    expect(row.locator(".history-failed")).to_have_text("1")
    row.get_by_role("button", name=re.compile(r"^Resend to failed of campaign ")).click()
    expect(page.locator("#history-list tr")).to_have_count(2, timeout=15_000)
    expect(page.locator("#log tr")).to_have_count(1, timeout=15_000)  # the log follows the new run
    expect(page.locator("#send-status")).to_contain_text(
        "Follow-up run started: follow it in Send and the Activity log (1 recipient). "
        "Left out: 0 bounced addresses and 0 on the suppression list.")
    expect(page.locator('#log tr[data-status="failed"]')).to_contain_text("reject550@example.org")
    expect(page.locator("#history-list tr").first.locator(".history-state")).to_have_text("Finished", timeout=10_000)
    assert [m.rcpt_tos for m in server.messages] == [["a@example.org"]]


def test_history_resumes_a_paused_campaign_and_nobody_gets_it_twice(isolated_home, page, app):
    _, inbox = app
    expect = sync_api.expect
    page.get_by_label("From").fill("me@example.com")
    paste_list(page, "\n".join(f"p{i}@example.org" for i in range(6)))
    fill_message(page, "Resume me", "Hello")
    send(page, "400")
    expect(page.locator('#log tr[data-status="sent"]')).to_have_count(2, timeout=10_000)
    page.get_by_role("button", name="Cancel", exact=True).click()
    expect(page.locator("body")).to_have_attribute("data-campaign-state", "cancelled", timeout=10_000)
    sent_before = len(inbox.messages())
    assert 2 <= sent_before < 6
    to(page, "History")
    page.get_by_role("button", name="Refresh history", exact=True).click()
    row = page.locator("#history-list tr").first
    row.get_by_role("button", name=re.compile(r"^Resume campaign ")).click()
    expect(page.locator("body")).to_have_attribute("data-campaign-state", "finished", timeout=20_000)
    delivered = [m.rcpt_tos[0] for m in inbox.messages()]
    assert sorted(delivered) == [f"p{i}@example.org" for i in range(6)]  # each exactly once


def test_connections_follow_the_provider_and_a_run_uses_them(page, smtp_server):
    server = smtp_server("plain", auth=False)
    expect = sync_api.expect
    connections = page.get_by_label("Connections")
    page.get_by_label("Provider").select_option(label="Amazon SES")
    expect(connections).to_have_value("4")
    page.get_by_label("Provider").select_option(label="Gmail")
    expect(connections).to_have_value("1")
    use_custom_server(page, server.host, server.port)
    emails = [f"p{i}@example.org" for i in range(30)]
    paste_list(page, "\n".join(emails))
    expect(page.locator("#recipients-summary")).to_contain_text("30 valid")
    fill_message(page, "Hi", "Plain body")
    pace(page)
    connections.fill("0")
    page.get_by_role("button", name="Send", exact=True).click()
    expect(page.locator("#send-status")).to_contain_text("Connections must be a whole number")
    connections.fill("3")
    send(page)
    expect(page.locator("#count-sent")).to_have_text("Sent 30", timeout=15_000)
    assert server.sessions == 1 + 3  # the connection test, then three at once
    assert sorted(m.rcpt_tos[0] for m in server.messages) == sorted(emails)


def test_a_long_log_is_virtual_and_still_scrolls_filters_and_explains(page, smtp_server):
    server = smtp_server("plain", auth=False)
    expect = sync_api.expect
    use_custom_server(page, server.host, server.port)
    emails = [f"reject550@x{i}.example.org" if i % 150 == 0 else f"p{i}@example.org" for i in range(1200)]
    paste_list(page, "\n".join(emails))
    expect(page.locator("#recipients-summary")).to_contain_text("1200 valid")
    fill_message(page, "Hi", "Plain body")
    pace(page)
    page.get_by_label("Connections").fill("2")
    send(page)
    expect(page.locator("#count-sent")).to_have_text("Sent 1192", timeout=60_000)
    expect(page.locator("#count-failed")).to_have_text("Failed 8")
    table = page.locator("#log-table")
    expect(table).to_have_attribute("aria-rowcount", "1201")
    rendered = page.locator("#log tr:not(.spacer)")
    assert 0 < rendered.count() < 200  # only the rows in view are elements
    scroller = page.locator("#log-scroll")
    scroller.evaluate("el => { el.scrollTop = el.scrollHeight; }")
    expect(page.locator('#log tr[data-current="1200"]')).to_contain_text("p1199@example.org")
    scroller.evaluate("el => { el.scrollTop = 0; }")
    expect(page.locator('#log tr[data-current="1"]')).to_contain_text("reject550@x0.example.org")
    page.get_by_label("Failed only").check()
    expect(page.locator('#log tr[data-status="failed"]')).to_have_count(8)
    expect(page.locator('#log tr[data-status="sent"]')).to_have_count(0)
    page.locator('#log tr[data-current="151"]').get_by_role("button", name="How to fix").click()
    detail = page.locator("#log-detail")
    expect(detail).to_be_visible()
    expect(detail).to_contain_text("reject550@x150.example.org")
    expect(detail).to_contain_text("Check the address for typos")


def test_sending_limits_follow_the_provider_and_the_next_send_time_is_shown(isolated_home, page, app):
    _, inbox = app
    expect = sync_api.expect
    page.get_by_label("Provider").select_option(label="Gmail")
    to(page, "Review & send")
    page.locator("#limits-box summary").click()
    expect(page.get_by_label("Per day")).to_have_value("500")
    expect(page.locator("#limits-summary")).to_contain_text("500 a day")
    to(page, "Account")
    page.get_by_label("Provider").select_option(label="Local test inbox")
    expect(page.get_by_label("Per day")).to_have_value("")
    expect(page.locator("#limits-summary")).to_have_text("none")

    prepare_run(page, "a@example.org\nb@example.org\nc@example.org", "Limited")
    pace(page)
    page.get_by_label("Per minute").fill("2.5")
    page.get_by_role("button", name="Send", exact=True).click()
    expect(page.locator("#send-status")).to_contain_text("Per minute must be a number")
    expect(page.get_by_label("Per minute")).to_be_focused()
    page.get_by_label("Per minute").fill("2")
    expect(page.locator("#limits-summary")).to_have_text("2 a minute")
    expect(page.locator("#review-summary")).to_contain_text("Sending limits2 a minute")
    page.get_by_role("button", name="Send", exact=True).click()
    page.get_by_role("button", name="Yes, send").click()
    # Two go at once; the third waits for the minute: the window says until when, and why.
    expect(page.locator("#next-send")).to_contain_text("Next message at", timeout=10_000)
    expect(page.locator("#next-send")).to_contain_text("sending limit: 2 a minute")
    assert len(inbox.messages()) == 2
    page.get_by_role("button", name="Cancel", exact=True).click()
    expect(page.locator("body")).to_have_attribute("data-campaign-state", "cancelled", timeout=10_000)
    expect(page.locator("#next-send")).to_be_hidden()
    assert len(inbox.messages()) == 2


def test_history_asks_before_resuming_a_campaign_a_quota_stopped(isolated_home, page, app):
    _, inbox = app
    expect = sync_api.expect
    prepare_run(page, "a@example.org\nb@example.org", "Quota")
    pace(page)
    page.locator("#limits-box summary").click()
    page.get_by_label("Per day").fill("1")
    page.get_by_role("button", name="Send", exact=True).click()
    page.get_by_role("button", name="Yes, send").click()
    expect(page.locator("#summary")).to_contain_text("can continue after", timeout=10_000)
    to(page, "History")
    page.get_by_role("button", name="Refresh history", exact=True).click()
    row = page.locator("#history-list tr").first
    expect(row.locator(".history-state")).to_contain_text("quota: can continue after")
    row.get_by_role("button", name=re.compile(r"^Resume campaign ")).click()
    expect(page.locator("#history-quota-confirm")).to_contain_text("Try now anyway?")
    expect(page.get_by_role("button", name="Wait", exact=True)).to_be_focused()
    page.keyboard.press("Escape")
    expect(page.locator("#history-status")).to_contain_text("Not resumed")
    assert len(inbox.messages()) == 1
    row.get_by_role("button", name=re.compile(r"^Resume campaign ")).click()
    page.get_by_role("button", name="Try now anyway", exact=True).click()
    # Our own day's limit still holds: tried, and stopped again without sending.
    expect(page.locator("#history-status")).to_contain_text("Resumed", timeout=10_000)
    expect(page.locator("body")).to_have_attribute("data-campaign-state", "finished", timeout=10_000)
    assert len(inbox.messages()) == 1


def test_retry_settings_are_checked_and_summarised(isolated_home, page, app):
    _, inbox = app
    expect = sync_api.expect
    prepare_run(page, "a@example.org", "Retries")
    to(page, "Review & send")
    page.locator("#retry-box summary").click()
    page.get_by_label("Tries per recipient").fill("0")
    page.get_by_role("button", name="Send", exact=True).click()
    expect(page.locator("#send-status")).to_contain_text("Tries per recipient must be a whole number of at least 1")
    expect(page.get_by_label("Tries per recipient")).to_be_focused()
    assert inbox.messages() == []
    page.get_by_label("Tries per recipient").fill("3")
    page.get_by_label("Stop after failures in a row").fill("0")
    expect(page.locator("#retry-summary")).to_have_text("up to 3 tries, never stop for failures")
    send(page)
    expect(page.locator("body")).to_have_attribute("data-campaign-state", "finished", timeout=10_000)
    assert len(inbox.messages()) == 1


class _Elsewhere(BaseHTTPRequestHandler):
    """Another origin on 127.0.0.1 that records every request reaching it."""

    hits: list[str] = []

    def do_GET(self) -> None:  # noqa: N802
        self.hits.append(self.path)
        self.send_response(200)
        self.end_headers()

    do_POST = do_GET

    def log_message(self, format, *args) -> None:  # noqa: A002
        pass


def test_links_in_a_preview_open_nowhere(browser, app):
    webapp, _ = app
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Elsewhere)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    other = f"http://127.0.0.1:{server.server_port}"
    context = browser.new_context()
    popups: list = []
    requests: list[str] = []
    pg = context.new_page()
    context.on("page", lambda p: popups.append(p.url))  # pages opened from now on
    context.on("request", lambda r: requests.append(r.url))
    try:
        pg.goto(webapp.url)
        pg.wait_for_selector('body[data-ready="true"]', timeout=10_000)
        app_url = pg.url
        paste_list(pg, "a@example.org")
        sync_api.expect(pg.locator("#recipients-summary")).to_contain_text("1 valid")
        to(pg, "Message")
        pg.get_by_label("Subject").fill("Links")
        targets = {"plain": "", "blank": ' target="_blank"', "top": ' target="_top"', "self": ' target="_self"',
                   "parent": ' target="_parent"', "named": ' target="somewhere"'}
        body = "".join(f'<p><a id="{k}" href="{other}/{k}"{t}>{k} link</a></p>' for k, t in targets.items())
        body += '<p><a id="app" href="/">the app itself</a></p>'
        body += f'<form action="{other}/form" method="post"><button id="submit">Submit</button></form>'
        pg.get_by_label("Message", exact=True).fill(body)
        pg.get_by_role("button", name="Preview", exact=True).click()
        frame = pg.frame_locator("#preview-area iframe.frame-desktop")
        sync_api.expect(frame.locator("#plain")).to_be_visible()
        preview_url = pg.locator("#preview-area iframe.frame-desktop").get_attribute("src")
        for name in [*targets, "app", "submit"]:
            frame.locator(f"#{name}").click()
        frame.locator("#plain").focus()
        pg.keyboard.press("Enter")
        pg.wait_for_timeout(1500)
        assert popups == []  # no new window or tab
        assert pg.url == app_url  # the app's page is still there
        children = [f for f in pg.frames if f != pg.main_frame]  # the desktop and the phone view
        assert len(children) == 2 and all(c.url.endswith(preview_url) for c in children)  # neither navigated
        sync_api.expect(frame.locator("#plain")).to_be_visible()
        assert _Elsewhere.hits == []
        assert [u for u in requests if u.startswith(other)] == []
    finally:
        context.close()
        server.shutdown()


def test_the_page_loads_only_its_own_files(browser, app):
    webapp, _ = app
    origin = f"http://127.0.0.1:{webapp.port}"
    context = browser.new_context()
    requests: list[str] = []
    context.on("request", lambda r: requests.append(r.url))
    pg = context.new_page()
    try:
        pg.goto(webapp.url)
        pg.wait_for_selector('body[data-ready="true"]', timeout=10_000)
        pg.wait_for_load_state("networkidle")
        loaded = pg.evaluate("performance.getEntriesByType('resource').map(e => e.name)")
        fonts = pg.evaluate("Array.from(document.fonts).map(f => f.family + ' ' + f.status)")
    finally:
        context.close()
    foreign = [u for u in requests + loaded if not u.startswith((origin + "/", "data:"))]
    assert foreign == []
    assert any(u.endswith("/app.js") for u in loaded) and any(u.endswith("/app.css") for u in loaded)
    assert fonts == []  # system fonts only: no web font is fetched from anywhere


def test_history_resumes_a_failed_campaign_with_the_settings_now_in_account(isolated_home, page, smtp_server):
    server = smtp_server("plain", auth=False)
    expect = sync_api.expect
    gone = smtp_server("plain", auth=False)
    closed = gone.port
    use_custom_server(page, "127.0.0.1", closed)  # tested, then it goes away: the run fails at once
    gone.stop()
    paste_list(page, "a@example.org\nb@example.org")
    compose_and_send(page, "Hi", "Body")
    expect(page.locator("body")).to_have_attribute("data-campaign-state", "failed", timeout=15_000)
    to(page, "Account")
    page.get_by_label("Port").fill(str(server.port))  # the user corrects the port
    to(page, "History")
    page.get_by_role("button", name="Refresh history", exact=True).click()
    page.locator("#history-list tr").first.get_by_role("button", name=re.compile(r"^Resume campaign ")).click()
    ask = page.locator("#history-settings-confirm")
    expect(ask).to_contain_text(f"Resume with the settings now in Account (127.0.0.1:{server.port})?")
    expect(ask).to_contain_text(f"127.0.0.1:{closed}")
    assert not server.messages
    ask.get_by_role("button", name="Use the settings now in Account").click()
    expect(page.locator("body")).to_have_attribute("data-campaign-state", "finished", timeout=20_000)
    assert sorted(m.rcpt_tos[0] for m in server.messages) == ["a@example.org", "b@example.org"]


def test_the_draft_survives_a_restart_and_a_new_campaign_clears_it(browser, app, tmp_path, isolated_home):
    """Two page loads against two app instances sharing BULK_MAILER_HOME: a restart."""
    from backend import web
    from backend.credentials import EncryptedFileStore
    from backend.inbox import LocalInbox
    from bridge import FRONTEND, Bridge, web_face

    expect = sync_api.expect
    first, _ = app
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    pg = context.new_page()
    pg.goto(first.url)
    pg.wait_for_selector('body[data-ready="true"]', timeout=10_000)
    expect(pg.locator("#draft-status")).not_to_contain_text("Restored")
    paste_list(pg, "email,name\nann@example.org,Ann\nbob@example.org,Bob")
    expect(pg.locator("#recipients-summary")).to_contain_text("2 valid")
    fill_message(pg, "Spring news for {{ name }}", "Hello {{ name }}, the garden opens on Monday.")
    pg.get_by_label("Plain text").check()
    pace(pg, "250")
    pg.wait_for_timeout(1200)  # the save waits for the typing to pause
    pg.reload()  # the same app: the page shows this session's list again
    pg.wait_for_selector('body[data-ready="true"]', timeout=10_000)
    to(pg, "Recipients")
    expect(pg.locator("#recipients-table")).to_contain_text("bob@example.org")
    to(pg, "Message")
    expect(pg.get_by_role("group", name="Insert a field").get_by_role("button")).to_have_count(2)
    context.close()

    inbox = LocalInbox()
    second, server, _ = web.start(lambda deliver: web_face(Bridge(
        inbox=inbox, store=EncryptedFileStore(tmp_path / "s2.enc"), deliver=deliver)), FRONTEND)
    try:
        context = browser.new_context(viewport={"width": 1400, "height": 1000})
        pg = context.new_page()
        pg.goto(second.url)
        pg.wait_for_selector('body[data-ready="true"]', timeout=10_000)
        expect(pg.get_by_label("Subject")).to_have_value("Spring news for {{ name }}")
        expect(pg.get_by_label("Message", exact=True)).to_have_value("Hello {{ name }}, the garden opens on Monday.")
        expect(pg.get_by_label("Plain text")).to_be_checked()
        expect(pg.get_by_label("Delay (ms)")).to_have_value("250")
        status = pg.locator("#draft-status")
        expect(status).to_contain_text(re.compile(r"Restored your draft from \d\d:\d\d.* with the list \(2 valid"))
        expect(pg.locator('.nav-step[data-step="recipients"] .step-summary')).to_have_text("Done. 2 valid recipients")
        to(pg, "Recipients")
        expect(pg.locator("#recipients-table")).to_contain_text("bob@example.org")
        pg.get_by_role("button", name="Start a new campaign").click()
        expect(pg.get_by_label("Paste addresses")).to_be_focused()
        expect(pg.locator('.nav-step[data-step="recipients"] .step-summary')).to_have_text("Not started. No list yet")
        to(pg, "Message")
        expect(pg.get_by_label("Subject")).to_have_value("")
        expect(pg.get_by_label("Message", exact=True)).to_have_value("")
        pg.reload()
        pg.wait_for_selector('body[data-ready="true"]', timeout=10_000)
        expect(status).not_to_contain_text("Restored")
        context.close()
    finally:
        web.stop(second, server)
        inbox.stop()


VIEWS = ["Account", "Recipients", "Message", "Review & send", "History", "Local test inbox", "Templates",
         "Suppression list"]


def no_sideways_scroll(page) -> None:
    """The page never scrolls sideways: every table fits or wraps."""
    width = page.evaluate("[document.scrollingElement.scrollWidth, innerWidth]")
    assert width[0] <= width[1], (page.evaluate("document.body.dataset.view"), width)


def test_a_whole_campaign_through_the_four_steps_by_their_labels(browser, app):
    _, inbox = app
    expect = sync_api.expect
    webapp, _ = app
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    page.goto(webapp.url)
    page.wait_for_selector('body[data-ready="true"]', timeout=10_000)
    nav = page.get_by_role("navigation")
    steps = nav.get_by_role("list", name="Campaign steps").get_by_role("button")
    expect(steps).to_have_text(["1Account", "2Recipients", "3Message", "4Review & send"])
    # an empty History says what to do next; no view scrolls sideways at 1280x800
    for view in VIEWS:
        to(page, view)
        expect(page.locator("section.view:visible")).to_have_count(1)
        no_sideways_scroll(page)
    to(page, "History")
    expect(page.locator("#history-count")).to_have_text(
        "No campaigns yet. Your first one starts at Account: try it with the Local test inbox.")
    expect(page.locator(".history-scroll")).to_be_hidden()
    # 1. Account: the local test inbox needs no test; Next moves on
    to(page, "Account")
    summary = page.locator(".nav-step .step-summary")
    expect(summary.nth(0)).to_have_text("Done. Local test inbox: nothing leaves this computer")
    expect(summary.nth(1)).to_have_text("Not started. No list yet")
    page.get_by_role("button", name="Next: Recipients").click()
    # 2. Recipients: invalid lines in plain words
    page.get_by_label("Paste addresses").fill(
        "email,name\nann@example.org,Ann\nbob@example.org,Bob\ncy@example.org,Cy\nbob@@example.com,Bobby\n")
    page.get_by_role("button", name="Use pasted addresses").click()
    expect(page.locator("#rejected-list")).to_have_text("Line 5: bob@@example.com - more than one @")
    expect(summary.nth(1)).to_have_text("Done. 3 valid recipients, 1 invalid")
    no_sideways_scroll(page)
    page.get_by_role("button", name="Next: Message").click()
    # 3. Message
    fill_message(page, "News for {{ name }}", "<p>Hi {{ name }}, the garden opens on Monday.</p>")
    expect(summary.nth(2)).to_have_text("Done. “News for {{ name }}”")
    page.get_by_role("button", name="Next: Review & send").click()
    # 4. Review & send: what goes where, then one confirmation that names it
    expect(page.locator("#review-ready")).to_have_text("Ready to send.")
    review = page.locator("#review-summary")
    expect(review).to_contain_text("Messages3")
    expect(review).to_contain_text("Throughthe local test inbox")
    expect(review).to_contain_text("Fromme@example.com")
    expect(review).to_contain_text("Estimated timeunder a minute")
    expect(review).to_contain_text("Content checkLooks fine (score 0)")
    expect(page.locator("#review-preview")).to_contain_text("News for Ann")
    no_sideways_scroll(page)
    page.get_by_role("button", name="Send", exact=True).click()
    confirm = page.locator("#send-confirm")
    expect(confirm).to_have_text(re.compile(r"^Send 3 messages through the local test inbox as me@example\.com\?"))
    expect(page.get_by_role("button", name="Yes, send")).to_be_focused()
    confirm.get_by_role("button", name="Cancel", exact=True).click()
    expect(page.locator("#send-status")).to_have_text("Nothing sent.")
    assert inbox.messages() == []
    pace(page)
    page.get_by_role("button", name="Send", exact=True).click()
    page.get_by_role("button", name="Yes, send").click()
    expect(page.locator("#send-state")).to_have_text("Finished: 3 sent.", timeout=10_000)
    no_sideways_scroll(page)
    # History: the campaign by its subject, in local time, with its counts
    to(page, "History")
    row = page.locator("#history-list tr")
    expect(row).to_have_count(1)
    expect(row.locator(".history-subject")).to_have_text("News for {{ name }}")
    expect(row.locator(".history-sent")).to_have_text("3")
    expect(page.locator("#history-count")).to_have_text("1 campaign.")
    no_sideways_scroll(page)
    context.close()


def test_review_lists_what_is_missing_and_warns_before_mistakes(page, app):
    expect = sync_api.expect
    to(page, "Account")
    page.get_by_label("Provider").select_option(label="Custom server")
    page.get_by_label("Host").fill("smtp.example.com")
    to(page, "Review & send")
    checklist = page.locator("#review-checklist")
    expect(checklist).to_contain_text("Test the connection")
    expect(checklist).to_contain_text("Add recipients")
    expect(page.get_by_role("button", name="Send", exact=True)).to_be_disabled()
    checklist.get_by_role("button", name="Go to Recipients").click()
    expect(page.get_by_role("heading", name="Recipients")).to_be_focused()
    to(page, "Account")
    page.get_by_label("Provider").select_option(label="Local test inbox")
    paste_list(page, "\n".join(f"p{i}@example.org" for i in range(120)))
    big = "x" * (110 * 1024)
    fill_message(page, "Hi", f'<p><a href="http://example.com/a">a</a> {big}</p>')
    to(page, "Review & send")
    warnings = page.locator("#review-warnings")
    expect(warnings.locator('[data-kind="http_link"]')).to_contain_text("1 link in the message is not https")
    expect(warnings.locator('[data-kind="clipped"]')).to_contain_text("Gmail shows only the first 102 KB")
    expect(warnings.locator('[data-kind="no_unsubscribe"]')).to_contain_text("no unsubscribe link for a list of 120")
    expect(page.get_by_role("button", name="Send", exact=True)).to_be_enabled()


def test_check_replies_and_bounces_from_history(isolated_home, page, smtp_server, imap_server, certs, monkeypatch):
    """A real campaign through a STARTTLS server with a login, a copy in a real Dovecot's Sent, a
    bounce notice in its INBOX: History's button reads it, the recipient is Bounced everywhere."""
    from backend.journal import Journal
    from tests.servers import PASSWORD, USER
    from tests.test_track import rewritten

    monkeypatch.setenv("SSL_CERT_FILE", certs.ca_file)  # the test servers' authority, as a system one
    expect = sync_api.expect
    smtp = smtp_server("starttls", auth=True)
    imap = imap_server(special_use=True)
    to(page, "Account")
    page.get_by_label("Provider").select_option(label="Custom server")
    page.get_by_label("Host").fill(smtp.host)
    page.get_by_label("Port").fill(str(smtp.port))
    page.get_by_label("Security").select_option(label="STARTTLS")
    page.get_by_label("Username").fill(USER)
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_label("From").fill("me@example.com")
    page.locator("#advanced summary").click()
    page.get_by_label("IMAP server").fill(f"{imap.host}:{imap.port_ssl}")
    page.get_by_role("button", name="Test connection").click()
    expect(page.locator("#connection-result")).to_contain_text("Connection works", timeout=10_000)
    paste_list(page, "r01@example.org\nr02@example.org")  # r01: the corpus's Postfix bounce
    compose_and_send(page, "Hello", "Hello there")
    expect(page.locator("#send-state")).to_have_text("Finished: 2 sent.", timeout=15_000)
    expect(page.locator("#sent-copy-status")).to_have_text("Copy in Sent: 2 filed in Sent.")
    expect(page.locator("#history-list tr")).to_have_count(1)  # refreshed when the run ended
    cid = page.locator("#history-list tr").first.get_attribute("data-id")
    journal = Journal()
    ids = {r.recipient.email: r.result.message_id for r in journal.rows(cid)}
    journal.close()
    bounce = rewritten("postfix-user-unknown-headers.eml", ids)
    assert b"r01@example.org" in bounce
    m = imap.client(certs.ca_file)
    try:
        assert m.append("INBOX", None, None, bounce)[0] == "OK"
    finally:
        m.logout()
    to(page, "History")
    row = page.locator("#history-list tr").first
    row.get_by_role("button", name=re.compile(r"^Check replies and bounces of campaign ")).click()
    status = page.locator("#history-status")
    expect(status).to_contain_text("Checked: 1 bounced, 0 replied, 0 auto-replies", timeout=15_000)
    expect(status).to_contain_text("nothing changed in your mailbox")
    expect(row).to_contain_text("1 bounced")
    row.get_by_role("button", name=re.compile(r"^Details of campaign ")).click()
    page.get_by_label("Show").select_option(label="Bounced")
    details = page.locator("#history-detail-rows tr")
    expect(details).to_have_count(1)
    expect(details).to_contain_text("r01@example.org")
    expect(details).to_contain_text("Bounced")
    # the Activity log of that campaign says so too
    to(page, "Review & send")
    expect(page.locator('#log tr[data-status="bounced"]')).to_contain_text("r01@example.org")


def test_a_custom_server_without_a_host_is_named_in_the_checklist(page):
    expect = sync_api.expect
    page.get_by_label("Provider").select_option(label="Custom server")
    expect(page.locator('.nav-step[data-step="account"]')).to_have_attribute("data-state", "todo")
    to(page, "Review & send")
    checklist = page.locator("#review-checklist")
    expect(checklist).to_contain_text("Give the SMTP server's host name (or choose a provider)")
    expect(page.locator("#review-summary")).to_contain_text("Through—")
    expect(page.get_by_role("button", name="Send", exact=True)).to_be_disabled()

