"""The cheap per-recipient path (compose.Skeleton) builds what render() builds, row for row."""

from __future__ import annotations

import email
import email.policy
import re
from datetime import UTC, datetime

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from backend import compose, service
from backend.attachments import Attachment
from backend.compose import Sender, Skeleton, Template, parse_unsubscribe, render
from backend.errors import HeaderValueError, TemplateError
from backend.recipients import Recipient, parse_text

WHEN = datetime(2026, 5, 6, 7, 8, 9, tzinfo=UTC)
PDF = Attachment("Rechnung für Jörg.pdf", "application/pdf", b"%PDF-1.4 " + bytes(range(256)) * 8)
CSV = Attachment("list.csv", "text/csv", b"a,b\r\n1,2\r\n")
LONG = "Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor incididunt. "

NAMES = ["Ann", "", "  ", "Jörg Müller", "Müller, Jörg", 'Bob "The Builder" Smith', "O'Brien",
         "李小龙", "x" * 90, "Dr. Who =? me", "Zoë " * 30, "a\\b", "Ünïcödé, Inc.: Sales"]
ADDRESSES = ["bob@example.com", "Bob.Smith+tag@Example.ORG", "bob@bücher.example",
             "user_name-1@sub.domain.example", '"quoted local"@example.com', "jörg@example.com"]
SUBJECTS = ["Hello {{ name }}", "Grüße, {{ name }}!", "Your code {{ code }} " + LONG,
            "=?utf-8?q?looks_encoded?= {{ code }}", "{{ code }}" + "x" * 120, "日本語の件名 {{ code }}"]
BODIES = [
    ("<p>Hi {{ name }}</p>", "Hi {{ name }}"),
    ("<p>Hi {{ name }}</p>" + "<p>" + LONG * 3 + "</p>", None),  # one long line; text made from HTML
    (None, "Hi {{ name }},\n" + LONG + "\n" + "ü" * 200 + "\n"),  # long non-ASCII line
    ("<p>{{ name }} &amp; {{ code }}</p>", "a\tb {{ code }}\x0bc\n\n.\nFrom me\n"),  # controls: QP
    (None, "\n".join(f"line {i} {{{{ code }}}} é" for i in range(30))),  # many short non-ASCII lines
    ("<html><body>" + "<p>" + "α" * 300 + "</p></body></html>", "ok " * 40),
    (None, "-- \n--===============0000000000000000000==\nsignature"),
]


def normalised(data: bytes) -> bytes:
    """The bytes with what is random per message (boundaries, Message-ID) made the same."""
    for n, boundary in enumerate(dict.fromkeys(re.findall(rb'boundary="([^"]+)"', data))):
        data = data.replace(boundary, b"BOUNDARY%d" % n)
    return re.sub(rb"Message-ID: <[^>]+>", b"Message-ID: <ID>", data)


def structure(msg: email.message.EmailMessage) -> list[tuple]:
    """Every part: its type, transfer encoding, file name and decoded content."""
    out = []
    for part in msg.walk():
        payload = None if part.is_multipart() else part.get_payload(decode=True)
        out.append((part.get_content_type(), part.get("Content-Transfer-Encoding"), part.get_filename(),
                    part.get_content_charset(), payload))
    return out


ME = Sender("me@example.com", "Me")


def both(template: Template, recipient: Recipient, sender: Sender = ME,
         **kw) -> tuple[bytes, bytes]:
    own = kw.pop("own", ())
    shared = kw.pop("attachments", ())
    slow = render(template, recipient, sender, attachments=[*shared, *own], now=WHEN, **kw)
    fast, message_id = Skeleton(template, sender, attachments=shared, **kw).build(recipient, own, now=WHEN)
    assert message_id == str(email.message_from_bytes(fast, policy=email.policy.default)["Message-ID"])
    return slow.as_bytes(), fast


def assert_same(slow: bytes, fast: bytes) -> None:
    a = email.message_from_bytes(slow, policy=email.policy.default)
    b = email.message_from_bytes(fast, policy=email.policy.default)
    assert [(k, str(v)) for k, v in a.items() if k not in ("Message-ID", "Content-Type")] == \
        [(k, str(v)) for k, v in b.items() if k not in ("Message-ID", "Content-Type")]
    assert structure(a) == structure(b)
    # Beyond meaning: the very same bytes, but for the per-message random parts.
    assert normalised(slow) == normalised(fast)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("address", ADDRESSES)
def test_names_and_addresses(name: str, address: str) -> None:
    t = Template("Hi {{ name }}", html="<p>{{ name }}</p>", text="{{ name }}")
    r = Recipient(address, {"name": name, "email": address}, 3)
    try:
        slow_error = None
        slow, fast = both(t, r, smtputf8=True)
    except (TemplateError, HeaderValueError) as exc:
        slow_error = exc
    if slow_error is not None:  # the same refusal, naming the same line and field
        with pytest.raises(type(slow_error)) as info:
            Skeleton(t, Sender("me@example.com"), smtputf8=True).build(r)
        assert (info.value.message, info.value.row, info.value.field) == \
            (slow_error.message, slow_error.row, slow_error.field)
        return
    assert_same(slow, fast)


@pytest.mark.parametrize("subject", SUBJECTS)
@pytest.mark.parametrize(("html", "text"), BODIES)
def test_subjects_and_bodies(subject: str, html: str | None, text: str | None) -> None:
    r = Recipient("ann@example.org", {"name": "Ann Lee", "code": "A<1>&é", "email": "ann@example.org"}, 2)
    assert_same(*both(Template(subject, html=html, text=text), r))


@pytest.mark.parametrize("shared", [(), (PDF,), (PDF, CSV)])
@pytest.mark.parametrize("own", [(), (CSV,)])
@pytest.mark.parametrize("html", [None, "<p>Hi {{ name }}</p>"])
def test_attachments_shared_and_per_recipient(shared, own, html) -> None:
    r = Recipient("ann@example.org", {"name": "Ann", "email": "ann@example.org"}, 2)
    assert_same(*both(Template("S", html=html, text="Hi {{ name }}"), r, attachments=shared, own=own))


def test_reply_to_unsubscribe_and_an_idn_sender() -> None:
    unsub = parse_unsubscribe(["https://example.com/u?e={{ email }}&n={{ name }}", "mailto:u@example.com"])
    r = Recipient("bob@bücher.example", {"name": "Bob", "email": "bob@bücher.example"}, 4)
    for reply in ("Help <help@example.com>", Sender("h@example.org", "Désk")):
        assert_same(*both(Template("S", text="x"), r, Sender("me@bücher.example", "Mé"),
                          reply_to=reply, unsubscribe=unsub))


def test_template_errors_name_the_same_line_and_field() -> None:
    t = Template("Hi {{ nme }}", text="x")
    r = Recipient("a@example.org", {"name": "A"}, 7)
    with pytest.raises(TemplateError) as slow:
        render(t, r, Sender("me@example.com"))
    with pytest.raises(TemplateError) as fast:
        Skeleton(t, Sender("me@example.com")).build(r)
    assert (fast.value.message, fast.value.row, fast.value.field) == \
        (slow.value.message, slow.value.row, slow.value.field)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(name=st.text(max_size=60), value=st.text(max_size=200), subject=st.text(max_size=60))
def test_any_values_build_the_same_or_fail_the_same(name: str, value: str, subject: str) -> None:
    t = Template("{{ s }}", html="<p>{{ v }}</p>", text="{{ v }}")
    r = Recipient("x@example.org", {"name": name, "v": value, "s": subject, "email": "x@example.org"}, 5)
    try:
        slow = render(t, r, Sender("me@example.com"), now=WHEN).as_bytes()
    except (TemplateError, HeaderValueError) as exc:
        with pytest.raises(type(exc)) as info:
            Skeleton(t, Sender("me@example.com")).build(r, now=WHEN)
        assert (info.value.message, info.value.row) == (exc.message, exc.row)
        return
    fast, _ = Skeleton(t, Sender("me@example.com")).build(r, now=WHEN)
    assert_same(slow, fast)


def test_the_draft_builds_the_skeleton_once_and_again_when_it_changes() -> None:
    draft = service.make_draft(parse_text("a@example.org\nb@example.org"), subject="S", html=None,
                               text="x", from_address="me@example.com")
    first = draft.skeleton(False)
    assert draft.skeleton(False) is first
    draft.outgoing(draft.recipients[0])
    assert draft.skeleton(False) is first
    draft.attachments = [PDF]  # the window adds files after the draft is made
    with_file = draft.outgoing(draft.recipients[1])
    assert draft.skeleton(False) is not first
    parsed = email.message_from_bytes(with_file.data, policy=email.policy.default)
    assert [a.get_filename() for a in parsed.iter_attachments()] == [PDF.filename]


def test_an_unusable_sender_is_refused_naming_the_row_as_before() -> None:
    draft = service.make_draft(parse_text("a@example.org"), subject="S", html=None, text="x",
                               from_address="me@example.com")
    draft.sender = Sender("me@example.com", "Evil\r\nBcc: x@example.org")
    assert draft.skeleton(False) is None
    with pytest.raises(HeaderValueError) as info:
        draft.outgoing(draft.recipients[0])
    assert info.value.row == 1 and info.value.field == "from"


def test_messages_differ_in_their_random_parts_only() -> None:
    r = Recipient("ann@example.org", {"name": "Ann", "email": "ann@example.org"}, 2)
    sk = Skeleton(Template("S", html="<p>x</p>", text="x"), Sender("me@example.com"), attachments=[PDF])
    (one, id1), (two, id2) = sk.build(r, now=WHEN), sk.build(r, now=WHEN)
    assert id1 != id2 and one != two and normalised(one) == normalised(two)


def test_policy_constants_are_what_the_skeleton_assumes() -> None:
    # The Skeleton writes CRLF lines, 78-column folds and 7-bit bodies, as POLICY does.
    assert (compose.POLICY.linesep, compose.POLICY.max_line_length, compose.POLICY.cte_type) == ("\r\n", 78, "7bit")


# --- check_all's shortcut for parts that only print fields ----------------------------------


def _problems_both_ways(template: Template, rows: list[Recipient]) -> tuple[list, list]:
    quick = compose.check_all(template, rows, Sender("me@example.com"))
    plans = template._plans
    template._plans = dict.fromkeys(plans)  # no shortcut: every part rendered for every row
    try:
        slow = compose.check_all(template, rows, Sender("me@example.com"))
    finally:
        template._plans = plans
    as_tuples = lambda found: [(p.message, p.row, p.field, p.category) for p in found]  # noqa: E731
    return as_tuples(quick), as_tuples(slow)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.dictionaries(st.sampled_from(["name", "code", "other"]), st.text(max_size=30), max_size=3),
                min_size=1, max_size=5))
def test_the_check_shortcut_finds_exactly_what_rendering_finds(values):
    template = Template("Hi {{ name }} {{ code }}", html="<p>{{ name }} &amp; {{ code }}</p>", text="{{ code }}")
    assert all(plan is not None for plan in template._plans.values())  # the shortcut applies here
    rows = [Recipient(f"p{i}@example.org", v, i + 2) for i, v in enumerate(values)]
    quick, slow = _problems_both_ways(template, rows)
    assert quick == slow


def test_the_check_shortcut_leaves_filters_and_logic_to_rendering():
    template = Template("{{ name | upper }}", html="{% if name %}<p>x</p>{% endif %}", text="{{ n + 1 }}")
    assert template._plans == {"subject": None, "html": None, "text": None}
    rows = [Recipient("a@example.org", {"name": "a\nb", "n": "x"}, 2), Recipient("b@example.org", {}, 3)]
    quick, slow = _problems_both_ways(template, rows)
    assert quick == slow and quick  # the same problems, found by rendering


def test_a_control_in_a_subjects_own_text_is_found_for_every_row():
    template = Template("Hi\r\nBcc: x@example.org {{ name }}", text="x")
    assert template._plans["subject"] is None
    rows = [Recipient("a@example.org", {"name": "A"}, 2), Recipient("b@example.org", {"name": "B"}, 3)]
    quick, slow = _problems_both_ways(template, rows)
    assert quick == slow and [row for _, row, _, _ in quick] == [2, 3]
