"""Writing the message in the window (a real browser, browser mode): Markdown with fields in its
links, raw HTML only when allowed, and the account's signature below every message."""

from __future__ import annotations

from tests.test_schedule_ui import browser, expect, page  # noqa: F401 (the fixtures)
from tests.uisteps import paste_list, send, to


def test_markdown_and_the_signature_reach_the_messages(page, web_app):  # noqa: F811
    _, inbox = web_app
    page.get_by_label("From").fill("Me <me@example.com>")
    page.locator("#signature-box > summary").click()
    expect(page.locator("#signature-status")).to_contain_text("No signature for")
    page.get_by_label("HTML signature").fill("<p>Best wishes, {{ name }}'s friend</p>")
    page.get_by_role("button", name="Save signature").click()
    expect(page.locator("#signature-status")).to_contain_text("Signature saved for")
    paste_list(page, "email,name\nann@example.org,Ann")
    to(page, "Message")
    page.get_by_label("Subject").fill("Hello {{ name }}")
    expect(page.get_by_label("Allow HTML in the Markdown")).to_be_hidden()
    page.get_by_label("Markdown", exact=True).check()
    expect(page.get_by_label("Allow HTML in the Markdown")).to_be_visible()
    page.get_by_label("Message", exact=True).fill("**Hello** {{ name }}, see [our site](https://example.org/?u={{ name }}).\n\n"
                                                 "<b>typed html</b>")
    send(page)
    expect(page.locator("#send-state")).to_have_text("Finished: 1 sent.", timeout=15_000)
    (message,) = inbox.messages()
    msg = message.parsed()
    html = msg.get_body(("html",)).get_content()
    text = msg.get_body(("plain",)).get_content()
    assert "<strong>Hello</strong> Ann" in html and 'href="https://example.org/?u=Ann"' in html
    assert "&lt;b&gt;typed html&lt;/b&gt;" in html  # raw HTML off: shown as text
    assert "Best wishes, Ann's friend" in html and "Best wishes, Ann's friend" in text
    assert '<div class="signature">' in html
