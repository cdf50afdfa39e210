"""docs/cli.md: generated from the argparse parser, complete and up to date; and the README and
docs/ hold together: every relative link resolves, every option they name exists, the README
stays a first-hour page."""

from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path

import pytest

from backend import paths
from backend.cli import (
    EXIT_NOTHING_SENT,
    EXIT_OK,
    EXIT_SOME_FAILED,
    PASSPHRASE_ENV,
    PASSWORD_ENV,
    build_parser,
)

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "cli.md"
README = ROOT / "README.md"
sys.path.insert(0, str(ROOT / "tools"))

import gen_cli_docs as gen  # noqa: E402

# Every Markdown page a reader can land on.
PAGES = sorted([README, ROOT / "SECURITY.md", *(ROOT / "docs").glob("*.md")])
# Pages whose --options must be bulk-mailer's (performance.md names the benchmarks' and py-spy's).
# (cli.md and troubleshooting.md are generated from the parser; test_docs.py checks the latter.)
OPTION_PAGES = [p for p in PAGES if p.name not in ("performance.md", "troubleshooting.md", "cli.md")]
README_MAX_BYTES = 10_000


@pytest.fixture(scope="module")
def doc() -> str:
    return DOC.read_text(encoding="utf-8")


def all_parsers() -> list[argparse.ArgumentParser]:
    return [parser for parser, _ in gen.commands(build_parser())]


def section(doc: str, heading: str) -> str:
    match = re.search(rf"^## {re.escape(heading)}\n(.*?)(?=^## |\Z)", doc, flags=re.M | re.S)
    assert match, f"no '## {heading}' in docs/cli.md"
    return match.group(1)


# The generated reference ---------------------------------------------------------------------


def test_committed_doc_is_what_the_generator_makes(doc: str) -> None:
    assert doc == gen.generate(), "docs/cli.md is out of date with the parser: run python tools/gen_cli_docs.py"


def test_generator_does_not_depend_on_the_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "40")
    narrow = gen.generate()
    monkeypatch.setenv("COLUMNS", "200")
    assert gen.generate() == narrow
    monkeypatch.delenv("COLUMNS")
    assert gen.generate() == narrow
    assert "[--security {starttls,ssl,none}] [--user USER]" in narrow  # wrapped at 100, not 40


def test_generation_leaves_the_environment_as_it_was(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "57")
    gen.generate()
    assert os.environ["COLUMNS"] == "57"


def test_check_mode_reports_a_stale_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    stale = tmp_path / "cli.md"
    stale.write_text(gen.generate().replace("--dry-run", "--dryrun", 1), encoding="utf-8")
    monkeypatch.setattr(gen, "OUTPUT", stale)
    assert gen.main(["--check"]) == 1
    assert "run python tools/gen_cli_docs.py" in capsys.readouterr().err
    assert gen.main([]) == 0
    assert gen.main(["--check"]) == 0
    assert stale.read_text(encoding="utf-8") == gen.generate()


def test_every_command_has_its_section_with_every_option(doc: str) -> None:
    progs = [parser.prog for parser in all_parsers()]
    assert {"bulk-mailer send", "bulk-mailer verify", "bulk-mailer resume", "bulk-mailer export",
            "bulk-mailer campaigns", "bulk-mailer gmail login", "bulk-mailer gmail status",
            "bulk-mailer gmail logout"} <= set(progs)
    for parser in all_parsers():
        text = section(doc, parser.prog)
        assert f"usage: {parser.prog}" in text
        if parser.description:
            assert parser.description.split()[0] in text
        for action in parser._actions:
            for option in action.option_strings:
                assert re.search(rf"(?<![\w-]){re.escape(option)}(?![\w-])", text), \
                    f"{parser.prog}: {option} is missing from its section of docs/cli.md"
        assert f"- [{parser.prog}](#{gen.slug(parser.prog)})" in doc.split("## bulk-mailer\n")[0]


def test_the_window_options_are_documented(doc: str) -> None:
    text = section(doc, "bulk-mailer --web: the window and browser mode")
    for option in ("--web", "--window", "--port", "--no-browser", "--self-test", "--install-desktop-entry"):
        assert option in text


def test_exit_codes_and_environment_variables(doc: str) -> None:
    codes = section(doc, "Exit codes")
    for code in (EXIT_OK, EXIT_SOME_FAILED, EXIT_NOTHING_SENT):
        assert f"| {code} |" in codes
    env = section(doc, "Environment variables")
    for name in (PASSWORD_ENV, PASSPHRASE_ENV, paths.HOME_ENV, "BULK_MAILER_PASSWORD", "BULK_MAILER_PASSPHRASE",
                 "BULK_MAILER_HOME"):
        assert f"`{name}`" in env


# Links and options across README.md, SECURITY.md and docs/ --------------------------------------


def prose(text: str) -> str:
    """The text outside fenced code blocks and inline code."""
    text = re.sub(r"^```.*?^```", "", text, flags=re.M | re.S)
    return re.sub(r"`[^`\n]*`", "", text)


def anchors(page: Path) -> set[str]:
    """GitHub's anchors of a Markdown page: its headings' slugs and its explicit <a id>s."""
    text = re.sub(r"^```.*?^```", "", page.read_text(encoding="utf-8"), flags=re.M | re.S)
    found = set(re.findall(r'<a id="([^"]+)"', text))
    seen: dict[str, int] = {}
    for heading in re.findall(r"^#{1,6} (.+?)\s*#*$", text, flags=re.M):
        slug = gen.slug(heading)
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        found.add(slug if n == 0 else f"{slug}-{n}")
    return found


def links(page: Path) -> list[str]:
    return re.findall(r"\[[^\]]*\]\(([^)\s]+)\)", prose(page.read_text(encoding="utf-8")))


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_relative_link_resolves(page: Path) -> None:
    for target in links(page):
        if re.match(r"[a-z]+:", target):  # https:, mailto:
            continue
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        assert dest.exists(), f"{page.name}: link to {target} points to no file"
        assert ROOT in dest.parents or dest == ROOT, f"{page.name}: {target} leaves the repository"
        if anchor and dest.suffix == ".md":
            assert anchor in anchors(dest), f"{page.name}: {target}: no such heading or anchor in {dest.name}"


def test_the_link_check_finds_a_broken_link(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text("# Title\n\nSee [a](missing.md), [b](#title), [c](#nowhere) and `[d](x.md)`.\n",
                    encoding="utf-8")
    assert links(page) == ["missing.md", "#title", "#nowhere"]
    assert "title" in anchors(page) and "nowhere" not in anchors(page)


def cli_options() -> set[str]:
    found = {o for parser in all_parsers() for action in parser._actions for o in action.option_strings}
    return found | set(re.findall(r"(?<![\w-])--[a-z][a-z-]*", gen.window_help()))


@pytest.mark.parametrize("page", OPTION_PAGES, ids=lambda p: p.name)
def test_every_option_a_page_names_exists(page: Path) -> None:
    known = cli_options()
    named = set(re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*[a-z0-9]", page.read_text(encoding="utf-8")))
    assert not named - known, f"{page.name} names options bulk-mailer lacks: {sorted(named - known)}"


# The README: what a user needs in the first hour ------------------------------------------------


def test_readme_is_a_first_hour_page() -> None:
    raw = README.read_bytes()
    assert len(raw) < README_MAX_BYTES, f"README.md is {len(raw)} bytes; move detail into docs/"
    text = raw.decode("utf-8")
    first_block = text.split("```\n", 2)[1]
    assert first_block.splitlines()[:2] == [
        "make run     # sets everything up (.venv) and opens the app",
        "make test    # sets everything up (.venv with test tools) and runs the whole test suite",
    ]
    assert "](docs/screenshots/4-review.png)" in text
    for shot in re.findall(r"\]\((docs/screenshots/[^)]+\.png)\)", text):
        assert (README.parent / shot).is_file(), shot
    for needed in ("## Your first campaign", "## The command line in brief", "## Where files go",
                   "Local test inbox", "**Recipients.**", "**Message.**", "**Send.**", "bulk-mailer send"):
        assert needed in text
    assert not re.search(r"\bissues?\b|DESIGN\.md", text, flags=re.I), "the README speaks to users"


def test_readme_names_every_library_of_the_why_table() -> None:
    dev = (ROOT / "docs" / "development.md").read_text(encoding="utf-8")
    table = dev.split("## Libraries and why", 1)[1]
    cells = re.findall(r"^\| ([^|]+?) \| .+ \|$", table, flags=re.M)
    names = [re.sub(r"\s*\(.*?\)", "", name).strip() for cell in cells[2:] if cell != "---"
             for name in cell.split(",")]
    assert len(names) >= 15
    readme = README.read_text(encoding="utf-8")
    assert "docs/development.md#libraries-and-why" in readme
    missing = [n for n in names if n.lower() not in readme.lower()]
    assert not missing, f"the README's library list lacks {missing}"
