"""The bounce and reply classifier against the corpus in tests/bounces/ (written for the tests,
shaped like Postfix, Exim, Exchange/Microsoft 365, Gmail, Yahoo, iCloud, qmail and Sendmail
notices, people's replies and out-of-office answers in several languages)."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from backend.mailbox.bounces import Notice, classify

CORPUS = Path(__file__).parent / "bounces"
EXPECTED = list(csv.DictReader((CORPUS / "expected.csv").open(encoding="utf-8")))
BOUNCES = ("permanent", "transient", "delayed")


def right(expected: dict[str, str], notice: Notice) -> list[str]:
    """What the classifier got wrong about one message (nothing: right)."""
    wrong = []
    if notice.label != expected["kind"]:
        wrong.append(f"kind {notice.label} (want {expected['kind']})")
    if expected["kind"] in BOUNCES:
        got = {f.recipient for f in notice.failures}
        if got != {expected["recipient"]}:
            wrong.append(f"recipients {sorted(got)}")
        status = notice.failures[0].status if notice.failures else None
        if expected["status"] and status != expected["status"]:
            wrong.append(f"status {status} (want {expected['status']})")
    elif expected["kind"] in ("reply", "auto_reply") and notice.sender != expected["recipient"]:
        wrong.append(f"sender {notice.sender}")
    if expected["message_id"] and expected["message_id"] not in notice.message_ids:
        wrong.append(f"message ids {notice.message_ids}")
    return wrong


def test_corpus_is_large_enough():
    kinds = [row["kind"] for row in EXPECTED]
    assert sum(k in BOUNCES for k in kinds) >= 40
    assert sum(k in ("reply", "auto_reply") for k in kinds) >= 15
    assert {"permanent", "transient", "delayed", "reply", "auto_reply", "unrelated"} <= set(kinds)


def test_at_least_95_percent_right_and_no_false_bounce(capsys):
    misses, false_bounced = {}, []
    for row in EXPECTED:
        notice = classify((CORPUS / row["file"]).read_bytes())
        wrong = right(row, notice)
        if wrong:
            misses[row["file"]] = wrong
        # A permanent failure for an address that did not bounce would suppress it for good.
        bounced = {f.recipient for f in notice.failures if f.severity == "permanent"}
        if bounced - ({row["recipient"]} if row["kind"] == "permanent" else set()):
            false_bounced.append((row["file"], sorted(bounced)))
    score = 1 - len(misses) / len(EXPECTED)
    with capsys.disabled():
        print(f"\nbounce corpus: {len(EXPECTED) - len(misses)}/{len(EXPECTED)} right ({score:.1%}); "
              f"false bounced: {len(false_bounced)}")
        for name, wrong in misses.items():
            print(f"  {name}: {'; '.join(wrong)}")
    assert false_bounced == []
    assert score >= 0.95, misses


@pytest.mark.parametrize("row", [r for r in EXPECTED if r["kind"] in BOUNCES and r["status"].startswith("5")],
                         ids=lambda r: r["file"])
def test_permanent_bounce_details(row):
    notice = classify((CORPUS / row["file"]).read_bytes())
    failure = notice.failures[0]
    assert failure.diagnostic and (row["recipient"] in failure.diagnostic.lower() or failure.status
                                   and failure.status[0] in failure.diagnostic or "user" in failure.diagnostic.lower()
                                   or failure.smtp_code)


def test_standard_report_details():
    notice = classify((CORPUS / "postfix-user-unknown-headers.eml").read_bytes())
    assert notice.standard and notice.kind == "bounce" and notice.severity == "permanent"
    f = notice.failures[0]
    assert (f.recipient, f.original_recipient, f.action, f.status, f.smtp_code) == (
        "r01@example.org", "r01@example.org", "failed", "5.1.1", 550)
    assert f.diagnostic.startswith("550 5.1.1 <r01@example.org>: Recipient address rejected")
    assert notice.message_ids == ("<orig-01.bm@example.com>",)
    assert notice.date == "2026-12-01T10:01:00+00:00"


def test_reply_excerpt_is_the_answer_only_and_at_most_200_characters():
    notice = classify((CORPUS / "reply-threaded-en.eml").read_bytes())
    assert notice.excerpt == "Thanks, that works for me. See you on Friday!"
    long = (b"From: a@example.org\nTo: me@example.com\nSubject: Re: Hello\nIn-Reply-To: <x@example.com>\n\n"
            + b"word " * 200)
    assert len(classify(long).excerpt) == 200
    qp = classify((CORPUS / "reply-es-quoted-printable.eml").read_bytes())
    assert qp.excerpt == "Muchas gracias por la información, lo revisaré mañana."


def test_garbage_is_unrelated_not_an_error():
    assert classify(b"\x00\xff not a message").kind == "unrelated"
    assert classify(b"").kind == "unrelated"
