"""Benchmark: CSS inlining of a 20 KB newsletter template for 10,000 recipients, once per template
vs per recipient.

    .venv/bin/python benchmarks/bench_inline.py [N]

Prints the seconds it takes to render every recipient's HTML body (compose.render_parts) when the
template is inlined once (values only fill it in: compose.Template's InlinePlan), when each
rendered body is inlined (a template with a {% %} tag), and with no <style> at all (the floor),
each the best of three runs; then whole messages (the Skeleton, text part included) for the first
1,000 recipients.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from backend import compose  # noqa: E402
from backend.compose import Sender, Skeleton, Template, render_parts  # noqa: E402
from backend.recipients import Recipient  # noqa: E402

STYLE = """<style>
body { margin: 0; padding: 0; background: #f4f4f4; font-family: Georgia, serif }
.wrap { width: 600px; margin: 0 auto; background: #ffffff }
h1 { font-size: 26px; color: #1a3d1a; margin: 0 0 12px } h2 { font-size: 20px; color: #2d5a2d }
p { font-size: 15px; line-height: 1.5; color: #333333; margin: 0 0 12px }
a { color: #2d7a2d; text-decoration: underline } .button { background: #2d7a2d; color: #ffffff; padding: 10px 16px }
td.cell { padding: 8px; border-bottom: 1px solid #dddddd } .muted { color: #888888; font-size: 12px }
@media (max-width: 600px) { .wrap { width: 100% !important } h1 { font-size: 22px } }
</style>"""
SECTION = ('<h2>News from the garden club, part {i}</h2><p>We planted tulips along the north fence, met on '
           'Tuesday evening and agreed on a trip to the botanical garden in May. <a href="https://example.org/'
           'news/{i}?c={{{{ code }}}}">Read the whole story</a>.</p><table><tr><td class="cell">Meeting {i}</td>'
           '<td class="cell">Tuesday</td></tr></table><p class="muted">Photo: the club, {{{{ city }}}}.</p>')


def template_source(sections: int = 52) -> str:
    body = "".join(SECTION.format(i=i) for i in range(sections))
    return (f"<html><head>{STYLE}</head><body><div class=\"wrap\"><h1>Hello {{{{ name }}}},</h1>{body}"
            '<p><a class="button" href="https://example.org/u?c={{ code }}">Unsubscribe</a></p></div></body></html>')


def best(fn, runs: int = 3) -> float:
    took = []
    for _ in range(runs):
        started = time.perf_counter()
        fn()
        took.append(time.perf_counter() - started)
    return min(took)


def main() -> int:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000
    rows = [Recipient(f"p{i}@example.org", {"email": f"p{i}@example.org", "name": f"Person {i}",
                                             "city": "Lyon" if i % 3 else "Nice", "code": f"C{i:05d}"}, i + 2)
            for i in range(n)]
    source = template_source()
    once = Template("News", html=source)
    per = Template("News", html=source.replace("Hello {{ name }}", "Hello {% if 1 %}{{ name }}{% endif %}"))
    bare = Template("News", html=source.replace(STYLE, ""))
    assert once._inline is not None and per._inline is None and not bare.inlines_css
    compose.html_to_text.cache_clear()
    print(f"template {len(source.encode()) / 1024:.1f} KB, {n:,} recipients "
          f"(inlined: {len(render_parts(once, rows[0]).html.encode()) / 1024:.1f} KB)")
    for name, t in (("inlined once", once), ("inlined per recipient", per), ("no <style> (floor)", bare)):
        s = best(lambda t=t: [render_parts(t, r) for r in rows])
        print(f"  HTML bodies, {name:<22} {s:7.2f} s  {s / n * 1e6:8.0f} µs each")
    me = Sender("club@example.org", "Club")
    few = rows[:1000]  # whole messages: the text part of a body with tables is made per message (slow)
    for name, t in (("inlined once", once), ("inlined per recipient", per), ("no <style>", bare)):
        skeleton = Skeleton(t, me)
        s = best(lambda skeleton=skeleton: [skeleton.build(r) for r in few], runs=1)
        print(f"  whole messages ({len(few):,}), {name:<22} {s:7.2f} s  {s / len(few) * 1e6:8.0f} µs each")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
