"""docs/troubleshooting.md: generated from errors.py and presets.py, complete, and up to date."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

from backend import paths
from backend.errors import CATEGORIES
from backend.presets import PRESETS
from backend.transports.smtp import classify_reply

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "troubleshooting.md"
sys.path.insert(0, str(ROOT / "tools"))

import gen_troubleshooting as gen  # noqa: E402

# Issue 4: provider advice for at least these presets.
ADVISED = (
    "gmail",
    "google-workspace",
    "outlook",
    "office365",
    "yahoo",
    "icloud",
    "zoho",
    "amazon-ses",
)
# Issue 4's rejection split: every one of these replies is in the reply-code table.
REQUIRED_REPLIES = (
    "421",
    "450",
    "451",
    "451 4.7.1",
    "452",
    "454",
    "530",
    "535",
    "550",
    "551",
    "552",
    "553",
    "554",
    "550 5.4.5",
)


@pytest.fixture(scope="module")
def doc() -> str:
    return DOC.read_text(encoding="utf-8")


def sections(doc: str) -> dict[str, str]:
    """The text after each `<a id="...">` anchor, up to the next anchor."""
    parts = re.split(r'^<a id="([^"]+)"></a>$', doc, flags=re.M)
    return dict(zip(parts[1::2], parts[2::2], strict=True))


def subsection(text: str, heading: str) -> str:
    """The lines under `### heading` up to the next `###` heading."""
    match = re.search(rf"^### {re.escape(heading)}\n(.*?)(?=^### |\Z)", text, flags=re.M | re.S)
    assert match, f"no '### {heading}' in:\n{text[:300]}"
    return match.group(1)


def numbered(text: str) -> list[str]:
    """The items of the first numbered list in ``text``; they must count 1, 2, 3, ..."""
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith("1. ")), len(lines))
    items = []
    for line in lines[start:]:
        match = re.match(r"(\d+)\. (.*)", line)
        if not match:
            break
        assert int(match.group(1)) == len(items) + 1, f"list numbering jumps at {line!r}"
        items.append(match.group(2))
    return items


# (a) -------------------------------------------------------------------------------------------


def test_committed_doc_is_what_the_generator_makes(doc: str) -> None:
    assert doc == gen.generate(), (
        "docs/troubleshooting.md is out of date with backend/errors.py or backend/presets.py: "
        "run python tools/gen_troubleshooting.py"
    )


def test_generator_is_deterministic() -> None:
    assert gen.generate() == gen.generate()
    assert not re.search(r"\b20\d\d-\d\d-\d\d\b", gen.generate()), "no dates in the guide"


def test_check_mode_reports_a_stale_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    stale = tmp_path / "troubleshooting.md"
    stale.write_text(gen.generate().replace("What it means", "What it meant", 1), encoding="utf-8")
    monkeypatch.setattr(gen, "OUTPUT", stale)
    assert gen.main(["--check"]) == 1
    assert "run python tools/gen_troubleshooting.py" in capsys.readouterr().err
    assert gen.main([]) == 0
    assert gen.main(["--check"]) == 0
    assert stale.read_text(encoding="utf-8") == gen.generate()


# (b) -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(CATEGORIES))
def test_every_category_has_its_section(doc: str, name: str) -> None:
    cat = CATEGORIES[name]
    text = sections(doc).get(name)
    assert text is not None, f"no section with anchor {name!r}"
    heading = text.strip().splitlines()[0]
    assert (
        heading.startswith("## ") and gen.md_text(cat.title) in heading and f"`{name}`" in heading
    )
    assert subsection(text, "What it means").strip().splitlines()[0] == gen.md_text(cat.cause)
    steps = numbered(subsection(text, "How to fix it"))
    assert steps == [gen.md_text(step) for step in cat.fix]
    assert f"](#{name})" in doc.split("<a id=")[0], f"{name} is missing from the contents"


def test_markdown_text_renders_back_to_the_source_text() -> None:
    # What the reader sees after Markdown's backslash escapes are undone is the source text.
    for source in ("email-smtp.<region>.amazonaws.com", "smtppro.zoho.* for", "a `b` \\ c"):
        escaped = gen.md_text(source)
        assert re.sub(r"\\(.)", r"\1", escaped) == source
    assert gen.md_text("email-smtp.<region>.amazonaws.com") == "email-smtp.\\<region>.amazonaws.com"


# (c) -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("key", ADVISED)
def test_provider_advice_for_auth_failed_is_in_the_guide(doc: str, key: str) -> None:
    assert key in PRESETS, f"no preset {key!r}"
    preset = PRESETS[key]
    advice = preset.advice.get("auth_failed")
    assert advice, f"preset {key!r} has no auth_failed advice"
    part = subsection(sections(doc)["auth_failed"], "Provider-specific steps")
    label = f"**{gen.md_text(preset.name)}** ([settings](#provider-{key}))"
    assert label in part
    assert numbered(part.split(label, 1)[1]) == [gen.md_text(step) for step in advice]


@pytest.mark.parametrize("key", list(PRESETS))
def test_every_preset_has_its_provider_section(doc: str, key: str) -> None:
    preset = PRESETS[key]
    text = sections(doc)[f"provider-{key}"]
    assert text.strip().splitlines()[0] == f"### {gen.md_text(preset.name)}"
    settings = f", port {preset.port}, security {gen.security_label(preset.security)}"
    assert settings in text
    for note in preset.notes:
        assert f"- {gen.md_text(note)}\n" in text
    if preset.limits.note:
        assert f"- Limits: {gen.md_text(preset.limits.note)}\n" in text
    for category, steps in preset.advice.items():
        if steps and category in CATEGORIES:
            assert f"[`{category}`](#{category})" in text
            part = subsection(sections(doc)[category], "Provider-specific steps")
            assert f"**{gen.md_text(preset.name)}**" in part


# (d) -------------------------------------------------------------------------------------------


def reply_rows(doc: str) -> list[tuple[str, str]]:
    """(reply cell, category) of each row of the reply-code table."""
    table = sections(doc)["smtp-reply-codes"]
    rows = re.findall(r"^\| `([^`]+)`[^|]* \|.*\| \[`([a-z_]+)`\]\(#\2\) \|$", table, flags=re.M)
    assert rows, "no rows in the SMTP reply codes table"
    return rows


def test_reply_code_table_shows_what_classify_reply_answers(doc: str) -> None:
    rows = reply_rows(doc)
    assert len(rows) == len(gen.REPLIES)
    for (reply, category), example in zip(rows, gen.REPLIES, strict=True):
        assert reply == f"{example.code} {example.text}"
        expected = classify_reply(example.code, example.text, example.stage)
        assert category == expected, (
            f"{reply!r} at {example.stage}: table {category}, app {expected}"
        )
        assert category in CATEGORIES


def test_reply_code_table_covers_the_common_replies(doc: str) -> None:
    replies = [reply for reply, _ in reply_rows(doc)]
    for prefix in REQUIRED_REPLIES:
        assert any(r.startswith(prefix + " ") for r in replies), f"no {prefix} row"


def test_reply_examples_appear_under_their_category(doc: str) -> None:
    for example in gen.REPLIES:
        text = sections(doc)[example.category]
        assert f"- `{example.code} {example.text}`" in subsection(text, "What it means")


# The intro ---------------------------------------------------------------------------------------


def test_every_command_line_option_the_guide_names_exists(doc: str) -> None:
    for option in sorted(set(re.findall(r"(?<![\w-])--[a-z][a-z-]*", doc))):
        assert gen._cli_has_option(option), f"the guide mentions {option}, which bulk-mailer lacks"


def test_intro_names_the_diagnosis_and_the_log(doc: str) -> None:
    intro = doc.split("## Contents")[0]
    for needed in (
        "**Test connection**",
        "`bulk-mailer verify",
        "`bulk-mailer verify --json",
        "`bulk-mailer.log`",
    ):
        assert needed in intro
    html = (ROOT / "frontend" / "index.html").read_text(encoding="utf-8")
    assert ">Test connection</button>" in html


@pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="the Linux path is checked on Linux"
)
def test_linux_log_folder_is_where_the_app_writes(
    doc: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import platformdirs

    monkeypatch.delenv("XDG_STATE_HOME", raising=False)
    where = platformdirs.user_log_path(paths.APP).relative_to(Path.home())
    assert f"- Linux: `~/{where.as_posix()}/`" in doc
