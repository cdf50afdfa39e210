"""The house's layering, checked on the source: thin faces over one core, one way down."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FACES = ("bridge.py", "backend/cli.py", "backend/cli_parser.py", "backend/cli_accounts.py", "backend/cli_schedule.py",
         "backend/cli_checks.py", "backend/cli_signature.py",
         "backend/web.py")
# What a face may import of ours: the core's public modules and the faces' own plumbing.
FACE_MAY_IMPORT = {"backend", "backend.app", "backend.inputs", "backend.errors", "backend.paths",
                   "backend.presets", "backend.jsonapi", "backend.web", "backend.cli", "backend.cli_parser", "backend.cli_accounts",
                   "backend.cli_schedule", "backend.cli_checks", "backend.cli_signature",
                   "backend.logs",
                   "backend.desktop_entry", "appwindow"}
# Who may build a transport (import smtp.py or gmail.py): the core, the connection check, and
# the transports themselves.
TRANSPORT_BUILDERS = {"backend/plans.py", "backend/app.py", "backend/service.py", "backend/diagnostics.py",
                      "backend/autodetect.py", "backend/transports/smtp.py", "backend/transports/gmail.py",
                      "backend/transports/graph.py",
                      "backend/transports/__init__.py"}
MAX_FACE_LINES = 800
MAX_METHOD_LINES = 30


def imports(path: Path) -> set[str]:
    """Every module of ours a file imports (module-level or inside functions)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found |= {f"{node.module}.{a.name}" for a in node.names
                      if (ROOT / node.module.replace(".", "/") / f"{a.name}.py").exists()}
    return {m for m in found if m.split(".")[0] in ("backend", "bridge", "appwindow")}


def backend_files() -> list[Path]:
    return sorted((ROOT / "backend").rglob("*.py"))


@pytest.mark.parametrize("face", FACES)
def test_faces_import_only_the_core(face):
    below = sorted(imports(ROOT / face) - FACE_MAY_IMPORT)
    assert not below, f"{face} imports {below}: call backend.app.App instead (a use case in a face is written twice)"


@pytest.mark.parametrize("face", FACES)
def test_faces_are_thin(face):
    source = (ROOT / face).read_text(encoding="utf-8")
    assert len(source.splitlines()) < MAX_FACE_LINES, f"{face} has {len(source.splitlines())} lines"


def test_the_bridge_methods_are_short():
    tree = ast.parse((ROOT / "bridge.py").read_text(encoding="utf-8"))
    bridge = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "Bridge")
    long = [(n.name, n.end_lineno - n.lineno + 1) for n in bridge.body
            if isinstance(n, ast.FunctionDef) and n.end_lineno - n.lineno + 1 > MAX_METHOD_LINES]
    assert not long, f"Bridge methods over {MAX_METHOD_LINES} lines: {long}"


@pytest.mark.parametrize("face", ["backend/cli.py", "backend/cli_accounts.py", "backend/cli_schedule.py",
                                  "backend/cli_checks.py", "backend/cli_signature.py"])
def test_the_cli_commands_are_short(face):
    tree = ast.parse((ROOT / face).read_text(encoding="utf-8"))
    long = [(n.name, n.end_lineno - n.lineno + 1) for n in tree.body
            if isinstance(n, ast.FunctionDef) and n.name.startswith(("cmd_", "_gmail_", "_microsoft_"))
            and n.end_lineno - n.lineno + 1 > MAX_METHOD_LINES + 10]
    assert not long, f"command functions over {MAX_METHOD_LINES + 10} lines: {long}"


def test_only_the_core_builds_transports():
    builders = {str(p.relative_to(ROOT)) for p in backend_files()
                if imports(p) & {"backend.transports.smtp", "backend.transports.gmail", "backend.transports.graph"}}
    assert builders <= TRANSPORT_BUILDERS, f"these build transports outside the core: {builders - TRANSPORT_BUILDERS}"


def test_the_loop_sees_only_the_seam():
    used = imports(ROOT / "backend/campaign.py")
    assert not used & {"backend.transports.smtp", "backend.transports.gmail", "backend.transports.graph",
                       "backend.journal"}, used


def test_the_journal_does_not_import_the_loop():
    assert "backend.campaign" not in imports(ROOT / "backend/journal.py")


def test_nothing_below_imports_a_face():
    for path in backend_files():
        if str(path.relative_to(ROOT)) in FACES:
            continue
        used = imports(path)
        assert "bridge" not in used and "backend.cli" not in used and "backend.web" not in used, \
            f"{path.relative_to(ROOT)} imports a face: {sorted(used)}"


def test_no_attributes_are_patched_onto_exceptions():
    for path in [*backend_files(), ROOT / "bridge.py"]:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Assign):
                for target in node.targets:
                    if isinstance(target, ast.Attribute) and isinstance(target.value, ast.Name) \
                            and target.value.id in ("err", "exc", "error") and target.attr == "steps":
                        pytest.fail(f"{path.relative_to(ROOT)}:{node.lineno} patches .steps onto an exception")
