"""The offline content check (backend/deliverability.py): every rule fires on a message made for
it and is silent on a clean one; a corpus of clean newsletters and spam-like messages; the
check in Review & send, `bulk-mailer check` and `send --dry-run`."""

from __future__ import annotations

import base64
import io
import json
import re
import zipfile
from pathlib import Path

import pytest

from backend import deliverability, service
from backend.app import LOCAL_INBOX, App
from backend.credentials import EncryptedFileStore
from backend.deliverability import (
    RULES,
    RULES_BY_ID,
    View,
    check,
    check_draft,
    check_message,
    verdict,
)
from backend.inbox import LocalInbox
from backend.inputs import AccountInput, MessageInput, SendOptions
from backend.recipients import parse_text
from tests.conftest import offline_detect
from tests.test_cli import run_cli

CORPUS = Path(__file__).parent / "deliverability"
TEXT = ("We planted two hundred tulip bulbs along the north fence last Saturday, and the first ones are "
        "already up. Our next meeting is on Tuesday at seven in the community hall; bring seeds to swap. ")
CLEAN_HTML = f'<p>Hello {{{{ name }}}},</p><p>{TEXT}</p><p><a href="https://club.example.org/notes">Read the notes</a></p>'


def built(html: str | None = CLEAN_HTML, *, text: str | None = None, subject: str = "The garden club's May letter",
          n: int = 3, sender: str = "Club <club@example.org>", relay: str | None = None, attach: tuple[Path, ...] = (),
          unsubscribe: bool = True, names: list[str] | None = None) -> deliverability.Report:
    """The check of a campaign built the way the app sends it: n recipients, a real draft."""
    rows = "email,name\n" + "\n".join(f"p{i}@example.org,{(names or [])[i] if names else f'Person {i}'}"
                                      for i in range(n))
    draft = service.make_draft(parse_text(rows), subject=subject, html=html, text=text, from_address=sender,
                               attach=list(attach), unsubscribe=["https://club.example.org/u"] if unsubscribe else [])
    return check_draft(draft, relay=relay)


def raw(*, html: str | None = "<p>" + TEXT + "</p>", text: str | None = TEXT, headers: str | None = None,
        html_cte: str = "8bit") -> bytes:
    """A message written by hand (what our own composer never makes)."""
    top = headers if headers is not None else (
        "From: a@example.org\r\nTo: b@example.org\r\nSubject: Club news\r\nDate: Mon, 2 Nov 2026 10:00:00 +0000\r\n"
        "Message-ID: <x1@example.org>\r\n")
    top += "MIME-Version: 1.0\r\n"
    html_body = base64.encodebytes(html.encode()).decode() if html and html_cte == "base64" else html
    html_part = f"Content-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: {html_cte}\r\n\r\n{html_body}\r\n"
    if text is None:
        return (top + html_part).encode()
    return (top + 'Content-Type: multipart/alternative; boundary="b"\r\n\r\n--b\r\n'
            f"Content-Type: text/plain; charset=utf-8\r\n\r\n{text}\r\n--b\r\n{html_part}--b--\r\n").encode()


def ids(report: deliverability.Report) -> set[str]:
    return {f.rule.id for f in report.findings}


def zipped(tmp_path: Path, name: str, inner: str) -> Path:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr(inner, b"MZ\x90\x00 not really a program")
    path = tmp_path / name
    path.write_bytes(buf.getvalue())
    return path


def file(tmp_path: Path, name: str, size: int = 100) -> Path:
    path = tmp_path / name
    path.write_bytes(b"x" * size)
    return path


# rule id -> (a check that fires it, a clean check of the same kind that does not)
CASES = {
    "no_text_part": (lambda t: check_message(raw(text=None)), lambda t: check_message(raw())),
    "short_text_part": (lambda t: built(text="See the web version."), lambda t: built()),
    "image_only": (lambda t: built('<a href="https://x.example.org/"><img src="https://x.example.org/b.jpg" alt="Sale"></a>'),
                   lambda t: built(CLEAN_HTML + '<img src="https://club.example.org/t.jpg" alt="Tulips">')),
    "image_heavy": (lambda t: built("<p>Our new collection is here: have a look at the pictures below.</p>"
                                    + '<img src="https://x.example.org/i.jpg" alt="A coat">' * 4),
                    lambda t: built(CLEAN_HTML + '<img src="https://x.example.org/i.jpg" alt="A coat">')),
    "clipped": (lambda t: built(CLEAN_HTML + "<p>" + "x" * 110_000 + "</p>"), lambda t: built()),
    "bad_message_id": (lambda t: check_message(raw(headers="From: a@example.org\r\nSubject: Club news\r\n"
                                                   "Date: Mon, 2 Nov 2026 10:00:00 +0000\r\nMessage-ID: 12345\r\n")),
                       lambda t: check_message(raw())),
    "bad_date": (lambda t: check_message(raw(headers="From: a@example.org\r\nSubject: Club news\r\n"
                                             "Message-ID: <x1@example.org>\r\n")),
                 lambda t: check_message(raw())),
    "caps_subject": (lambda t: built(subject="READ THIS BEFORE FRIDAY"), lambda t: built(subject="Read this before Friday")),
    "exclaim_subject": (lambda t: built(subject="Our May letter!!"), lambda t: built(subject="Our May letter!")),
    "spam_subject": (lambda t: built(subject="Free money for the club"), lambda t: built(subject="Money for the club")),
    "spam_body": (lambda t: built(f"<p>{TEXT} Act now: this is a limited time deal.</p>"),
                  lambda t: built(f"<p>{TEXT} Act now to get a seat.</p>")),
    "empty_subject": (lambda t: built(subject=" "), lambda t: built(subject="Club news")),
    "long_subject": (lambda t: built(subject="The garden club's letter for May, with the meeting, the trip to the gardens and the seed swap"),
                     lambda t: built(subject="The garden club's letter for May, with the meeting and the trip")),
    "url_shortener": (lambda t: built(CLEAN_HTML + '<a href="https://bit.ly/abc">notes</a>'),
                      lambda t: built(CLEAN_HTML + '<a href="https://bitly-fans.example.org/abc">notes</a>')),
    "mismatched_link": (lambda t: built(CLEAN_HTML + '<a href="https://evil.example.net/">www.mybank.com</a>'),
                        lambda t: built(CLEAN_HTML + '<a href="https://www.mybank.com/login">mybank.com/login</a>')),
    "http_link": (lambda t: built(CLEAN_HTML + '<a href="http://club.example.org/">site</a>'), lambda t: built()),
    "ip_link": (lambda t: built(CLEAN_HTML + '<a href="https://198.51.100.7/x">site</a>'),
                lambda t: built(CLEAN_HTML + '<a href="https://v198-51-100-7.example.org/x">site</a>')),
    "script_link": (lambda t: built(CLEAN_HTML + '<a href="javascript:alert(1)">open</a>'),
                    lambda t: built(CLEAN_HTML + '<a href="https://club.example.org/javascript:-guide">JS guide</a>')),
    "active_content": (lambda t: built(CLEAN_HTML + '<form action="https://x.example.org/"><input name="q"></form>'),
                       lambda t: built(CLEAN_HTML + "<p>Fill in the form on our site.</p>")),
    "hidden_text": (lambda t: built(CLEAN_HTML + '<span style="font-size:1px">cheap pills</span>'),
                    lambda t: built('<div style="display:none">Our May letter: tulips and a trip</div>' + CLEAN_HTML
                                    + '<a style="background:#0066cc;color:#ffffff" href="https://club.example.org/">Join</a>')),
    "base64_html": (lambda t: check_message(raw(html_cte="base64")),
                    lambda t: check_message(raw(html="<p>" + "Клуб садоводов: тюльпаны. " * 20 + "</p>", html_cte="base64"))),
    "missing_alt": (lambda t: built(CLEAN_HTML + '<img src="https://club.example.org/t.jpg">'),
                    lambda t: built(CLEAN_HTML + '<img src="https://club.example.org/t.jpg" alt="">'
                                    '<img src="https://club.example.org/p.gif" width="1" height="1">')),
    "executable_attachment": (lambda t: built(attach=(file(t, "setup.exe"),)), lambda t: built(attach=(file(t, "plan.pdf"),))),
    "archive_with_executable": (lambda t: built(attach=(zipped(t, "docs.zip", "viewer.js"),)),
                                lambda t: built(attach=(zipped(t, "docs.zip", "minutes.pdf"),))),
    "macro_attachment": (lambda t: built(attach=(file(t, "prices.xlsm"),)), lambda t: built(attach=(file(t, "prices.xlsx"),))),
    "size": (lambda t: built(attach=(file(t, "film.mov", 11 * 2**20),)), lambda t: built(attach=(file(t, "photo.jpg", 2 * 2**20),))),
    "no_unsubscribe": (lambda t: built(n=101, unsubscribe=False), lambda t: built(n=100, unsubscribe=False)),
    "freemail_relay": (lambda t: built(sender="Me <me@gmail.com>", relay="smtp.relay.example.net"),
                       lambda t: built(sender="Me <me@gmail.com>", relay="smtp.gmail.com")),
}


def test_every_rule_has_its_test_and_the_table_is_whole():
    assert set(CASES) == set(RULES_BY_ID)
    assert len(RULES) >= 25 and len(RULES_BY_ID) == len(RULES)
    for rule in RULES:
        assert rule.name and rule.looks_for and rule.why and rule.fix and rule.score > 0, rule.id
    # the kinds Review & send's page and its tests already know are rule ids
    assert {"http_link", "clipped", "no_text_part", "no_unsubscribe", "size"} <= set(RULES_BY_ID)


def test_a_free_mail_address_through_its_own_providers_server_is_fine():
    from backend.presets import PRESETS

    checked = 0
    for preset in PRESETS.values():
        for domain in (d for d in preset.domains if d in deliverability.FREEMAIL):
            assert deliverability.freemail_relay(View(sender=f"me@{domain}", relay=preset.host)) is None, preset.key
            checked += 1
    assert checked >= 15


@pytest.mark.parametrize("rule", sorted(CASES))
def test_the_rule_fires_on_a_message_made_for_it_and_is_silent_on_a_clean_one(rule, tmp_path):
    fires, clean = CASES[rule]
    found = fires(tmp_path)
    assert rule in ids(found), [f.as_dict() for f in found.findings]
    [finding] = [f for f in found.findings if f.rule.id == rule]
    assert finding.reason and finding.as_dict()["fix"] == RULES_BY_ID[rule].fix
    assert rule not in ids(clean(tmp_path))


def test_a_clean_message_has_no_finding_at_all():
    assert built().findings == []
    assert check_message(raw()).findings == []


def test_the_verdict_follows_the_score():
    assert [verdict(s) for s in (0, 1.5, 2, 4.5, 5, 20)] == [
        "Looks fine", "Looks fine", "Worth a look", "Worth a look", "Likely spam", "Likely spam"]
    report = check(View(subject="FREE MONEY!!!", html='<p>x</p><a href="http://198.51.100.1/">go</a>', text="x"))
    assert report.score == sum(f.rule.score for f in report.findings) and report.verdict == "Likely spam"


def test_subject_rules_run_row_by_row_when_the_subject_has_fields():
    report = built(subject="{{ name }}, our letter", n=5,
                   names=["Ann", "BOB", "WINNER WINNER CHICKEN DINNER", "Dee", "a very long name " * 5])
    found = {f.rule.id: f.reason for f in report.findings}
    assert "(for 1 recipient, line 4)" in found["caps_subject"]
    assert "'winner'" in found["spam_subject"] and "line 4" in found["spam_subject"]
    assert "line 6" in found["long_subject"]
    # the same subject for everyone: said once, without lines
    assert "line" not in {f.rule.id: f.reason for f in built(subject="FREE MONEY NOW").findings}["caps_subject"]


def test_a_field_bearing_subject_that_is_not_plain_text_is_rendered():
    report = built(subject="{{ name | upper }}: our letter for May", n=2, names=["ann", "bob"])
    assert "caps_subject" not in ids(report)
    report = built(subject="{{ name | upper }}: OUR LETTER FOR MAY", n=2, names=["ann", "bob"])
    assert "caps_subject" in ids(report)


def test_own_attachments_named_in_the_list_are_checked_row_by_row(tmp_path):
    folder = tmp_path / "files"
    folder.mkdir()
    for name in ("a.pdf", "b.pdf", "run.exe"):
        (folder / name).write_bytes(b"x")
    imported = parse_text("email,file\np0@example.org,a.pdf\np1@example.org,b.pdf\np2@example.org,run.exe\n")
    draft = service.make_draft(imported, subject="Your files", html=CLEAN_HTML.replace("{{ name }}", "there"),
                               text=None, from_address="club@example.org", attach_column="file", attach_dir=folder)
    assert "executable_attachment" in ids(check_draft(draft))


# -- the corpus -----------------------------------------------------------------------------------


def _corpus(kind: str) -> list[Path]:
    return sorted((CORPUS / kind).iterdir())


def corpus_check(path: Path, tmp_path: Path) -> dict:
    """A corpus message through App.check_content (what `bulk-mailer check` runs); .eml files as they are."""
    if path.suffix == ".eml":
        return check_message(path.read_bytes()).as_dict()
    source = path.read_text(encoding="utf-8")
    head, html = re.fullmatch(r"<!--\n(.*?)\n-->\n(.*)", source, re.DOTALL).groups()
    meta = dict(line.split(": ", 1) for line in head.splitlines())
    n = int(meta.get("recipients", 150))
    people = tmp_path / "people.csv"
    people.write_text("email,name\n" + "".join(f"p{i}@example.org,Person {i}\n" for i in range(n)))
    attach = []
    for name in filter(None, meta.get("attach", "").split(",")):
        attach.append(str(zipped(tmp_path, name, "viewer.exe") if name.endswith(".zip") else file(tmp_path, name)))
    unsubscribe = () if meta.get("unsubscribe") == "no" else ("https://lists.example.org/u?e={{ email }}",)
    m = MessageInput(subject=meta["subject"], html=html, from_address=meta.get("from", "News <news@example.org>"),
                     attach=tuple(attach), unsubscribe=unsubscribe)
    app = App(inbox=LocalInbox(), store=EncryptedFileStore(tmp_path / "s.enc"), detector=offline_detect)
    try:
        return app.check_content(m, to_file=str(people), relay=meta.get("relay"))
    finally:
        app.shutdown()


def test_the_corpus_has_twenty_of_each():
    assert len(_corpus("clean")) == 20 and len(_corpus("spam")) == 20


@pytest.mark.parametrize("path", _corpus("clean"), ids=lambda p: p.stem)
def test_every_clean_newsletter_looks_fine(path, tmp_path):
    report = corpus_check(path, tmp_path)
    assert report["verdict"] == "Looks fine", report


@pytest.mark.parametrize("path", _corpus("spam"), ids=lambda p: p.stem)
def test_every_spam_like_message_is_at_least_worth_a_look(path, tmp_path):
    report = corpus_check(path, tmp_path)
    assert report["verdict"] in ("Worth a look", "Likely spam"), report


# -- Review & send, the command line --------------------------------------------------------------


def test_review_gives_the_verdict_score_and_findings(tmp_path):
    app = App(inbox=LocalInbox(), store=EncryptedFileStore(tmp_path / "s.enc"), detector=offline_detect)
    try:
        app.import_recipients(("text", "ann@example.org\nbob@example.org"))
        inbox = AccountInput(provider=LOCAL_INBOX, from_address="me@example.com")
        clean = app.review(inbox, MessageInput(subject="Club news", html=CLEAN_HTML.replace("{{ name }}", "all")),
                           SendOptions())
        assert (clean["verdict"], clean["score"], clean["findings"], clean["warnings"]) == ("Looks fine", 0.0, [], [])
        spammy = app.review(inbox, MessageInput(subject="FREE MONEY FOR YOU!!!", html='<p>x</p><img src="https://x.example.org/a.jpg">'),
                            SendOptions())
        assert spammy["verdict"] == "Likely spam" and spammy["score"] >= 5
        kinds = [w["kind"] for w in spammy["warnings"]]
        assert {"caps_subject", "exclaim_subject", "spam_subject", "image_only"} <= set(kinds)
        # a tip (under 1 point) is a finding, not a warning
        assert "missing_alt" in {f["rule"] for f in spammy["findings"]} and "missing_alt" not in kinds
        # the free-mail rule knows the server the mail goes through
        relay = AccountInput(host="smtp.relay.example.net", port=587, security="starttls", from_address="me@gmail.com")
        through = app.review(relay, MessageInput(subject="Club news", html=CLEAN_HTML.replace("{{ name }}", "all")),
                             SendOptions())
        assert [w["kind"] for w in through["warnings"]] == ["freemail_relay"]
    finally:
        app.shutdown()


def test_cli_check_prints_findings_and_verdict_with_its_exit_codes(tmp_path):
    spam = CORPUS / "spam" / "01-free-money.html"
    clean = CORPUS / "clean" / "01-garden-club.html"
    bad = run_cli("check", "--html-file", str(spam), "--subject", "FREE MONEY!!!", home=tmp_path / "h")
    assert bad.returncode == 1, bad.stderr
    assert "URL shortener [url_shortener]: links through a URL shortener (bit.ly)" in bad.stderr
    assert "fix: Link to the page itself." in bad.stderr
    assert re.search(r"Content check: Likely spam \(score [\d.]+, \d+ findings\)", bad.stderr), bad.stderr
    good = run_cli("check", "--html-file", str(clean), "--subject", "The garden club's May letter", "--json",
                   home=tmp_path / "h")
    assert good.returncode == 0, good.stderr
    assert json.loads(good.stdout) == {"verdict": "Looks fine", "score": 0.0, "findings": []}
    relay = run_cli("check", "--html-file", str(clean), "--subject", "News", "--from", "me@yahoo.com", "--host",
                    "mail.example.net", "--json", home=tmp_path / "h")
    assert relay.returncode == 1 and [f["rule"] for f in json.loads(relay.stdout)["findings"]] == ["freemail_relay"]
    people = tmp_path / "p.csv"
    people.write_text("email,name\n" + "".join(f"p{i}@example.org,P{i}\n" for i in range(101)))
    big = run_cli("check", "--html-file", str(clean), "--subject", "Hi {{ name }}", "--to-file", str(people),
                  home=tmp_path / "h")
    assert big.returncode == 1 and "[no_unsubscribe]: no unsubscribe link for a list of 101" in big.stderr
    missing = run_cli("check", "--html-file", str(tmp_path / "nope.html"), home=tmp_path / "h")
    assert missing.returncode == 2 and "cannot read HTML file" in missing.stderr
    nothing = run_cli("check", "--subject", "x", home=tmp_path / "h")
    assert nothing.returncode == 2 and "give --html-file, --markdown-file or --text-file" in nothing.stderr
    broken = tmp_path / "broken.html"
    broken.write_text("<p>{{ name </p>")
    template = run_cli("check", "--html-file", str(broken), home=tmp_path / "h")
    assert template.returncode == 2 and "template_error" in template.stderr, template.stderr


def test_send_dry_run_prints_the_verdict(tmp_path):
    people = tmp_path / "p.csv"
    people.write_text("email,name\nann@example.org,Ann\n")
    body = tmp_path / "b.html"
    body.write_text('<p>Win!</p><a href="https://bit.ly/x"><img src="https://x.example.org/a.jpg"></a>')
    dry = run_cli("send", "--host", "smtp.nowhere.invalid", "--from", "me@gmail.com", "--to-file", str(people),
                  "--subject", "FREE MONEY!!!", "--html-file", str(body), "--dry-run", home=tmp_path / "h")
    assert dry.returncode == 0, dry.stderr
    assert "warning   links through a URL shortener (bit.ly)" in dry.stderr
    assert "warning   the From address is at gmail.com, a free-mail domain, but the mail goes through " \
           "smtp.nowhere.invalid" in dry.stderr
    assert re.search(r"Content check: Likely spam \(score [\d.]+, \d+ findings\); details: bulk-mailer check",
                     dry.stderr), dry.stderr
