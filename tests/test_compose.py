"""Tests for backend.compose: templates, headers, MIME structure, header-injection defence."""

from __future__ import annotations

import copy
import email
import email.policy
import email.utils
import pickle
import re
import unicodedata
import urllib.parse
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from markupsafe import escape

from backend import compose
from backend.attachments import Attachment
from backend.compose import (
    Sender,
    Template,
    Unsubscribe,
    check_all,
    envelope_recipient,
    html_to_text,
    parse_sender,
    parse_unsubscribe,
    render,
    render_parts,
)
from backend.errors import HeaderValueError, RejectedError, SettingsError, TemplateError
from backend.recipients import Recipient
from backend.settings import SmtpSettings
from backend.transports.base import Envelope
from backend.transports.smtp import SmtpTransport
from tests.servers import RecordingHandler

SENDER = Sender("me@sender.example", "Me")


class _Sent(email.message.EmailMessage):
    """A message parsed from the cheap path's bytes; bytes() gives exactly those bytes."""

    raw: bytes = b""

    def as_bytes(self, unixfrom: bool = False, policy=None) -> bytes:
        return self.raw if policy is None else super().as_bytes(unixfrom, policy)

    __bytes__ = as_bytes


def skeleton_render(template, recipient, sender, *, reply_to=None, message_id_domain=None, now=None,
                    attachments=(), unsubscribe=None, smtputf8=False):
    """render() through compose.Skeleton, as a campaign builds messages (service.Draft.outgoing):
    the structure once, then this recipient; the email package when the sender is unusable."""
    try:
        skeleton = compose.Skeleton(template, sender, reply_to=reply_to, unsubscribe=unsubscribe,
                                    smtputf8=smtputf8, message_id_domain=message_id_domain)
    except (SettingsError, TemplateError):
        return compose.render(template, recipient, sender, reply_to=reply_to, attachments=attachments,
                              unsubscribe=unsubscribe, smtputf8=smtputf8, message_id_domain=message_id_domain,
                              now=now)
    data, _ = skeleton.build(recipient, attachments, now=now)
    utf8 = not data.partition(b"\r\n\r\n")[0].isascii()  # UTF-8 headers: addresses (RFC 6532)
    msg = email.message_from_bytes(data, _class=_Sent, policy=compose.POLICY_UTF8 if utf8 else compose.POLICY)
    msg.raw = data
    return msg


@pytest.fixture(autouse=True, params=["email-package", "skeleton"])
def build_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every test here runs on both ways of building a message: render() and the Skeleton."""
    if request.param == "skeleton":
        monkeypatch.setitem(globals(), "render", skeleton_render)
    return request.param


def row(line: int = 2, email_addr: str = "bob@example.com", **fields: str) -> Recipient:
    return Recipient(email_addr, {"email": email_addr, **fields}, line)


def parse(msg: email.message.EmailMessage) -> email.message.EmailMessage:
    """What a receiving mail program sees: the bytes as sent, parsed again."""
    return email.message_from_bytes(bytes(msg), policy=email.policy.default)


def content(part: email.message.EmailMessage) -> str:
    """A parsed part's decoded text; the wire uses CRLF, which parsing keeps."""
    return part.get_content().replace("\r\n", "\n")


def header_lines(raw: bytes) -> list[bytes]:
    return raw.split(b"\r\n\r\n", 1)[0].split(b"\r\n")


# --- templates ---------------------------------------------------------------------------


def test_html_body_escapes_values_text_and_subject_do_not() -> None:
    t = Template("Re: {{ v }}", html="<p>{{ v }}</p>", text="Text: {{ v }}")
    parts = render_parts(t, row(v="Tom & <b>Jerry</b>"))
    assert parts.subject == "Re: Tom & <b>Jerry</b>"
    assert parts.text == "Text: Tom & <b>Jerry</b>"
    assert parts.html == "<p>Tom &amp; &lt;b&gt;Jerry&lt;/b&gt;</p>"


def test_html_literal_markup_in_template_is_kept() -> None:
    parts = render_parts(Template("s", html='<a href="https://x.example/">{{ n }}</a>'), row(n="x"))
    assert parts.html == '<a href="https://x.example/">x</a>'


@pytest.mark.parametrize(
    ("subject", "html", "text", "part"),
    [
        ("Hi {{ first_name }}", None, "body", "subject"),
        ("Hi", "<p>{{ first_name }}</p>", None, "html"),
        ("Hi", None, "Dear {{ first_name }},", "text"),
        ("Hi", None, "{% if first_name %}x{% endif %}", "text"),
    ],
)
def test_missing_field_names_field_and_line(
    subject: str, html: str | None, text: str | None, part: str
) -> None:
    t = Template(subject, html=html, text=text)
    with pytest.raises(TemplateError) as info:
        render(t, row(line=17, name="Bob"), SENDER)
    err = info.value
    assert not isinstance(err, HeaderValueError)
    assert err.row == 17
    assert err.field == "first_name"
    assert "field 'first_name' is not a column of the recipient list" in err.message
    assert err.message.startswith("line 17: ")
    assert "email, name" in err.message  # the columns there are, to spot a typo
    assert err.category == "template_error"


def test_default_filter_works_for_missing_and_present_fields() -> None:
    t = Template('Hi {{ first_name | default("there") }}', text="{{ first_name | default('you') }}")
    assert render_parts(t, row()).subject == "Hi there"
    assert render_parts(t, row()).text == "you"
    assert render_parts(t, row(first_name="Ann")).subject == "Hi Ann"
    # An empty cell is defined: default(..., true) is how to treat it as missing.
    t2 = Template('Hi {{ first_name | default("there", true) }}', text="x")
    assert render_parts(t2, row(first_name="")).subject == "Hi there"


def test_is_defined_test_works_with_strict_undefined() -> None:
    t = Template("{% if nick is defined %}{{ nick }}{% else %}friend{% endif %}", text="x")
    assert render_parts(t, row()).subject == "friend"
    assert render_parts(t, row(nick="Bo")).subject == "Bo"


@pytest.mark.parametrize(
    "payload",
    [
        "{{ ''.__class__.__mro__ }}",
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{{ name.__class__ }}",
        "{{ lipsum.__globals__ }}",
        "{{ cycler.__init__.__globals__.os }}",
        "{{ range.__self__ }}",
        "{{ name.format.__globals__ }}",
    ],
)
def test_sandbox_blocks_attribute_escapes(payload: str) -> None:
    t = Template("s", text=payload)
    with pytest.raises(TemplateError) as info:
        render(t, row(line=9, name="Bob"), SENDER)
    assert info.value.row == 9
    assert info.value.field == "text"
    assert "<class" not in info.value.message and "<module" not in info.value.message


def test_runtime_error_in_template_is_a_template_error_with_row() -> None:
    t = Template("{{ 1 / n|int }}", text="x")
    with pytest.raises(TemplateError) as info:
        render_parts(t, row(line=4, n="0"))
    assert info.value.row == 4
    assert info.value.field == "subject"
    assert "ZeroDivisionError" in info.value.message


def test_attribute_of_a_present_field_is_not_reported_as_missing_column() -> None:
    t = Template("{{ name.first }}", text="x")
    with pytest.raises(TemplateError) as info:
        render_parts(t, row(line=3, name="Bob"))
    assert info.value.field == "subject"
    assert "not a column" not in info.value.message


@pytest.mark.parametrize(
    ("kwargs", "part", "line"),
    [
        ({"subject": "Hi {{ name", "text": "x"}, "subject", 1),
        ({"subject": "ok", "html": "<p>\n\n{% if %}</p>"}, "html", 3),
        ({"subject": "ok", "text": "a\nb\n{{ x | no_such_filter }}"}, "text", 3),
        ({"subject": "ok", "text": "{% for x in y %}"}, "text", 1),
    ],
)
def test_syntax_errors_name_the_part_and_template_line(
    kwargs: dict[str, str], part: str, line: int
) -> None:
    with pytest.raises(TemplateError) as info:
        Template(**kwargs)
    assert info.value.field == part
    assert info.value.row is None
    assert compose._LABELS[part] in info.value.message
    assert f"line {line}" in info.value.message


@pytest.mark.parametrize(("html", "text"), [(None, None), ("", None), (None, "  \n"), ("", "")])
def test_a_body_is_required(html: str | None, text: str | None) -> None:
    with pytest.raises(TemplateError, match="no body"):
        Template("Subject", html=html, text=text)


def test_fields_lists_the_variables_the_template_uses() -> None:
    t = Template(
        "Hi {{ first_name }}",
        html="{% for i in range(3) %}{{ i }}{{ order }}{% endfor %}{% set local = 1 %}{{ local }}",
        text="{{ city | default('') }} {{ lipsum(1) }}",
    )
    assert t.fields == {"first_name", "order", "city"}


def test_templates_are_compiled_once_not_per_row(monkeypatch: pytest.MonkeyPatch) -> None:
    t = Template("Hi {{ name }}", html="<p>{{ name }}</p>", text="{{ name }}")

    def boom(*args: object, **kwargs: object) -> None:
        raise AssertionError("compiled again")

    for env in (compose._PLAIN_ENV, compose._HTML_ENV):
        monkeypatch.setattr(env, "from_string", boom)
        monkeypatch.setattr(env, "parse", boom)
        monkeypatch.setattr(env, "compile", boom)
    for i in range(3):
        render(t, row(line=i, name=f"N{i}"), SENDER)
    assert check_all(t, [row(line=i, name="x") for i in range(3)], SENDER) == []


# --- the message -------------------------------------------------------------------------


def test_multipart_alternative_text_first_then_html() -> None:
    t = Template("Hello", html="<p>Hi {{ name }}</p>", text="Hi {{ name }}")
    msg = parse(render(t, row(name="Bob"), SENDER))
    assert msg.get_content_type() == "multipart/alternative"
    parts = list(msg.iter_parts())
    assert [p.get_content_type() for p in parts] == ["text/plain", "text/html"]
    assert all(p.get_content_charset() == "utf-8" for p in parts)
    assert content(parts[0]) == "Hi Bob\n"
    assert content(parts[1]) == "<p>Hi Bob</p>\n"
    assert all("MIME-Version" not in p for p in parts)  # on the top level only


def test_text_only_message_is_a_single_text_plain_part() -> None:
    msg = parse(render(Template("Hello", text="Hi {{ name }}"), row(name="Bob"), SENDER))
    assert msg.get_content_type() == "text/plain"
    assert not msg.is_multipart()
    assert msg.get_content_charset() == "utf-8"
    assert content(msg) == "Hi Bob\n"


def test_headers_present_exactly_once_and_no_bcc() -> None:
    before = datetime.now(UTC)
    msg = render(Template("Hello", text="x"), row(name="Bob Smith"), SENDER)
    got = parse(msg)
    assert got.keys() == [
        "From", "To", "Subject", "Date", "Message-ID", "MIME-Version",
        "Content-Type", "Content-Transfer-Encoding",
    ]  # fmt: skip
    assert "Bcc" not in got and "Cc" not in got
    assert len(got.get_all("To")) == 1
    (to,) = got["To"].addresses
    assert (to.display_name, to.addr_spec) == ("Bob Smith", "bob@example.com")
    (frm,) = got["From"].addresses
    assert (frm.display_name, frm.addr_spec) == ("Me", "me@sender.example")
    assert got["MIME-Version"] == "1.0"
    assert re.fullmatch(r"<[^<>@\s]+@sender\.example>", got["Message-ID"])
    sent = got["Date"].datetime
    assert sent.tzinfo is not None
    assert before - timedelta(seconds=2) <= sent <= datetime.now(UTC) + timedelta(seconds=2)


def test_no_name_field_means_a_bare_address() -> None:
    got = parse(render(Template("Hello", text="x"), row(name="  "), Sender("me@sender.example")))
    assert got["To"] == "bob@example.com"
    assert got["From"] == "me@sender.example"


def test_message_id_domain_and_date_can_be_given() -> None:
    when = datetime(2026, 3, 4, 5, 6, 7, tzinfo=timezone(timedelta(hours=2)))
    msg = render(
        Template("s", text="x"), row(), SENDER, message_id_domain="mail.other.example", now=when
    )
    assert msg["Message-ID"].endswith("@mail.other.example>")
    assert msg["Date"] == "Wed, 04 Mar 2026 05:06:07 +0200"


def test_message_ids_are_unique() -> None:
    t = Template("s", text="x")
    ids = {render(t, row(line=i), SENDER)["Message-ID"] for i in range(200)}
    assert len(ids) == 200


def test_reply_to_as_sender_or_string() -> None:
    t = Template("s", text="x")
    got = parse(render(t, row(), SENDER, reply_to="Help Desk <help@sender.example>"))
    (addr,) = got["Reply-To"].addresses
    assert (addr.display_name, addr.addr_spec) == ("Help Desk", "help@sender.example")
    got = parse(render(t, row(), SENDER, reply_to=Sender("help@sender.example")))
    assert got["Reply-To"] == "help@sender.example"
    with pytest.raises(SettingsError) as info:
        render(t, row(), SENDER, reply_to="not an address")
    assert info.value.field == "reply_to"


def test_non_ascii_subject_is_encoded_words_and_round_trips() -> None:
    subject = "Grüße, Jörg — 你好 😀"
    msg = render(Template("{{ s }}", text="x"), row(s=subject), SENDER)
    raw = bytes(msg)
    (line,) = [x for x in header_lines(raw) if x.startswith(b"Subject:")]
    assert line.isascii() and b"=?utf-8?" in line
    assert str(msg["Subject"]) == subject
    assert str(parse(msg)["Subject"]) == subject
    assert str(email.message_from_bytes(raw, policy=email.policy.compat32)["Subject"]) != subject


@pytest.mark.parametrize(
    "subject",
    [
        # Python 3.11's own folder drops the space after "Köln," and in the Japanese one:
        # these are why compose folds the Subject itself.
        "Café crème für alle: Grüße aus Köln, Düsseldorf, München, Nürnberg, Würzburg und "
        "Saarbrücken ßßß",
        "こんにちは 山田 さん、 ご注文 ありがとう ございました。 発送 しました 明日 届きます よろしく"
        " お願い します",
        "Hi " + ":" * 53 + " " + ":" * 78,  # Python adds a space here
        "Your monthly newsletter for March: news, events, offers and much more inside this "
        "issue, read on",
        "A" * 120,
        "Hi " + "x" * 90 + " end",
        "=?utf-8?q?not_an_encoded_word?= typed by the user",
        "trailing spaces   ",
        "",
    ],
)
def test_subject_round_trips_exactly(subject: str) -> None:
    msg = render(Template("{{ s }}", text="x"), row(s=subject), SENDER)
    raw = bytes(msg)
    for line in header_lines(raw):
        assert len(line) <= 78
    assert str(parse(msg)["Subject"]) == subject


def test_short_ascii_subject_is_sent_as_is() -> None:
    raw = bytes(render(Template("Your order {{ n }} shipped", text="x"), row(n="42"), SENDER))
    assert b"\r\nSubject: Your order 42 shipped\r\n" in raw


def test_long_ascii_subject_is_folded_at_spaces_not_encoded() -> None:
    subject = " ".join(["word"] * 40)
    raw = bytes(render(Template("{{ s }}", text="x"), row(s=subject), SENDER))
    head = raw.split(b"\r\n\r\n")[0].decode()
    assert "=?" not in head
    assert "Subject: word word" in head and "\r\n word" in head


@pytest.mark.parametrize(
    "name",
    ["Jörg Müller", "Müller, Jörg", 'Dr. "Bob" O\'Neil', "山田 太郎", "Bob <evil@x.example>"],
)
def test_display_names_are_encoded_or_quoted_and_round_trip(name: str) -> None:
    msg = render(Template("s", text="x"), row(name=name), Sender("me@sender.example", name))
    raw = bytes(msg)
    assert all(line.isascii() for line in header_lines(raw))
    got = parse(msg)
    for header in ("To", "From"):
        (addr,) = got[header].addresses
        assert addr.display_name == name
    assert got["To"].addresses[0].addr_spec == "bob@example.com"
    assert got["From"].addresses[0].addr_spec == "me@sender.example"


@pytest.mark.parametrize(
    "name",
    [
        ":" + "0" * 75,  # Python 3.11's folder drops the quotes: ":" then starts a group
        "x" * 70 + ", Sales: evil@attacker.example;",
        "Müller-Lüdenscheidt, Karl-Theodor Maria Nikolaus Johann Jacob Philipp Franz Joseph",
        "A very long but plain ASCII display name that certainly does not fit on one line",
        "y" * 200,
        "Bob  Smith",
    ],
)
def test_long_display_names_stay_one_mailbox(name: str) -> None:
    msg = render(Template("s", text="x"), row(name=name), Sender("me@sender.example", name))
    raw = bytes(msg)
    assert all(len(line) <= 78 for line in header_lines(raw))
    got = parse(msg)
    assert got.keys()[:2] == ["From", "To"]
    for header, addr_spec in (("From", "me@sender.example"), ("To", "bob@example.com")):
        (addr,) = got[header].addresses
        assert addr.addr_spec == addr_spec
        assert "".join(addr.display_name.split()) == "".join(name.split())


def test_rendered_address_headers_keep_their_addresses() -> None:
    msg = render(Template("s", text="x"), row(name="Müller, Jörg"), SENDER, reply_to=SENDER)
    assert [a.addr_spec for a in msg["To"].addresses] == ["bob@example.com"]
    assert msg["To"].addresses[0].display_name == "Müller, Jörg"
    assert str(msg["To"]) == '"Müller, Jörg" <bob@example.com>'
    assert msg["From"].addresses[0].addr_spec == "me@sender.example"
    assert msg["Reply-To"].addresses[0].addr_spec == "me@sender.example"


def test_long_single_line_non_ascii_body_is_wrapped_and_decodes_back() -> None:
    body = ("Grüße ü 😀 " * 500)[:5000]
    assert len(body) == 5000 and "\n" not in body
    t = Template("s", html="<p>{{ b }}</p>", text="{{ b }}")
    msg = render(t, row(b=body), SENDER)
    raw = bytes(msg)
    for line in raw.split(b"\r\n"):
        assert len(line) <= 998
        assert len(line) <= 78  # quoted-printable/base64 keep to the 78-column convention
    assert raw.isascii()
    text_part, html_part = parse(msg).iter_parts()
    assert text_part["Content-Transfer-Encoding"] in ("quoted-printable", "base64")
    assert content(text_part) == body + "\n"
    assert content(html_part) == f"<p>{body}</p>\n"


def test_long_ascii_line_is_quoted_printable() -> None:
    body = "x" * 5000
    msg = render(Template("s", text=body), row(), SENDER)
    raw = bytes(msg)
    assert max(len(line) for line in raw.split(b"\r\n")) <= 78
    assert msg["Content-Transfer-Encoding"] == "quoted-printable"
    assert content(parse(msg)) == body + "\n"


def test_short_ascii_body_stays_7bit_and_non_ascii_body_is_not_8bit() -> None:
    assert render(Template("s", text="plain"), row(), SENDER)["Content-Transfer-Encoding"] == "7bit"
    cte = render(Template("s", text="Grüße"), row(), SENDER)["Content-Transfer-Encoding"]
    assert cte in ("quoted-printable", "base64")


def test_control_characters_in_a_body_are_encoded_not_sent_raw() -> None:
    msg = render(Template("s", text="a{{ v }}b"), row(v="\x00\x1b"), SENDER)
    raw = bytes(msg)
    assert b"\x00" not in raw and b"\x1b" not in raw
    assert content(parse(msg)) == "a\x00\x1bb\n"


def test_undecodable_character_in_a_body_is_a_template_error() -> None:
    with pytest.raises(TemplateError) as info:
        render(Template("s", text="{{ v }}"), row(line=6, v="bad \udcff byte"), SENDER)
    assert (info.value.row, info.value.field) == (6, "text")


def test_message_copies_and_pickles() -> None:
    msg = render(Template("Grüße {{ name }}", text="x"), row(name="Jörg"), SENDER)
    assert bytes(copy.deepcopy(msg)) == bytes(msg)
    assert bytes(pickle.loads(pickle.dumps(msg))) == bytes(msg)
    assert msg.as_string(policy=email.policy.default).count("\r\n") == 0  # follows the policy


def test_internationalised_recipient_domain_goes_out_as_idna() -> None:
    got = parse(render(Template("s", text="x"), row(email_addr="bob@bücher.example"), SENDER))
    assert got["To"].addresses[0].addr_spec == "bob@xn--bcher-kva.example"


def test_non_ascii_local_part_is_refused_with_the_row() -> None:
    with pytest.raises(TemplateError) as info:
        render(Template("s", text="x"), row(line=8, email_addr="jörg@example.com"), SENDER)
    assert (info.value.row, info.value.field, info.value.category) == (8, "to", "invalid_address")
    assert info.value.message == (
        "line 8: the recipient's address 'jörg@example.com' has non-ASCII characters before "
        "the @; the server does not offer SMTPUTF8, so it cannot be sent to"
    )


@pytest.mark.parametrize("bad", ["", "no-at-sign", "a@b@c", "@example.com", "a b@example.com"])
def test_broken_recipient_address_is_a_template_error(bad: str) -> None:
    with pytest.raises(TemplateError) as info:
        render(Template("s", text="x"), row(line=5, email_addr=bad), SENDER)
    assert (info.value.row, info.value.field, info.value.category) == (5, "to", "invalid_address")
    assert len(check_all(Template("s", text="x"), [row(line=5, email_addr=bad)], SENDER)) == 1


# --- HTML to text ------------------------------------------------------------------------


def test_html_to_text_keeps_links_and_drops_script_and_style() -> None:
    html = (
        "<html><head><style>p { color: red }</style><title>T</title>"
        "<script>var secret = 1;</script></head><body>"
        '<h1>Welcome</h1><p>Hello <b>Bob</b>, <a href="https://x.example/p">Click</a> here.</p>'
        "<ul><li>first item</li><li>second item</li></ul>"
        "<table><tr><th>Item</th><th>Price</th></tr><tr><td>Tea</td><td>3.50</td></tr></table>"
        "<p>Second paragraph<br>new line</p><script>alert('x')</script></body></html>"
    )
    text = html_to_text(html)
    assert "Click" in text and "https://x.example/p" in text
    for hidden in ("color", "secret", "alert", "<", "var "):
        assert hidden not in text
    lines = [line.strip() for line in text.splitlines()]
    assert "Welcome" in lines
    assert "* first item" in lines and "* second item" in lines
    assert any(re.fullmatch(r"Item\s+Price", line) for line in lines)
    assert any(re.fullmatch(r"Tea\s+3\.50", line) for line in lines)
    assert "new line" in lines
    assert lines.index("Welcome") < lines.index("* first item")
    assert text.endswith("\n") and not text.endswith("\n\n")


def test_html_only_template_gets_a_converted_text_alternative() -> None:
    t = Template("s", html='<p>Hi {{ name }}, <a href="https://x.example/p">Click</a></p>')
    text_part, html_part = parse(render(t, row(name="Bob"), SENDER)).iter_parts()
    assert text_part.get_content_type() == "text/plain"
    text = content(text_part)
    assert "Hi Bob" in text and "Click" in text and "https://x.example/p" in text
    assert "<p>" not in text
    assert html_part.get_content_type() == "text/html"


# --- header injection --------------------------------------------------------------------

INJECTIONS = {
    "CR": ("\r", "line break (\\r)"),
    "LF": ("\n", "line break (\\n)"),
    "CRLF": ("\r\n", "line break (\\r)"),
    "NUL": ("\x00", "NUL"),
    "VT": ("\x0b", "vertical tab"),
    "ESC": ("\x1b", "escape"),
    "TAB": ("\t", "tab"),
    "DEL": ("\x7f", "delete"),
    "NEL": ("\x85", "U+0085"),
    "C1": ("\x9b", "U+009B"),
    "LS": ("\u2028", "U+2028"),
    "PS": ("\u2029", "U+2029"),
}


def _payload(ch: str) -> str:
    return f"Hello{ch}Bcc: victim@evil.example"


@pytest.mark.parametrize("kind", INJECTIONS)
def test_control_in_subject_via_a_field_value(kind: str) -> None:
    ch, words = INJECTIONS[kind]
    with pytest.raises(HeaderValueError) as info:
        render(Template("Hi {{ s }}", text="x"), row(line=12, s=_payload(ch)), SENDER)
    assert (info.value.row, info.value.field) == (12, "subject")
    assert words in info.value.message
    assert info.value.message.startswith("line 12: ")


@pytest.mark.parametrize("kind", INJECTIONS)
def test_control_in_subject_template_literal(kind: str) -> None:
    ch, words = INJECTIONS[kind]
    t = Template(_payload(ch).replace("Hello", "{{ name }}"), text="x")
    with pytest.raises(HeaderValueError) as info:
        render(t, row(line=3, name="Bob"), SENDER)
    assert (info.value.row, info.value.field) == (3, "subject")
    # Jinja turns \r and \r\n in template text into \n; still a line break, still refused.
    assert ("line break" if ch in ("\r", "\r\n") else words) in info.value.message


@pytest.mark.parametrize("kind", INJECTIONS)
def test_control_in_name_field(kind: str) -> None:
    ch, words = INJECTIONS[kind]
    with pytest.raises(HeaderValueError) as info:
        render(Template("s", text="x"), row(line=21, name=_payload(ch)), SENDER)
    assert (info.value.row, info.value.field) == (21, "name")
    assert words in info.value.message


@pytest.mark.parametrize("kind", INJECTIONS)
def test_control_in_sender_name_and_address(kind: str) -> None:
    ch, _ = INJECTIONS[kind]
    t = Template("s", text="x")
    for sender in (Sender("me@sender.example", _payload(ch)), Sender(f"me{ch}@sender.example")):
        with pytest.raises(HeaderValueError) as info:
            render(t, row(line=30), sender)
        assert (info.value.row, info.value.field) == (30, "from")
    with pytest.raises(HeaderValueError) as info:
        render(t, row(line=30), SENDER, reply_to=Sender("r@sender.example", _payload(ch)))
    assert (info.value.row, info.value.field) == (30, "reply_to")


@pytest.mark.parametrize("kind", INJECTIONS)
def test_control_in_recipient_address(kind: str) -> None:
    ch, _ = INJECTIONS[kind]
    with pytest.raises(HeaderValueError) as info:
        render(Template("s", text="x"), row(line=40, email_addr=f"bob{ch}@example.com"), SENDER)
    assert (info.value.row, info.value.field) == (40, "to")


@pytest.mark.parametrize("kind", INJECTIONS)
def test_parse_sender_refuses_controls(kind: str) -> None:
    ch, words = INJECTIONS[kind]
    for text in (f"Me{ch} <me@sender.example>", f"me@sender.example{ch}Bcc: x@evil.example"):
        with pytest.raises(SettingsError) as info:
            parse_sender(text)
        assert info.value.field == "from"
        assert words in info.value.message


def test_message_id_domain_is_checked_too() -> None:
    with pytest.raises(HeaderValueError) as info:
        render(Template("s", text="x"), row(line=2), SENDER, message_id_domain="a.example\r\nX: y")
    assert info.value.field == "message_id"


def test_encoded_word_in_a_name_is_refused() -> None:
    # Python decodes =?...?= inside the names we hand it and would write the decoded CRLF
    # out raw: a second, hidden way to inject a header (checked here, never sent).
    evil = "=?utf-8?q?Bob=0D=0ABcc:_victim@evil.example?="
    with pytest.raises(HeaderValueError) as info:
        render(Template("s", text="x"), row(line=7, name=evil), SENDER)
    assert (info.value.row, info.value.field) == (7, "name")
    with pytest.raises(HeaderValueError) as info:
        render(Template("s", text="x"), row(line=7), Sender("me@sender.example", evil))
    assert (info.value.row, info.value.field) == (7, "from")
    with pytest.raises(SettingsError):
        parse_sender(f"{evil} <me@sender.example>")


def test_encoded_word_in_the_subject_is_sent_as_literal_text() -> None:
    evil = "=?utf-8?q?Hi=0D=0ABcc:_victim@evil.example?="
    msg = render(Template("{{ s }}", text="x"), row(s=evil), SENDER)
    got = parse(msg)
    assert "Bcc" not in got
    assert str(got["Subject"]) == evil


def test_plain_text_names_with_question_marks_are_fine() -> None:
    got = parse(render(Template("s", text="x"), row(name="Who =? me"), SENDER))
    assert got["To"].addresses[0].display_name == "Who =? me"


# --- the sender --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "address", "name"),
    [
        ("Me <me@example.com>", "me@example.com", "Me"),
        ("  Jörg Müller   <me@Example.COM>  ", "me@example.com", "Jörg Müller"),
        ('"Doe, John" <john@example.com>', "john@example.com", "Doe, John"),
        ('"Say \\"hi\\"" <hi@example.com>', "hi@example.com", 'Say "hi"'),
        ("me@example.com", "me@example.com", None),
        ("<me@example.com>", "me@example.com", None),
        ("Shop <shop@bücher.example>", "shop@xn--bcher-kva.example", "Shop"),
    ],
)
def test_parse_sender_accepts(text: str, address: str, name: str | None) -> None:
    assert parse_sender(text) == Sender(address, name)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        "Me",
        "Me <>",
        "Me <me@>",
        "Me <me@example>",
        "me@example.com>",
        "Me <me@example.com",
        "a <b@example.com> <c@example.com>",
        "jörg@example.com",
        "two@example.com, three@example.com",
    ],
)
def test_parse_sender_refuses(text: str) -> None:
    with pytest.raises(SettingsError) as info:
        parse_sender(text)
    assert info.value.field == "from"
    assert info.value.message.startswith("from: ")


def test_parse_sender_error_can_name_another_field() -> None:
    with pytest.raises(SettingsError) as info:
        parse_sender("nope", field="reply_to")
    assert info.value.field == "reply_to"
    assert info.value.category == "invalid_address"


def test_unicode_sender_domain_is_sent_as_idna_and_used_for_message_id() -> None:
    msg = render(Template("s", text="x"), row(), Sender("me@bücher.example", "Me"))
    got = parse(msg)
    assert got["From"].addresses[0].addr_spec == "me@xn--bcher-kva.example"
    assert got["Message-ID"].endswith("@xn--bcher-kva.example>")


# --- check_all ---------------------------------------------------------------------------


def test_check_all_returns_every_failing_row() -> None:
    t = Template("Hi {{ name }} {{ s | default('') }}", html="<p>{{ code }}</p>")
    rows = [
        row(line=2, name="Ann", code="1"),  # fine
        row(line=3, name="Bob"),  # no code
        row(line=4, name="Cy\nBcc: x@evil.example", code="1"),  # name -> subject and To
        row(line=5, name="Di", code="1", s="x\r\ny"),  # subject via another field
        row(line=6, code="1"),  # no name: subject fails
        row(line=7, name="Ed", code="1"),  # fine
        row(line=8, email_addr="not-an-address", name="Fi", code="1"),
    ]
    problems = check_all(t, rows, SENDER)
    found = [(p.row, p.field) for p in problems]
    assert found == [
        (3, "code"),
        (4, "subject"),
        (4, "name"),
        (5, "subject"),
        (6, "name"),
        (8, "to"),
    ]
    assert all(isinstance(p, TemplateError) for p in problems)
    assert all(p.message.startswith(f"line {p.row}: ") for p in problems)
    # render agrees row by row: the rows check_all passes build, the others raise
    for r in rows:
        if r.line in {2, 7}:
            render(t, r, SENDER)
        else:
            with pytest.raises(TemplateError):
                render(t, r, SENDER)


def test_check_all_reports_a_bad_sender_once() -> None:
    t = Template("s", text="x")
    rows = [row(line=i) for i in range(2, 50)]
    problems = check_all(t, rows, Sender("me@sender.example", "Me\r\nBcc: x@evil.example"))
    assert [(p.row, p.field) for p in problems] == [(None, "from")]
    problems = check_all(t, rows, SENDER, reply_to="broken")
    assert [(p.row, p.field) for p in problems] == [(None, "reply_to")]


def test_check_all_is_empty_when_all_rows_are_fine() -> None:
    t = Template("Hi {{ name }}", html="<p>{{ name }}</p>", text="{{ name }}")
    assert check_all(t, (row(line=i, name=f"N{i}") for i in range(100)), SENDER) == []


def test_check_all_finds_the_one_bad_row_among_many() -> None:
    # Speed is measured by benchmarks/bench_compose.py, not asserted here.
    t = Template(
        "Your order {{ order }}, {{ name | default('friend') }}",
        html='<p>Hi {{ name }}</p><p><a href="https://shop.example/o/{{ order }}">Order</a></p>',
        text="Hi {{ name }}, order {{ order }}",
    )
    rows = [
        row(line=i + 2, email_addr=f"user{i}@example.com", name=f"Jörg Nummer {i}", order=str(i))
        for i in range(5_000)
    ]
    rows[500] = row(line=502, email_addr="x@example.com", order="1")  # no name for the body
    problems = check_all(t, rows, SENDER)
    assert [(p.row, p.field) for p in problems] == [(502, "name"), (502, "name")]


# --- property: no header can be injected through the subject ---------------------------

FORBIDDEN = {chr(c) for c in range(0x110000) if unicodedata.category(chr(c)) == "Cc"}
FORBIDDEN |= {"\u2028", "\u2029"}
TRICKY = st.sampled_from(
    list(" \t\r\n\x00\x0b\x1b\x85\u2028\u2029=?_:;,.<>\"'\\()@ éß中😀\u00a0\u200bxX")
    + ["=?utf-8?q?", "?=", "=?utf-8?b?QQ==?=", "Bcc: a@b.example", "\r\nBcc: a@b.example"]
)
TEXT_PLAIN_HEADERS = [
    "From", "To", "Subject", "Date", "Message-ID", "MIME-Version",
    "Content-Type", "Content-Transfer-Encoding",
]  # fmt: skip


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(value=st.text(max_size=300) | st.lists(TRICKY, max_size=60).map("".join))
def test_subject_property_no_injection_and_exact_round_trip(value: str) -> None:
    t = Template("Hi {{ s }}", text="body")
    r = row(line=99, s=value)
    if any(ch in FORBIDDEN for ch in value):
        with pytest.raises(HeaderValueError) as info:
            render(t, r, SENDER)
        assert (info.value.row, info.value.field) == (99, "subject")
        return
    raw = bytes(render(t, r, SENDER))
    assert raw.isascii()
    for line in header_lines(raw):
        assert len(line) <= 78
    got = email.message_from_bytes(raw, policy=email.policy.default)
    assert got.keys() == TEXT_PLAIN_HEADERS
    assert not got.defects
    # Exact, whitespace included: compose folds the Subject itself, only ever before an
    # existing space (plain ASCII) or between encoded words (whose spaces are encoded
    # inside them), so unfolding and decoding give back every character.
    assert str(got["Subject"]) == "Hi " + value
    assert content(got) == "body\n"


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(name=st.text(max_size=80) | st.lists(TRICKY, max_size=30).map("".join))
def test_name_property_no_injection(name: str) -> None:
    t = Template("s", text="x")
    r = row(line=77, name=name)
    if any(ch in FORBIDDEN for ch in name) or re.search(r"=\?.*\?=", name):
        with pytest.raises(HeaderValueError) as info:
            render(t, r, SENDER)
        assert (info.value.row, info.value.field) == (77, "name")
        return
    raw = bytes(render(t, r, SENDER))
    assert raw.isascii()
    got = email.message_from_bytes(raw, policy=email.policy.default)
    assert got.keys() == TEXT_PLAIN_HEADERS
    (addr,) = got["To"].addresses
    assert addr.addr_spec == "bob@example.com"
    # Python's parser collapses runs of spaces in a display name and puts one between
    # adjacent encoded words, so only the non-space characters are compared exactly.
    assert "".join(addr.display_name.split()) == "".join(name.split())


@pytest.mark.parametrize(
    "body",
    ['{{ "x" * 2000000000 }}', "{{ [1] * 2000000000 }}", "{{ 10 ** 100000 }}",
     "{% for i in range(100000) %}{{ 'y' * 200 }}{% endfor %}"],
)
def test_templates_cannot_exhaust_memory(body: str) -> None:
    t = Template("s", text=body)
    with pytest.raises(TemplateError) as info:
        render_parts(t, row(line=3))
    assert info.value.row == 3
    assert "too large" in str(info.value) or "longer than" in str(info.value)


# --- attachments ------------------------------------------------------------------------

PDF = Attachment("report.pdf", "application/pdf", b"%PDF-1.4\n" + bytes(range(256)) * 4)
CSV = Attachment("Übersicht März.csv", "text/csv", "a;b\nä;ß\n".encode())


def test_attachments_wrap_the_alternative_in_multipart_mixed() -> None:
    t = Template("s", html="<p>Hi</p>", text="Hi")
    raw = bytes(render(t, row(), SENDER, attachments=[PDF, CSV]))
    got = email.message_from_bytes(raw, policy=email.policy.default)
    assert got.get_content_type() == "multipart/mixed"
    alt, pdf, csv = got.iter_parts()
    assert alt.get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in alt.iter_parts()] == ["text/plain", "text/html"]
    assert (pdf.get_filename(), pdf.get_content_type(), pdf.get_content()) == (
        "report.pdf", "application/pdf", PDF.data)
    assert (csv.get_filename(), csv.get_content_type()) == ("Übersicht März.csv", "text/csv")
    assert csv.get_payload(decode=True) == CSV.data
    for part in (pdf, csv):
        assert part.get_content_disposition() == "attachment"
        assert part["Content-Transfer-Encoding"] == "base64"
    # MIME-Version on the top level only, whatever set_content/add_attachment stamp on parts.
    assert [p for p in got.walk() if "MIME-Version" in p] == [got]
    assert raw.isascii()
    body_lines = raw.split(b"\r\n\r\n", 1)[1].split(b"\r\n")
    assert all(len(line) <= 76 for line in body_lines)
    # RFC 2231 for the non-ASCII name, a plain quoted string for the ASCII one.
    assert b"filename*=utf-8''%C3%9Cbersicht%20M%C3%A4rz.csv" in raw
    assert b'filename="report.pdf"' in raw


def test_text_only_message_with_an_attachment() -> None:
    got = parse(render(Template("s", text="Hi {{ name }}"), row(name="Bo"), SENDER, attachments=[PDF]))
    assert got.get_content_type() == "multipart/mixed"
    text, pdf = got.iter_parts()
    assert text.get_content_type() == "text/plain" and content(text) == "Hi Bo\n"
    assert pdf.get_filename() == "report.pdf"
    assert got.keys() == ["From", "To", "Subject", "Date", "Message-ID", "MIME-Version", "Content-Type"]


def test_attachments_must_be_attachment_objects() -> None:
    with pytest.raises(TypeError):
        render(Template("s", text="x"), row(), SENDER, attachments=[b"data"])  # type: ignore[list-item]


# --- List-Unsubscribe --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "mailto", "url"),
    [
        (["mailto:unsub@list.example"], "mailto:unsub@list.example", None),
        (["https://list.example/u?id=1"], None, "https://list.example/u?id=1"),
        ([" https://list.example/u ", "MAILTO:unsub@list.example?subject=unsubscribe"],
         "mailto:unsub@list.example?subject=unsubscribe", "https://list.example/u"),
        (["HTTPS://list.example:8443/u#x"], None, "https://list.example:8443/u#x"),
        (["https://list.example/u?e={{ email }}&n={{ name | default('') }}"], None,
         "https://list.example/u?e={{ email }}&n={{ name | default('') }}"),
        (["https://[2001:db8::1]/u"], None, "https://[2001:db8::1]/u"),
        (["mailto:unsub%2Blist@list.example"], "mailto:unsub%2Blist@list.example", None),
    ],
)  # fmt: skip
def test_parse_unsubscribe_accepts(values: list[str], mailto: str | None, url: str | None) -> None:
    assert parse_unsubscribe(values) == Unsubscribe(mailto=mailto, url=url)


def test_parse_unsubscribe_without_values_is_none() -> None:
    assert parse_unsubscribe([]) is None
    assert parse_unsubscribe(["", "  "]) is None
    assert parse_unsubscribe("mailto:u@list.example") == Unsubscribe(mailto="mailto:u@list.example")


@pytest.mark.parametrize(
    ("value", "words"),
    [
        ("http://list.example/u", "needs https://"),
        ("HTTP://list.example/u", "needs https://"),
        ("ftp://list.example/u", "neither a mailto: address nor an https:// link"),
        ("javascript:alert(1)", "neither"),
        ("unsub@list.example", "neither"),
        ("{{ link }}", "neither"),
        ("mailto:", "no address"),
        ("mailto:?subject=x", "no address"),
        ("mailto:not-an-address", "valid email address"),
        ("mailto:a@list.example,b@list.example", "several addresses"),
        ("mailto:jörg@list.example", "percent-encoded"),
        ("mailto:a b@list.example", "a space"),
        ("https://list.example/a b", "a space"),
        ("https://list.example/<script>", "'<'"),
        ('https://list.example/"x"', "'\"'"),
        ("https://list.example/é", "percent-encoded"),
        ("https://bücher.example/u", "percent-encoded"),
        ("https://list.example/%zz", "%XX"),
        ("https://user:pw@list.example/u", "user name or password"),
        ("https:///u", "no valid host"),
        ("https://[zz]/u", "not a valid link"),
        ("https://list.example]/u", "not a valid link"),
        ("https://[{{ host }}]/u", "not a valid link"),
        ("https://list..example/u", "no valid host"),
        ("https://list.example:99999/u", "port"),
        ("https://list.example/u\r\nBcc: x@y.example", "line break"),
        ("https://list.example/\x00", "NUL"),
        ("https://list.example/{{ email ", "error"),
        ("https://list.example/" + "a" * 900, "at most 900"),
    ],
)  # fmt: skip
def test_parse_unsubscribe_refuses(value: str, words: str) -> None:
    with pytest.raises(SettingsError) as info:
        parse_unsubscribe([value])
    assert info.value.field == "unsubscribe"
    assert words in info.value.message


def test_parse_unsubscribe_refuses_two_of_a_kind() -> None:
    with pytest.raises(SettingsError, match="one mailto: address, not two"):
        parse_unsubscribe(["mailto:a@list.example", "mailto:b@list.example"])
    with pytest.raises(SettingsError, match="one https: address"):
        parse_unsubscribe(["https://a.example/", "https://b.example/"])


def test_list_unsubscribe_headers_exact_with_one_click_for_https() -> None:
    both = parse_unsubscribe(["mailto:unsub@list.example?subject=stop", "https://list.example/u?id=7"])
    raw = bytes(render(Template("s", text="x"), row(), SENDER, unsubscribe=both))
    lines = header_lines(raw)
    assert b"List-Unsubscribe: <https://list.example/u?id=7>," in lines
    assert b" <mailto:unsub@list.example?subject=stop>" in lines
    assert b"List-Unsubscribe-Post: List-Unsubscribe=One-Click" in lines
    got = email.message_from_bytes(raw, policy=email.policy.default)
    assert got["List-Unsubscribe"] == (
        "<https://list.example/u?id=7>, <mailto:unsub@list.example?subject=stop>"
    )
    assert got["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert got.keys() == [
        "From", "To", "Subject", "Date", "Message-ID", "List-Unsubscribe",
        "List-Unsubscribe-Post", "MIME-Version", "Content-Type", "Content-Transfer-Encoding",
    ]  # fmt: skip


def test_mailto_only_has_no_one_click_post_header() -> None:
    unsub = parse_unsubscribe(["mailto:unsub@list.example"])
    raw = bytes(render(Template("s", text="x"), row(), SENDER, unsubscribe=unsub))
    assert b"List-Unsubscribe: <mailto:unsub@list.example>\r\n" in raw
    assert b"List-Unsubscribe-Post" not in raw
    https_only = parse_unsubscribe(["https://list.example/u"])
    got = parse(render(Template("s", text="x"), row(), SENDER, unsubscribe=https_only))
    assert got["List-Unsubscribe"] == "<https://list.example/u>"
    assert got["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert "List-Unsubscribe" not in parse(render(Template("s", text="x"), row(), SENDER))


def test_unsubscribe_link_is_filled_in_per_recipient_with_values_url_encoded() -> None:
    unsub = parse_unsubscribe([
        "https://list.example/u?e={{ email }}&n={{ name }}&id={{ id | urlencode }}",
        "mailto:unsub@list.example?subject=unsubscribe%20{{ email }}",
    ])
    assert unsub.fields == {"email", "name", "id"}
    values = [("a+b@example.com", "Zoë & Co/?#=", "x y"), ("c@example.com", "Bob", "42")]
    for line, (addr, name, ident) in enumerate(values, start=2):
        got = parse(render(Template("s", text="x"), row(line, addr, name=name, id=ident), SENDER,
                           unsubscribe=unsub))
        https, mailto = re.fullmatch(r"<([^<>]+)>, <([^<>]+)>", str(got["List-Unsubscribe"])).groups()
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(https).query)
        assert query == {"e": [addr], "n": [name], "id": [ident]}
        assert mailto == "mailto:unsub@list.example?subject=unsubscribe%20" + urllib.parse.quote(addr, safe="")
    first = parse(render(Template("s", text="x"), row(2, values[0][0], name=values[0][1], id="x y"),
                         SENDER, unsubscribe=unsub))
    # | urlencode is not encoded twice; everything else is encoded, "/" included.
    assert "&id=x%20y>" in str(first["List-Unsubscribe"])
    assert "n=Zo%C3%AB%20%26%20Co%2F%3F%23%3D&" in str(first["List-Unsubscribe"])


def test_hostile_values_in_the_link_are_encoded_not_injected() -> None:
    unsub = parse_unsubscribe(["https://list.example/u?v={{ v }}"])
    for value in ["\r\nBcc: x@evil.example", "> , <https://evil.example/>", "{{ 7*7 }}", "\x00\x85\u2028"]:
        raw = bytes(render(Template("s", text="x"), row(v=value), SENDER, unsubscribe=unsub))
        got = email.message_from_bytes(raw, policy=email.policy.default)
        assert got.keys()[:7] == ["From", "To", "Subject", "Date", "Message-ID",
                                  "List-Unsubscribe", "List-Unsubscribe-Post"]
        assert "Bcc" not in got
        assert got["List-Unsubscribe"] == f"<https://list.example/u?v={urllib.parse.quote(value, safe='')}>"


def test_unsubscribe_field_missing_or_invalid_after_filling_in_is_a_row_error() -> None:
    unsub = parse_unsubscribe(["https://list.example/u?id={{ member_id }}"])
    with pytest.raises(TemplateError) as info:
        render(Template("s", text="x"), row(line=6), SENDER, unsubscribe=unsub)
    assert (info.value.row, info.value.field) == (6, "member_id")
    assert "unsubscribe address" in info.value.message
    host = parse_unsubscribe(["https://{{ host }}/u"])
    with pytest.raises(TemplateError) as info:
        render(Template("s", text="x"), row(line=7, host="a b"), SENDER, unsubscribe=host)
    assert (info.value.row, info.value.field) == (7, "unsubscribe")
    assert "no valid host name" in info.value.message
    with pytest.raises(TemplateError, match="at most 900"):
        render(Template("s", text="x"), row(line=8, member_id="é" * 200), SENDER, unsubscribe=unsub)
    problems = check_all(Template("s", text="x"),
                         [row(line=2, member_id="1"), row(line=3), row(line=4, member_id="é" * 200)],
                         SENDER, unsubscribe=unsub)
    assert [(p.row, p.field) for p in problems] == [(3, "member_id"), (4, "unsubscribe")]


def test_unsubscribe_built_directly_is_checked_when_rendering() -> None:
    with pytest.raises(TemplateError, match="not an https:// link"):
        render(Template("s", text="x"), row(), SENDER, unsubscribe=Unsubscribe(url="http://x.example/"))
    with pytest.raises(TemplateError, match="does not start with mailto:"):
        render(Template("s", text="x"), row(), SENDER, unsubscribe=Unsubscribe(mailto="x@y.example"))


def test_long_unsubscribe_addresses_fold_between_entries_only() -> None:
    url = "https://list.example/unsubscribe?token=" + "A1b2" * 60
    unsub = parse_unsubscribe([url, "mailto:unsubscribe-" + "x" * 50 + "@list.example"])
    raw = bytes(render(Template("s", text="x"), row(), SENDER, unsubscribe=unsub))
    lines = [line for line in header_lines(raw) if b"unsubscribe" in line.lower()]
    assert lines[0] == b"List-Unsubscribe: <" + url.encode() + b">,"
    assert lines[1].startswith(b" <mailto:")
    assert all(len(line) <= 998 for line in lines)
    got = email.message_from_bytes(raw, policy=email.policy.default)
    assert str(got["List-Unsubscribe"]) == f"<{url}>, <{unsub.mailto}>"


# --- Unicode and SMTPUTF8 ----------------------------------------------------------------


def parse_utf8(raw: bytes) -> email.message.EmailMessage:
    """Parse a message with UTF-8 headers (RFC 6532); Python's bytes parser mangles them."""
    return email.message_from_string(raw.decode("utf-8"), policy=email.policy.default)


def test_smtputf8_puts_the_utf8_address_raw_in_the_to_header() -> None:
    r = row(line=4, email_addr="Jörg.Müller@bücher.example", name="Jörg Müller")
    msg = render(Template("Grüße", text="Hallo {{ name }}"), r, SENDER, smtputf8=True)
    assert msg.policy.utf8
    raw = bytes(msg)
    (to_line,) = [line for line in header_lines(raw) if line.startswith(b"To: ")]
    # The name as encoded words (still fine in UTF-8 headers), the address raw UTF-8.
    assert re.fullmatch(rb"To: =\?utf-8\?[bq]\?[!-~]+\?= <J\xc3\xb6rg\.M\xc3\xbcller@xn--bcher-kva\.example>", to_line)
    got = parse_utf8(raw)
    (to,) = got["To"].addresses
    assert (to.display_name, to.username, to.domain) == ("Jörg Müller", "Jörg.Müller", "xn--bcher-kva.example")
    assert got["Subject"] == "Grüße" and content(got) == "Hallo Jörg Müller\n"
    assert envelope_recipient(r, smtputf8=True) == "Jörg.Müller@xn--bcher-kva.example"
    with pytest.raises(TemplateError, match="does not offer SMTPUTF8") as info:
        envelope_recipient(r)
    assert (info.value.row, info.value.category) == (4, "invalid_address")


def test_smtputf8_leaves_ascii_messages_seven_bit() -> None:
    msg = render(Template("Grüße", text="ü"), row(email_addr="bob@bücher.example"), SENDER, smtputf8=True)
    assert not msg.policy.utf8 and bytes(msg).isascii()
    assert envelope_recipient(row(email_addr="bob@bücher.example"), smtputf8=True) == "bob@xn--bcher-kva.example"


def test_smtputf8_sender_with_a_non_ascii_local_part() -> None:
    raw = bytes(render(Template("s", text="x"), row(), Sender("jörg@sender.example", "Jörg"), smtputf8=True))
    (from_line,) = [line for line in header_lines(raw) if line.startswith(b"From: ")]
    assert from_line.endswith(" <jörg@sender.example>".encode())
    assert parse_utf8(raw)["From"].addresses[0].display_name == "Jörg"
    with pytest.raises(TemplateError, match="sender address 'jörg@sender.example' has non-ASCII"):
        render(Template("s", text="x"), row(), Sender("jörg@sender.example"))


def test_check_all_with_smtputf8_unknown_true_or_false() -> None:
    rows = [row(line=2, email_addr="jörg@example.com"), row(line=3, email_addr="ok@example.com"),
            row(line=4, email_addr="jö rg@example.com")]
    t = Template("s", text="x")
    assert [p.row for p in check_all(t, rows, SENDER, smtputf8=None)] == [4]
    assert [p.row for p in check_all(t, rows, SENDER, smtputf8=True)] == [4]
    problems = check_all(t, rows, SENDER)  # smtputf8=False
    assert [(p.row, p.category) for p in problems] == [(2, "invalid_address"), (4, "invalid_address")]
    assert "does not offer SMTPUTF8" in problems[0].message


@dataclass
class OptionsHandler(RecordingHandler):
    """Also records each MAIL command's options (SMTPUTF8, BODY=...)."""

    mail_options: list[list[str]] = field(default_factory=list)

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        self.mail_options.append(list(mail_options))
        return await super().handle_MAIL(server, session, envelope, address, mail_options)


def _plain_transport(server) -> SmtpTransport:
    return SmtpTransport(SmtpSettings(host=server.host, port=server.port, security="none", timeout=5))


UNICODE_SUBJECTS = ["Grüße aus Köln, Düsseldorf", "Привет, {{ name }}!", "東京の会議 – 議事録",
                    "مرحبا 👋 emoji 😀 " + "long " * 20, "Ελληνικά: Καλημέρα"]


def test_unicode_round_trips_through_a_real_server(smtp_server) -> None:
    server = smtp_server("plain", auth=False)
    t = _plain_transport(server)
    t.open()
    people = [row(line=i + 2, email_addr=addr, name=name) for i, (addr, name) in enumerate([
        ("ann@bücher.example", "Ännchen Müller"), ("bob@example.org", "Бob Иванов"),
        ("cy@example.org", "陈 伟"), ("dee@example.org", 'Dee "D" O\'Brien, Jr.'),
        ("eve@example.org", "Ève 😀")])]
    sender = Sender("me@sender.example", "Zoë's Shop")
    sent = []
    for subject, r in zip(UNICODE_SUBJECTS, people, strict=True):
        tmpl = Template(subject, html="<p>Liebe(r) {{ name }}, ½ € → ✓</p>", text="Hallo {{ name }} – ½ € → ✓")
        msg = render(tmpl, r, sender)
        t.send(Envelope(sender.address, (envelope_recipient(r),)), msg.as_bytes())
        sent.append((r, subject.replace("{{ name }}", r.fields["name"])))
    t.close()
    assert [m.rcpt_tos for m in server.messages] == [
        ["ann@xn--bcher-kva.example"], ["bob@example.org"], ["cy@example.org"], ["dee@example.org"],
        ["eve@example.org"]]
    for received, (r, subject) in zip(server.messages, sent, strict=True):
        assert received.data.isascii()
        got = email.message_from_bytes(received.data, policy=email.policy.default)
        assert str(got["Subject"]) == subject
        (to,) = got["To"].addresses
        assert to.display_name == r.fields["name"]
        (frm,) = got["From"].addresses
        assert frm.display_name == "Zoë's Shop"
        text, html = got.iter_parts()
        assert content(text) == f"Hallo {r.fields['name']} – ½ € → ✓\n"
        assert content(html) == f"<p>Liebe(r) {escape(r.fields['name'])}, ½ € → ✓</p>\n"


def test_smtputf8_recipient_is_delivered_when_the_server_offers_it(smtp_server) -> None:
    handler = OptionsHandler()
    server = smtp_server("plain", auth=False, smtputf8=True, handler=handler)  # the default
    t = _plain_transport(server)
    assert not t.supports_smtputf8  # not known before the connection is open
    t.open()
    assert t.supports_smtputf8
    r = row(line=3, email_addr="jörg@bücher.example", name="Jörg")
    unsub = parse_unsubscribe(["https://list.example/u?e={{ email }}"])
    msg = render(Template("Grüße, {{ name }}", text="Hallo {{ name }}"), r, SENDER,
                 smtputf8=t.supports_smtputf8, unsubscribe=unsub)
    t.send(Envelope(SENDER.address, (envelope_recipient(r, smtputf8=True),)), msg.as_bytes())
    # The next, plain ASCII message on the same connection goes without SMTPUTF8.
    plain = row(line=4, email_addr="bob@example.org")
    t.send(Envelope(SENDER.address, (plain.email,)), render(Template("s", text="x"), plain, SENDER).as_bytes())
    t.close()
    first, second = server.messages
    assert first.rcpt_tos == ["jörg@xn--bcher-kva.example"]
    assert handler.mail_options == [["SMTPUTF8", "BODY=8BITMIME"], []]
    got = parse_utf8(first.data)
    (to,) = got["To"].addresses
    assert (to.display_name, to.username) == ("Jörg", "jörg")
    assert got["Subject"] == "Grüße, Jörg" and content(got) == "Hallo Jörg\n"
    assert got["List-Unsubscribe"] == "<https://list.example/u?e=j%C3%B6rg%40b%C3%BCcher.example>"
    assert second.rcpt_tos == ["bob@example.org"] and second.data.isascii()


def test_smtputf8_recipient_fails_clearly_when_the_server_does_not_offer_it(smtp_server) -> None:
    server = smtp_server("plain", auth=False, smtputf8=False)
    t = _plain_transport(server)
    t.open()
    assert not t.supports_smtputf8
    r = row(line=5, email_addr="jörg@example.com")
    with pytest.raises(TemplateError) as info:
        render(Template("s", text="x"), r, SENDER, smtputf8=t.supports_smtputf8)
    assert (info.value.row, info.value.category) == (5, "invalid_address")
    assert "non-ASCII characters before the @; the server does not offer SMTPUTF8" in info.value.message
    # A message built for a server that has SMTPUTF8 is refused before MAIL, not sent garbled.
    msg = render(Template("s", text="x"), r, SENDER, smtputf8=True)
    commands_before = list(server.handler.commands)
    with pytest.raises(RejectedError) as refused:
        t.send(Envelope(SENDER.address, ("jörg@example.com",)), msg.as_bytes())
    assert refused.value.category == "invalid_address" and refused.value.code is None
    assert "jörg@example.com has non-ASCII characters before the @" in refused.value.message
    assert "does not offer SMTPUTF8" in refused.value.message
    assert server.handler.commands == commands_before  # no MAIL, no RCPT
    # The same connection carries on with the next recipient.
    ok = row(line=6, email_addr="ok@example.org")
    t.send(Envelope(SENDER.address, (ok.email,)), render(Template("s", text="x"), ok, SENDER).as_bytes())
    t.close()
    assert [m.rcpt_tos for m in server.messages] == [["ok@example.org"]]


# --- property: hostile field values never inject headers or run as template code ----------

FIELD_TEXT = st.text(max_size=60) | st.lists(
    TRICKY | st.sampled_from(["{{ 7*7 }}", "{% for i in range(9) %}x{% endfor %}", "{{", "}}",
                              "{#", "%0D%0A", "<https://evil.example/>", ">,<"]),
    max_size=12,
).map("".join)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(subject=FIELD_TEXT, name=FIELD_TEXT, body=FIELD_TEXT, link=FIELD_TEXT)
def test_hostile_field_values_inject_no_header_and_run_no_template_code(
    subject: str, name: str, body: str, link: str
) -> None:
    t = Template("Re: {{ s }}", html="<p>{{ b }}</p>", text="{{ b }}")
    unsub = parse_unsubscribe(["https://list.example/u?v={{ u }}", "mailto:u@list.example?subject={{ u }}"])
    r = row(line=42, s=subject, name=name, b=body, u=link)
    parts = render_parts(t, r)  # data is data: never evaluated as a template
    assert (parts.subject, parts.text, parts.html) == ("Re: " + subject, body, f"<p>{escape(body)}</p>")
    bad_header = any(ch in FORBIDDEN for ch in subject + name) or re.search(r"=\?.*\?=", name)
    if bad_header or _has_surrogate(subject + name + body + link):
        with pytest.raises(TemplateError) as info:
            render(t, r, SENDER, unsubscribe=unsub)
        assert info.value.row == 42
        return
    raw = bytes(render(t, r, SENDER, unsubscribe=unsub))
    assert raw.isascii()
    got = email.message_from_bytes(raw, policy=email.policy.default)
    assert got.keys() == [
        "From", "To", "Subject", "Date", "Message-ID", "List-Unsubscribe",
        "List-Unsubscribe-Post", "MIME-Version", "Content-Type",
    ]  # fmt: skip
    assert not got.defects
    assert str(got["Subject"]) == "Re: " + subject
    (to,) = got["To"].addresses
    assert to.addr_spec == "bob@example.com"
    quoted = urllib.parse.quote(link, safe="")
    assert str(got["List-Unsubscribe"]) == (
        f"<https://list.example/u?v={quoted}>, <mailto:u@list.example?subject={quoted}>"
    )
    assert [p.get_content_type() for p in got.iter_parts()] == ["text/plain", "text/html"]


def _has_surrogate(text: str) -> bool:
    return any("\ud800" <= ch <= "\udfff" for ch in text)
