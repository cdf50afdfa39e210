"""docs/deliverability.md: generated from backend/deliverability.py's rules table, complete and up to date."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from backend.deliverability import RULES

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "deliverability.md"
sys.path.insert(0, str(ROOT / "tools"))

import gen_rules_docs as gen  # noqa: E402


def test_the_page_is_up_to_date() -> None:
    assert DOC.read_text(encoding="utf-8") == gen.generate(), (
        "docs/deliverability.md is out of date with backend/deliverability.py: run python tools/gen_rules_docs.py")


def test_every_rule_is_a_row_with_its_words() -> None:
    doc = DOC.read_text(encoding="utf-8")
    rows = [line for line in doc.splitlines() if line.startswith("| **")]
    assert len(rows) == len(RULES)
    for rule, row in zip(RULES, rows, strict=True):
        assert f"(`{rule.id}`)" in row and row.endswith(f"| {rule.score:g} |")
        for words in (rule.name, rule.looks_for, rule.why, rule.fix):
            assert gen.cell(words) in row, (rule.id, words)


def test_check_mode_reports_a_stale_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    stale = tmp_path / "deliverability.md"
    stale.write_text(gen.generate().replace("Image-only message", "Image message", 1), encoding="utf-8")
    monkeypatch.setattr(gen, "OUTPUT", stale)
    assert gen.main(["--check"]) == 1
    assert "run python tools/gen_rules_docs.py" in capsys.readouterr().err
    assert gen.main([]) == 0
    assert gen.main(["--check"]) == 0
