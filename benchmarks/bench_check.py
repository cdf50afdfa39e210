"""Benchmark: the offline content check of a 100,000-recipient campaign.

    .venv/bin/python benchmarks/bench_check.py [N]

Prints the seconds the content check takes (deliverability.check_draft: every rule once on the
first message, the subject rules row by row since the subject uses a field), and the whole of
Review & send's warnings (review.content_check: the check plus the empty-field scan), each the
best of three runs. The target is under 1 s for 100,000 recipients.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from backend import deliverability, review, service  # noqa: E402
from backend.recipients import ImportResult, Recipient  # noqa: E402

SECTION = ('<h2>News from the garden club, part {i}</h2><p>We planted tulips along the north fence, met on '
           'Tuesday evening and agreed on a trip to the botanical garden in May. <a href="https://example.org/'
           'news/{i}">Read the whole story</a>.</p><img src="https://example.org/img/{i}.jpg" alt="Photo {i}">')


def main() -> int:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    rows = [Recipient(f"p{i}@example.org", {"email": f"p{i}@example.org", "name": f"Person {i}",
                                             "city": "Lyon" if i % 3 else ""}, i + 2) for i in range(n)]
    imported = ImportResult(rows, [], [], ["email", "name", "city"], "email", "bench")
    html = "<html><body><p>Hello {{ name }},</p>" + "".join(SECTION.format(i=i) for i in range(20)) + \
        '<p><a href="https://example.org/unsubscribe">Unsubscribe</a></p></body></html>'
    draft = service.make_draft(imported, subject="{{ name }}, the garden club's May letter", html=html, text=None,
                               from_address="Club <club@example.org>", unsubscribe=["https://example.org/u"])
    took, cpu = [], []
    for _ in range(3):  # the best of three: this machine may be busy with something else
        started, started_cpu = time.perf_counter(), time.process_time()
        report = deliverability.check_draft(draft)
        took.append(time.perf_counter() - started)
        cpu.append(time.process_time() - started_cpu)
    print(f"content check, {n:,} recipients:            {min(took):6.3f} s  ({min(cpu):.3f} s of CPU; "
          f"{report.verdict}, score {report.score:g}, {len(deliverability.RULES)} rules)")
    took = []
    for _ in range(3):
        started = time.perf_counter()
        review.content_check(draft)
        took.append(time.perf_counter() - started)
    print(f"Review & send's warnings, {n:,} recipients: {min(took):6.3f} s  (with the empty-field scan)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
