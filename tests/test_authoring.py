"""Writing the message: Markdown to HTML (fields kept), <style> CSS inlined (once where values only
fill in the template, else per message: compared), the text part made from the final HTML, the
account's signature in both parts, a plain-text-only message, and `send --markdown-file` end to end."""

from __future__ import annotations

import email
import email.policy
import itertools
import json
from pathlib import Path

import pytest

from backend import authoring, compose, jsonapi
from backend.app import LOCAL_INBOX, App
from backend.authoring import Signature, inline_css, markdown_to_html, signed
from backend.compose import Sender, Skeleton, Template, html_to_text, render, render_parts
from backend.credentials import EncryptedFileStore
from backend.inbox import LocalInbox
from backend.inputs import AccountInput, MessageInput, SavedDraft
from backend.recipients import Recipient
from tests.conftest import offline_detect
from tests.servers import PASSWORD
from tests.test_cli import account as cli_account
from tests.test_cli import run_cli

ME = Sender("me@example.com", "Me")


def recipient(**fields: str) -> Recipient:
    return Recipient("ann@example.org", {"name": "Ann", **fields}, 2)


# -- Markdown ---------------------------------------------------------------------------------


def test_markdown_becomes_the_expected_html():
    source = ("# Hello {{ name }}\n\nSome *emphasis*, **strong** and `code`.\n\n"
              "- one\n- two {{ city | default('there') }}\n\n1. first\n2. second\n\n"
              "[our site]({{ url }}) and [docs](https://example.com/a b?x=1&y={{ code }})\n\n"
              "```\nblock {{ name }}\n```\n")
    assert markdown_to_html(source) == (
        "<h1>Hello {{ name }}</h1>\n"
        "<p>Some <em>emphasis</em>, <strong>strong</strong> and <code>code</code>.</p>\n"
        "<ul>\n<li>one</li>\n<li>two {{ city | default('there') }}</li>\n</ul>\n"
        "<ol>\n<li>first</li>\n<li>second</li>\n</ol>\n"
        '<p><a href="{{ url }}">our site</a> and [docs](https://example.com/a b?x=1&amp;y={{ code }})</p>\n'
        "<pre><code>block {{ name }}\n</code></pre>\n")
    # a link address with a field is kept as written, not percent-encoded ({{ -> %7B%7B)
    assert markdown_to_html("[x](https://example.com/u?id={{ id }}&n={{ name | urlencode }})") == \
        '<p><a href="https://example.com/u?id={{ id }}&amp;n={{ name | urlencode }}">x</a></p>\n'


def test_raw_html_in_markdown_is_escaped_unless_allowed():
    source = 'Hi <b>{{ name }}</b>\n\n<div class="box">boxed</div>\n'
    assert markdown_to_html(source) == \
        "<p>Hi &lt;b&gt;{{ name }}&lt;/b&gt;</p>\n<p>&lt;div class=&quot;box&quot;&gt;boxed&lt;/div&gt;</p>\n"
    assert markdown_to_html(source, raw_html=True) == '<p>Hi <b>{{ name }}</b></p>\n<div class="box">boxed</div>\n'


def test_markdown_block_tags_add_no_empty_paragraph_and_render():
    source = "Hi {{ name }}\n\n{% if vip %}\n\n**Thank you** for staying with us.\n\n{% endif %}\n\nBye {# a note #}\n"
    html = markdown_to_html(source)
    assert html == ("<p>Hi {{ name }}</p>\n{% if vip %}<p><strong>Thank you</strong> for staying with us.</p>\n"
                    "{% endif %}<p>Bye {# a note #}</p>\n")
    template = Template("s", html=html)
    assert "Thank you" in render_parts(template, recipient(vip="yes")).html
    assert render_parts(template, recipient(vip="")).html == "<p>Hi Ann</p>\n<p>Bye </p>"


def test_text_that_looks_like_the_token_survives():
    source = "JjQzTok0X and {{ name }}"
    assert markdown_to_html(source) == "<p>JjQzTok0X and {{ name }}</p>\n"


# -- CSS inlining --------------------------------------------------------------------------------

NEWSLETTER = """<html><head><style>
p { color: #333333; margin: 0 0 12px }
.button { background: #0b5; color: #ffffff; padding: 8px 12px }
h1 { font-size: 24px }
@media (max-width: 600px) { h1 { font-size: 20px } }
</style></head><body>
<h1>Hello {{ name }}</h1>
<p>Your code is <b>{{ code }}</b>.</p>
<p style="color: red">Mine stays red.</p>
<a class="button" href="https://example.com/c/{{ code }}">Open</a>
</body></html>"""

NEWSLETTER_INLINED = """<html><head><style>@media (max-width: 600px) { h1 { font-size: 20px } } </style></head><body>
<h1 style="font-size: 24px;">Hello Ann</h1>
<p style="color: #333333;margin: 0 0 12px;">Your code is <b>A1</b>.</p>
<p style="margin: 0 0 12px;color: red">Mine stays red.</p>
<a class="button" href="https://example.com/c/A1" style="background: #0b5;color: #ffffff;padding: 8px 12px;">Open</a>
</body></html>"""


def test_style_block_is_inlined_own_styles_win_and_media_rules_stay():
    template = Template("s", html=NEWSLETTER)
    assert template._inline is not None  # values only fill it in: inlined once
    assert render_parts(template, recipient(code="A1")).html == NEWSLETTER_INLINED
    # the same per message (rendered first, then inlined)
    per_message = Template("s", html=NEWSLETTER.replace("{{ name }}", "{{ name }}{% if 0 %}{% endif %}"))
    assert per_message._inline is None
    assert render_parts(per_message, recipient(code="A1")).html == NEWSLETTER_INLINED


def test_html_without_style_is_left_exactly_as_written():
    html = '<p class="x">Hi {{ name }}</p>'
    template = Template("s", html=html)
    assert not template.inlines_css and template._inline is None
    assert render_parts(template, recipient()).html == '<p class="x">Hi Ann</p>'


def test_nothing_is_fetched_and_a_linked_stylesheet_stays():
    html = '<link rel="stylesheet" href="https://127.0.0.1:9/x.css"><style>p{color:red}</style><p>Hi</p>'
    out = inline_css(html)  # no connection is tried (the conftest guard would refuse one elsewhere)
    assert '<link rel="stylesheet" href="https://127.0.0.1:9/x.css">' in out and '<p style="color: red;">Hi</p>' in out


def test_the_text_part_is_made_from_the_inlined_html():
    html = "<style>.hidden { display: none }</style><p>Hi {{ name }}</p><p class=\"hidden\">preheader secret</p>"
    for source in (html, html.replace("Hi", "{% if 1 %}Hi{% endif %}")):  # once, and per message
        template = Template("s", html=source)
        parts = render_parts(template, recipient())
        assert 'style="display: none;"' in parts.html
        text = template.plain_text(parts, recipient().fields)
        assert text == "Hi Ann\n" and "secret" not in text
    # without inlining the converter would have shown it
    assert "secret" in html_to_text(html.replace("{{ name }}", "Ann"))


INLINE_TEMPLATES = [
    NEWSLETTER,
    "<style>td{padding:4px} .v{font-weight:bold}</style><table><tr><td>{{ name }}</td><td class=v>{{ code }}</td></tr></table>",
    '<style>a{color:#00f}</style><p>Hi {{ name | default("friend") | title }}</p><a href="https://x.example/?c={{ code }}" title="{{ city }}">x</a>',
    "<style>p{margin:0}</style><pre>{{ name }}</pre><p>{{ city }}&nbsp;{{ code }}</p>",
    "<html><head><title>{{ name }}</title><style>p{color:red}</style></head><body><p>{{ code }}</p></body></html>",
    "<style>p{margin:0}</style><div>{{ name }}</div>",
]
# per message: logic, a field in the CSS, a filter that may change characters
PER_MESSAGE = [
    # a field right after the <style>: with leading spaces a value would stay in <head>
    "<style>p{color:red}</style>{{ name }}<p>{{ city }}</p>",
    "<style>p{color:red}</style><p>{% if city %}{{ city }}{% endif %} {{ name }}</p>",
    "<style>p{color:{{ code }}}</style><p>{{ name }}</p>",
    "<style>p{color:red}</style><p>{{ name | replace('a', '\"') }}</p>",
    "<style>p{color:red}</style><p>{{ name }}</p><!-- &#123;&#123; 7 * 7 &#125;&#125; -->&#123;&#123; 7 * 7 &#125;&#125;",
]
VALUES = ["Ann", "Jörg Müller", "O'Brien & Sons <ltd>", 'say "hi"', "a  b", " lead", "trail ", "", "line\nbreak",
          "\nstarts", "cr\r\nlf", "non\u00a0breaking", "&amp;", "&copy;", "😀", "x" * 200, "1 < 2 > 0", "JjQzTok0X",
          "{{ name }}", "tab\there"]


def rows():
    for i, (name, city, code) in enumerate(itertools.product(VALUES, VALUES[::3], ["C1", "", "red"])):
        if i % 4 == 0 or name in ("Ann", "") or city == "":
            yield Recipient(f"p{i}@example.org", {"name": name, "city": city, "code": code}, i + 2)


@pytest.mark.parametrize("html", INLINE_TEMPLATES + PER_MESSAGE)
def test_inlined_once_equals_inlined_per_message(html):
    template = Template("s", html=html)
    plain = Template("s", html=html.replace("<style>", "<sTyle>"))  # the same, compiled apart
    fast = checked = 0
    for r in rows():
        parts = render_parts(template, r)
        rendered = compose._render(plain._html, "html", r.fields, r.line)
        expected = inline_css(rendered)
        assert parts.html == expected, (r.fields, parts.html, expected)
        # and the text part is the text of that final HTML
        assert template.plain_text(parts, r.fields) == html_to_text(expected)
        if template._inline is not None and template._inline.fits(r.fields):
            fast += 1
        checked += 1
    assert checked > 100
    if html in INLINE_TEMPLATES:
        assert template._inline is not None and fast >= 40
    else:
        assert template._inline is None


def test_skeleton_and_email_package_agree_on_inlined_messages():
    template = Template("Hi {{ name }}", html=NEWSLETTER)
    r = recipient(code="A1")
    data, _ = Skeleton(template, ME).build(r)
    built = email.message_from_bytes(render(template, r, ME).as_bytes(), policy=email.policy.default)
    sent = email.message_from_bytes(data, policy=email.policy.default)
    assert sent.get_body(("html",)).get_content() == built.get_body(("html",)).get_content()
    assert sent.get_body(("plain",)).get_content() == built.get_body(("plain",)).get_content()
    assert 'style="font-size: 24px;"' in sent.get_body(("html",)).get_content()


# -- plain text only --------------------------------------------------------------------------


def test_a_text_only_message_is_one_text_plain_part():
    template = Template("Hi", text="Hello {{ name }}\n")
    for data in (Skeleton(template, ME).build(recipient())[0], render(template, recipient(), ME).as_bytes()):
        msg = email.message_from_bytes(data, policy=email.policy.default)
        assert not msg.is_multipart() and msg.get_content_type() == "text/plain"
        assert msg.get_content().replace("\r\n", "\n") == "Hello Ann\n" and b"text/html" not in data


# -- the signature ------------------------------------------------------------------------------


def test_signature_goes_below_the_body_in_both_parts_with_fields():
    sig = Signature(html="<p><b>Me</b>, for {{ name }}</p>", text="Me, for {{ name }}")
    html, text = signed("<html><body><p>Hi {{ name }}</p></body></html>", "Hi {{ name }}\n", sig)
    assert html == ('<html><body><p>Hi {{ name }}</p>\n<div class="signature">-- <br>\n'
                    "<p><b>Me</b>, for {{ name }}</p></div>\n</body></html>")
    assert text == "Hi {{ name }}\n\n-- \nMe, for {{ name }}\n"
    parts = render_parts(Template("s", html=html, text=text), recipient())
    assert "<b>Me</b>, for Ann</p></div>" in parts.html and parts.text.endswith("-- \nMe, for Ann")


def test_one_signature_part_is_made_from_the_other():
    html_only = Signature(html='<p>Me &amp; co<br><a href="https://example.com/{{ id }}">site</a></p>')
    assert html_only.both()[1] == "Me & co\n[site](https://example.com/{{ id }})"
    text_only = Signature(text='Me & co <me@example.com>\n{{ name | default("x") }}')
    assert text_only.both()[0] == 'Me &amp; co &lt;me@example.com&gt;<br>\n{{ name | default("x") }}'
    assert signed(None, "Hi\n", text_only) == (None, 'Hi\n\n-- \nMe & co <me@example.com>\n{{ name | default("x") }}\n')
    assert signed("<p>x</p>", None, Signature()) == ("<p>x</p>", None)  # none saved: nothing added


def test_the_text_part_comes_from_the_final_html_with_the_signature():
    html, text = signed("<style>.x{display:none}</style><p>Hi {{ name }}</p><p class=x>hidden</p>", None,
                        Signature(html="<p>Me, {{ name }}'s friend</p>"))
    template = Template("s", html=html)
    parts = render_parts(template, recipient())
    # the converter writes the HTML's "-- " line as "--" (it trims line ends)
    assert template.plain_text(parts, recipient().fields) == "Hi Ann\n\n  --\n\n  Me, Ann's friend\n"


# -- through the App, the page's JSON and the command line -----------------------------------------


@pytest.fixture
def app(tmp_path):
    made = App(inbox=LocalInbox(), store=EncryptedFileStore(tmp_path / "s.enc"), detector=offline_detect)
    yield made
    made.shutdown()


INBOX = AccountInput(provider=LOCAL_INBOX, from_address="Me <me@example.com>")


def test_signature_kept_per_account_and_used_by_preview_and_check(app):
    other = AccountInput(host="smtp.example.com", user="me@example.com", from_address="me@example.com")
    assert app.account_signature(INBOX) == {"key": LOCAL_INBOX, "html": "", "text": ""}
    app.save_signature(INBOX, "<p>-- <i>{{ name }}</i>'s Me</p>", "")
    app.save_signature(other, "", "Other me")
    assert app.signature("smtp:me@example.com@smtp.example.com") == {"html": "", "text": "Other me"}
    # saving the settings keeps the signatures
    app.save_settings({"user": "", "host": "x"}, {"subject": "s"}, remember=True, remember_password=False)
    assert app.signature(LOCAL_INBOX)["html"] == "<p>-- <i>{{ name }}</i>'s Me</p>"
    app.import_recipients(("text", "email,name\nann@example.org,Ann\n"))
    message = MessageInput(subject="Hi", markdown="# Hi {{ name }}\n\n<b>x</b>", delay_ms=0)
    shown = app.preview(INBOX, message, 1)
    assert "<h1>Hi Ann</h1>" in shown["html"] and "&lt;b&gt;x&lt;/b&gt;" in shown["html"]
    assert '<div class="signature">' in shown["html"] and "<i>Ann</i>'s Me" in shown["html"]
    assert shown["text"].replace("\r\n", "\n").endswith("Ann's Me\n")
    bare = app.preview(INBOX, MessageInput(subject="Hi", markdown="# Hi", signature=False), 1)
    assert "signature" not in bare["html"]
    app.save_signature(INBOX, "", "")
    assert app.account_signature(INBOX)["html"] == ""


def test_preview_shows_the_inlined_html_and_the_check_reads_it(app):
    app.import_recipients(("text", "email,name\nann@example.org,Ann\n"))
    hidden = "hidden words " * 20
    body = ("<style>.h{display:none}</style><p>Hello {{ name }}, here is a long enough paragraph of text for the "
            f"message to read as a real one.</p><p class=\"h\">{hidden}</p>")
    message = MessageInput(subject="Hello", html=body, delay_ms=0)
    shown = app.preview(INBOX, message, 1)
    assert f'<p class="h" style="display: none;">{hidden}</p>' in shown["html"] and "<style>" not in shown["html"]
    report = app.check_content(message)
    assert "hidden_text" in {f["rule"] for f in report["findings"]}


def test_page_json_takes_markdown_raw_html_and_signature():
    p = jsonapi.Params({"message": {"subject": "S", "body": "# Hi", "format": "markdown", "raw_html": True,
                                    "signature": False}})
    m = jsonapi.message_input(p)
    assert (m.markdown, m.html, m.text, m.raw_html, m.signature) == ("# Hi", None, None, True, False)
    m = jsonapi.message_input(jsonapi.Params({"message": {"subject": "S", "body": "x", "format": "text"}}))
    assert (m.text, m.markdown, m.signature, m.raw_html) == ("x", None, True, False)
    with pytest.raises(jsonapi.Invalid):
        jsonapi.message_input(jsonapi.Params({"message": {"body": "x", "format": "rtf"}}))


def test_drafts_and_templates_keep_the_markdown_format(app):
    app.import_recipients(("text", "ann@example.org\n"))
    app.save_draft(SavedDraft(subject="S", body="# Hi", format="markdown", raw_html=True))
    assert {"format": "markdown", "raw_html": True, "body": "# Hi"}.items() <= app.load_draft()["message"].items()
    app.template_save("md", subject="S", body="*x*", fmt="markdown", unsubscribe=[], raw_html=True)
    assert app.template_load("md")["message"]["format"] == "markdown"
    assert app.template_load("md")["message"]["raw_html"] is True
    assert json.loads(app.template_export("md"))["template"]["format"] == "markdown"


def test_cli_send_markdown_with_signature_into_a_real_server(smtp_server, certs, tmp_path):
    server = smtp_server("starttls")
    home = tmp_path / "home"
    people = tmp_path / "people.csv"
    people.write_text("email,name,url\nann@example.org,Ann,https://example.com/a\n", encoding="utf-8")
    md = tmp_path / "body.md"
    md.write_text("# Hello {{ name }}\n\nSee [your page]({{ url }}), *soon*.\n\n<b>not bold</b>\n", encoding="utf-8")
    (tmp_path / "sig.html").write_text("<p>Me &amp; {{ name }}</p>", encoding="utf-8")
    acct = cli_account(server, certs)
    proc = run_cli("signature", "set", *acct, "--html-file", str(tmp_path / "sig.html"), home=home)
    assert proc.returncode == 0, proc.stderr
    shown = run_cli("signature", "show", *acct, "--json", home=home)
    assert json.loads(shown.stdout)["html"] == "<p>Me &amp; {{ name }}</p>"
    base = ["send", *acct, "--from", "me@example.com", "--to-file", str(people), "--subject", "Hi {{ name }}",
            "--markdown-file", str(md), "--delay-ms", "0"]
    proc = run_cli(*base, env={"BULK_MAILER_PASSWORD": PASSWORD}, home=home)
    assert proc.returncode == 0, proc.stderr
    msg = server.messages[0].message
    assert msg.get_content_type() == "multipart/alternative"
    html = msg.get_body(("html",)).get_content()
    text = msg.get_body(("plain",)).get_content()
    assert "<h1>Hello Ann</h1>" in html and '<a href="https://example.com/a">your page</a>' in html
    assert "&lt;b&gt;not bold&lt;/b&gt;" in html and '<div class="signature">' in html and "Me &amp; Ann" in html
    assert text.startswith("# Hello Ann") or "Hello Ann" in text
    assert "[your page](https://example.com/a)" in text and text.rstrip().endswith("Me & Ann")
    # --markdown-html lets the raw HTML through; --no-signature leaves the signature out
    proc = run_cli(*base, "--markdown-html", "--no-signature", env={"BULK_MAILER_PASSWORD": PASSWORD}, home=home)
    assert proc.returncode == 0, proc.stderr
    html = server.messages[1].message.get_body(("html",)).get_content()
    assert "<b>not bold</b>" in html and "signature" not in html
    assert run_cli("signature", "clear", *acct, home=home).returncode == 0
    assert "No signature" in run_cli("signature", "show", *acct, home=home).stderr
    assert PASSWORD not in (Path(home) / "config").as_posix()


def test_cli_check_reads_markdown(tmp_path):
    md = tmp_path / "b.md"
    md.write_text("Hello {{ name }}, [click here](http://bit.ly/x)\n", encoding="utf-8")
    proc = run_cli("check", "--markdown-file", str(md), "--subject", "Hi", "--json", home=tmp_path / "home")
    rules = {f["rule"] for f in json.loads(proc.stdout)["findings"]}
    assert "url_shortener" in rules and "http_link" in rules
    both = run_cli("check", "--markdown-file", str(md), "--html-file", str(md), home=tmp_path / "home")
    assert both.returncode == 2 and "not both" in both.stderr


def test_authoring_module_refuses_an_unknown_format():
    with pytest.raises(Exception, match="markdown"):
        authoring.bodies("rtf", "x")
