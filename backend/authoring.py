"""Writing the message: Markdown to HTML with the fields kept, the CSS of a <style> block inlined
into the elements, the account's signature below the body.

Markdown is converted once per campaign (when the draft is made) and the result is the HTML
template; CSS is inlined once on the template where only values are put in, else per message
after rendering (compose.Template decides, with InlinePlan); the text part is made from the
final HTML. Jinja's {{ }}, {% %} and {# #} are kept out of either conversion: each is swapped for
an opaque token of letters and digits first and put back after.
"""

from __future__ import annotations

import functools
import html as html_lib
import itertools
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import css_inline
import jinja2
import jinja2.nodes
from markdown_it import MarkdownIt

from backend.errors import SettingsError, TemplateError

FORMATS = ("html", "text", "markdown")
_JINJA = re.compile(r"\{\{.*?\}\}|\{%.*?%\}|\{#.*?#\}", re.S)
_BLOCK = re.compile(r"\{%|\{#")
_STYLE_BLOCK = re.compile(r"<style\b", re.I)
_RAW_TEXT = re.compile(r"<(style|script)\b.*?</\1\s*>", re.I | re.S)
_BODY_END = re.compile(r"</body\s*>", re.I)


# -- fields kept through a conversion -----------------------------------------------------------


@dataclass(frozen=True)
class Protected:
    """A source with each Jinja tag swapped for a token (letters and digits: left alone by
    Markdown, HTML parsing and percent-encoding of link addresses)."""

    text: str
    tags: tuple[str, ...]
    prefix: str

    @property
    def token(self) -> re.Pattern[str]:
        return re.compile(rf"{self.prefix}(\d+)X")

    def restore(self, converted: str) -> str:
        return self.token.sub(lambda m: self.tags[int(m.group(1))], converted)

    def fill(self, converted: str, value: Callable[[int], str]) -> str:
        """The converted text with token n replaced by value(n) (probes of InlinePlan)."""
        return self.token.sub(lambda m: value(int(m.group(1))), converted)


def protect(source: str) -> Protected:
    """Swap every {{ ... }}, {% ... %} and {# ... #} for a token no text of the source holds."""
    for n in itertools.count():
        prefix = f"JjQz{n or ''}Tok"
        if prefix not in source:
            break
    tags: list[str] = []

    def swap(m: re.Match[str]) -> str:
        tags.append(m.group(0))
        return f"{prefix}{len(tags) - 1}X"

    return Protected(_JINJA.sub(swap, source), tuple(tags), prefix)


# -- Markdown ---------------------------------------------------------------------------------


@functools.lru_cache(maxsize=2)
def _markdown(raw_html: bool) -> MarkdownIt:
    # CommonMark, plus GitHub's tables and ~~strike~~ (both common in newsletters); raw HTML is
    # escaped as text unless the writer chose to allow it.
    return MarkdownIt("commonmark", {"html": raw_html}).enable(["table", "strikethrough"])


def markdown_to_html(source: str, *, raw_html: bool = False) -> str:
    """A Markdown body as the HTML template, its {{ fields }} and {% tags %} as written (also in
    link addresses). A paragraph holding only a {% %} or {# #} tag becomes the bare tag, so an
    {% if %} on its own line adds no empty paragraph."""
    p = protect(source)
    out = _markdown(raw_html).render(p.text)
    alone = re.compile(rf"<p>({p.prefix}\d+X)</p>\n?")
    out = alone.sub(lambda m: m.group(1) if _BLOCK.match(p.tags[int(m.group(1)[len(p.prefix):-1])])
                    else m.group(0), out)
    return p.restore(out)


# -- CSS inlining -------------------------------------------------------------------------------

# Nothing is fetched (a <link> stylesheet stays as it is); @media and other rules that cannot go
# into a style attribute stay in a kept <style>; a style attribute the element had keeps
# precedence as CSS says (css-inline merges, it never moves inline CSS out).
_INLINER = css_inline.CSSInliner(inline_style_tags=True, keep_style_tags=False, keep_link_tags=True,
                                 keep_at_rules=True, load_remote_stylesheets=False)


def has_style_block(html: str | None) -> bool:
    """Whether an HTML body has CSS to inline (nothing is done, at no cost, without one)."""
    return bool(html) and _STYLE_BLOCK.search(html) is not None


@functools.lru_cache(maxsize=64)
def inline_css(html: str) -> str:
    """The HTML with its <style> rules in the elements' style attributes (cached: a body without
    fields is inlined once)."""
    try:
        return _INLINER.inline(html)
    except (css_inline.InlineError, ValueError) as exc:
        raise TemplateError(f"the CSS of the HTML body could not be inlined: {exc}", field="html") from exc


# Filters whose output is the value changed letter by letter (or the default given): a value
# that is safe (see _safe) stays safe through them.
_SAFE_FILTERS = frozenset({"default", "d", "upper", "lower", "title", "capitalize", "trim"})
# What parsing and writing HTML again would change in a value (quotes and < > written another
# way, CR and NUL replaced, U+00A0 as &nbsp;, a leading line break after <pre> dropped).
_UNSAFE = re.compile("[\"'<>\r\x00\u00a0]|^\n")


def _safe(value: object) -> bool:
    return isinstance(value, str) and _UNSAFE.search(value) is None


@dataclass(frozen=True)
class InlinePlan:
    """An HTML template inlined once: its source with the CSS in the elements and the fields
    as written. fits(fields) says whether a row's values give, through this source, exactly
    the bytes inlining that row's own rendered HTML would give."""

    source: str
    names: frozenset[str]

    def fits(self, fields: Mapping[str, str]) -> bool:
        return all(_safe(fields.get(name)) for name in self.names)


def inline_plan(html: str, env: jinja2.Environment) -> InlinePlan | None:
    """The template inlined once, or None when it must be inlined per message: block tags
    ({% %}), expressions other than fields (with the filters above), fields in the <style>
    itself, or a place where a value's presence changes how the page is parsed."""
    try:
        ast = env.parse(html)
    except jinja2.TemplateSyntaxError:
        return None
    names = _output_names(ast)
    if names is None:
        return None
    p = protect(html)
    if any(p.prefix in m.group(0) for m in _RAW_TEXT.finditer(p.text)):
        return None  # a field in the CSS (or a script) itself
    try:
        once = _INLINER.inline(p.text)
    except (css_inline.InlineError, ValueError):
        return None
    found = [int(n) for n in p.token.findall(once)]
    if sorted(found) != list(range(len(p.tags))) or re.search(r"\{[{%#]", p.token.sub("", once)):
        return None  # a field dropped or doubled, or an entity that became a Jinja tag
    # The values' own text in each field's place, inlined both ways: a field where empty text,
    # or text with spaces around it, changes the page's structure is inlined per message.
    for probe in ("", " Zq Zq "):
        try:
            direct = _INLINER.inline(p.fill(p.text, lambda n, probe=probe: probe))
        except (css_inline.InlineError, ValueError):
            return None
        if direct != p.fill(once, lambda n, probe=probe: probe):
            return None
    return InlinePlan(p.restore(once), names)


def _output_names(ast: jinja2.nodes.Template) -> frozenset[str] | None:
    """The fields of a template made of text and {{ field | safe filter }} only, else None."""
    names: set[str] = set()
    for node in ast.body:
        if not isinstance(node, jinja2.nodes.Output):
            return None
        for child in node.nodes:
            if isinstance(child, jinja2.nodes.TemplateData):
                continue
            while isinstance(child, jinja2.nodes.Filter) and child.name in _SAFE_FILTERS and not child.kwargs \
                    and not child.dyn_args and not child.dyn_kwargs \
                    and all(isinstance(a, jinja2.nodes.Const) and _safe(str(a.value)) for a in child.args):
                child = child.node
            if not (isinstance(child, jinja2.nodes.Name) and child.ctx == "load"):
                return None
            names.add(child.name)
    return frozenset(names)


# -- the signature ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Signature:
    """An account's signature; either may be empty (then made from the other)."""

    html: str = ""
    text: str = ""

    def __bool__(self) -> bool:
        return bool(self.html.strip() or self.text.strip())

    def both(self) -> tuple[str, str]:
        """(HTML, text): the one not given made from the other (text from the HTML as the text
        part is made; HTML from the text escaped, its line breaks as <br>). Fields kept."""
        html_sig, text_sig = self.html.strip(), self.text.strip("\n")
        if not text_sig and html_sig:
            from backend.compose import html_to_text  # compose uses this module: imported late

            p = protect(html_sig)
            text_sig = p.restore(html_to_text(p.text)).strip("\n")
        if not html_sig and text_sig:
            p = protect(text_sig)
            html_sig = p.restore(html_lib.escape(p.text, quote=False).replace("\n", "<br>\n"))
        return html_sig, text_sig


MAX_SIGNATURE = 100_000  # characters of each part


def check_signature(html: str, text: str) -> Signature:
    """A signature as given, checked (size; its fields compile where the message is made)."""
    for value, field in ((html, "signature.html"), (text, "signature.text")):
        if not isinstance(value, str):
            raise SettingsError(field, "must be text")
        if len(value) > MAX_SIGNATURE:
            raise SettingsError(field, f"is too long (at most {MAX_SIGNATURE:,} characters)")
    return Signature(html, text)


def signed(html: str | None, text: str | None, signature: Signature | None) -> tuple[str | None, str | None]:
    """The bodies with the signature below: in the HTML a <div class="signature"> after the body
    (before </body> when there is one) with the usual "-- " line; in a text body "\\n-- \\n" and
    the text. A text-only message stays text only."""
    if not signature:
        return html, text
    html_sig, text_sig = signature.both()
    if html is not None and html.strip():
        block = f'\n<div class="signature">-- <br>\n{html_sig}</div>\n'
        ends = list(_BODY_END.finditer(html))
        html = html[:ends[-1].start()] + block + html[ends[-1].start():] if ends else html.rstrip("\n") + block
    if text is not None and text.strip():
        text = text.rstrip("\n") + "\n\n-- \n" + text_sig + "\n"
    return html, text


def bodies(fmt: str, body: str, *, raw_html: bool = False, text: str | None = None,
           signature: Signature | None = None) -> tuple[str | None, str | None]:
    """(HTML template, text template) of a message written in fmt (html, text or markdown), with
    the signature: what compose.Template is made of."""
    if fmt not in FORMATS:
        raise SettingsError("message.format", f"must be one of: {', '.join(FORMATS)}")
    html = markdown_to_html(body, raw_html=raw_html) if fmt == "markdown" and body.strip() else \
        body if fmt == "html" else None
    plain = body if fmt == "text" else text
    return signed(html or None, plain or None, signature)
