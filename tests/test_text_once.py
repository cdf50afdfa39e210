"""The text part of an HTML-only message: converted once per template, filled per recipient.

Compared with converting each recipient's own HTML (what every message got before) over
varied templates and rows: the same text, byte for byte, whichever way it was made.
"""

from __future__ import annotations

import itertools

import pytest

from backend.compose import Template, _TextPlan, html_to_text, render_parts
from backend.recipients import Recipient

TEMPLATES = [
    "<p>Hi {{ name }},</p><p>your code is <b>{{ code }}</b>.</p>",
    "<html><body>\n<h1>Hello {{ name }}</h1>\n<p>Lorem ipsum {{ city }} dolor.</p>\n"
    '<p><a href="https://example.com/c/{{ code }}">Open {{ code }}</a> in {{ city }}.</p>\n</body></html>\n',
    "<ul><li>{{ name }}</li><li>{{ city }}</li></ul><ol><li>{{ code }}</li></ol>",
    "<div><div>{{ name }}<br>{{ city }}<br/>{{ code }}</div></div>",
    '<p>{{ name }} &amp; co &lt;{{ code }}&gt;</p><img src="x.png" alt="logo">',
    "{{ name }}",
    "<p>A&nbsp;{{ name }}&nbsp;B</p><blockquote>{{ city }}</blockquote>",
    "<p>Dear {{name}}{{code}}, {{ name }} again</p>",
    "<h2>{{ city }}</h2><p><i>{{ name }}</i> - <em>{{ code }}</em></p><hr><p>end</p>",
]
# with logic, a table, a <pre>: each message converted, as before
PER_MESSAGE = [
    "<p>{% if city %}From {{ city }}{% endif %} {{ name }}</p>",
    "<p>{{ name | upper }}</p>",
    "<table><tr><td>{{ name }}</td><td>{{ code }}</td></tr></table>",
    "<pre>{{ name }}   {{ code }}</pre>",
    '<p style="color: {{ city }}">{{ name }}</p>',
]
VALUES = ["Ann", "Jörg Müller", "O'Brien & Sons <ltd>", "a  b", " lead", "trail ", "", "line\nbreak",
          "tab\there", "*stars* _under_ [link](x)", "😀 émoji", "שלום", "x" * 300, "1 < 2 > 0", "&amp;",
          "QzxMark0KramXzq", "non\u00a0breaking", "zero\u200bwidth"]


def rows():
    for i, (name, city, code) in enumerate(itertools.product(VALUES[:9], VALUES[6:], ["C0001", "x y", ""])):
        if i % 3 == 0 or name in ("Ann", "") or city in ("", "line\nbreak"):
            yield Recipient(f"p{i}@example.org", {"name": name, "city": city, "code": code}, i + 2)


@pytest.mark.parametrize("html", TEMPLATES + PER_MESSAGE)
def test_text_made_once_equals_text_made_per_message(html):
    template = Template("s", html=html)
    fast = 0
    checked = 0
    for recipient in rows():
        parts = render_parts(template, recipient)
        expected = html_to_text(parts.html)
        got = template.plain_text(parts, recipient.fields)
        assert got == expected, (recipient.fields, got, expected)
        plan = template._text_plan
        if isinstance(plan, _TextPlan) and plan.fill(recipient.fields) is not None:
            fast += 1
        checked += 1
    assert checked > 100
    if html in TEMPLATES:
        assert fast >= 20  # rows of plain values took the text made once
    else:
        assert fast == 0 and template._text_plan is None


def test_a_text_body_is_used_as_given():
    template = Template("s", html="<p>{{ name }}</p>", text="Hi {{ name }}")
    recipient = Recipient("a@example.org", {"name": "Ann"}, 2)
    assert template.plain_text(render_parts(template, recipient), recipient.fields) == "Hi Ann"
