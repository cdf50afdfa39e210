"""Saved templates: round trips, validation, hostile names, atomic writes, export/import."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from backend import paths
from backend.errors import MailerError
from backend.templates import (
    FILE_FORMAT,
    MAX_FILE_BYTES,
    SavedTemplate,
    TemplateExistsError,
    TemplateFileError,
    TemplateNotFoundError,
    TemplateStore,
    TemplateStoreError,
    file_name,
)


def make(name: str = "Welcome", **kw) -> SavedTemplate:
    values = {"subject": "Hello {{ name }}", "body": "<p>Hi {{ name }}</p>"}
    values.update(kw)
    return SavedTemplate(name, **values)


@pytest.fixture
def store(tmp_path: Path) -> TemplateStore:
    return TemplateStore(tmp_path / "templates", clock=lambda: "2024-05-01T10:00:00+00:00")


def files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file())


# -- round trips ---------------------------------------------------------------------------


def test_default_folder_is_under_data_dir(isolated_home: Path) -> None:
    store = TemplateStore()
    assert store.folder == paths.data_dir() / "templates"
    store.save(make())
    assert store.folder.is_relative_to(isolated_home)
    assert [t.name for t in TemplateStore().list()] == ["Welcome"]


def test_save_get_round_trip_keeps_every_field(store: TemplateStore) -> None:
    original = make(
        "Newsletter ✉ März", format="html", text="Hi {{ name }}", subject="Grüße {{ name }}",
        attachments=["a.pdf", "sub/b.png"], unsubscribe=["mailto:u@example.com", "https://x.example/u"],
    )
    saved = store.save(original)
    assert saved.updated == "2024-05-01T10:00:00+00:00"
    got = store.get("Newsletter ✉ März")
    assert got == saved
    assert got.attachments == ["a.pdf", "sub/b.png"]
    assert got.text == "Hi {{ name }}"


def test_text_format_and_defaults(store: TemplateStore) -> None:
    store.save(SavedTemplate("Plain", "S", "Body", "text"))
    got = store.get("plain")  # case-insensitive lookup
    assert (got.name, got.format, got.text, got.attachments, got.unsubscribe) == ("Plain", "text", None, [], [])


def test_updated_defaults_to_now_in_iso(tmp_path: Path) -> None:
    import datetime as dt

    saved = TemplateStore(tmp_path).save(make())
    stamp = dt.datetime.fromisoformat(saved.updated)
    assert stamp.tzinfo is not None
    assert abs((dt.datetime.now(dt.UTC) - stamp).total_seconds()) < 60


def test_list_sorted_case_insensitively(store: TemplateStore) -> None:
    for name in ["beta", "Alpha", "gamma", "Beta 2", "alpha 0"]:
        store.save(make(name))
    assert [t.name for t in store.list()] == ["Alpha", "alpha 0", "beta", "Beta 2", "gamma"]


def test_list_of_missing_folder_is_empty(tmp_path: Path) -> None:
    assert TemplateStore(tmp_path / "nothing").list() == []


def test_name_is_trimmed_and_nfc_normalised(store: TemplateStore) -> None:
    store.save(make("  Cafe\u0301  "))
    assert [t.name for t in store.list()] == ["Café"]
    assert store.get("café").name == "Café"
    assert "CAFÉ" in store


def test_overwrite_replaces_and_case_change_keeps_one_file(store: TemplateStore) -> None:
    store.save(make("Promo", body="v1"))
    store.save(make("PROMO", body="v2"), overwrite=True)
    assert [(t.name, t.body) for t in store.list()] == [("PROMO", "v2")]
    assert len(files(store.folder)) == 1


def test_rename(store: TemplateStore) -> None:
    store.save(make("Old", body="keep me"))
    renamed = store.rename("old", "New name")
    assert renamed.name == "New name" and renamed.body == "keep me"
    assert [t.name for t in store.list()] == ["New name"]
    assert "Old" not in store
    assert len(files(store.folder)) == 1


def test_rename_changing_only_case(store: TemplateStore) -> None:
    store.save(make("promo"))
    store.rename("promo", "Promo")
    assert [t.name for t in store.list()] == ["Promo"]
    assert len(files(store.folder)) == 1


def test_rename_onto_existing_name_is_refused(store: TemplateStore) -> None:
    store.save(make("A", body="a"))
    store.save(make("B", body="b"))
    with pytest.raises(TemplateExistsError, match="'b' already exists"):
        store.rename("A", "b")
    assert [(t.name, t.body) for t in store.list()] == [("A", "a"), ("B", "b")]


def test_rename_missing_and_to_invalid_name(store: TemplateStore) -> None:
    with pytest.raises(TemplateNotFoundError, match="no saved template named 'ghost'"):
        store.rename("ghost", "x")
    store.save(make("A"))
    with pytest.raises(TemplateStoreError, match="empty"):
        store.rename("A", "   ")
    assert [t.name for t in store.list()] == ["A"]


def test_delete(store: TemplateStore) -> None:
    store.save(make("A"))
    store.save(make("B"))
    store.delete("a")
    assert [t.name for t in store.list()] == ["B"]
    with pytest.raises(TemplateNotFoundError):
        store.delete("A")
    with pytest.raises(TemplateNotFoundError):
        store.get("A")


def test_bodies_are_stored_verbatim_never_rendered(store: TemplateStore) -> None:
    code = "{{ ''.__class__.__mro__[1].__subclasses__() }}{% for x in range(10**9) %}{% endfor %}"
    store.save(make("Code", subject="{{ 7*7 }}", body=code))
    got = store.get("Code")
    assert got.body == code and got.subject == "{{ 7*7 }}"


# -- validation ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("x" * 101, "101 characters long; at most 100"),
        ("a\nb", "control character (U+000A)"),
        ("a\x00b", "control character (U+0000)"),
        ("tab\there", "control character (U+0009)"),
        ("evil\u202egnp.exe", "control character (U+202E)"),
        ("line\u2028sep", "control character (U+2028)"),
        ("bad\ud800", "control character (U+D800)"),
        (None, "must be text"),
        (42, "must be text"),
    ],
)
def test_invalid_names_are_refused(store: TemplateStore, name, message: str) -> None:
    with pytest.raises(TemplateStoreError, match=re.escape(message)) as info:
        store.save(make(name))
    assert info.value.field == "name"
    assert isinstance(info.value, MailerError)
    assert info.value.describe()["message"]
    assert files(store.folder) == []


def test_hundred_character_name_is_fine(store: TemplateStore) -> None:
    store.save(make("é" * 100))
    assert store.get("É" * 100).name == "é" * 100


def test_duplicate_name_without_overwrite(store: TemplateStore) -> None:
    store.save(make("Welcome", body="first"))
    with pytest.raises(TemplateExistsError, match="'Welcome' already exists") as info:
        store.save(make("WELCOME", body="second"))
    assert info.value.field == "name"
    assert store.get("welcome").body == "first"


@pytest.mark.parametrize(
    ("kw", "field", "message"),
    [
        ({"format": "rtf"}, "format", "'html', 'text' or 'markdown'"),
        ({"subject": "Hi\r\nBcc: x@evil.example"}, "subject", "line break"),
        ({"subject": 5}, "subject", "must be text"),
        ({"body": None}, "body", "must be text"),
        ({"text": ["x"]}, "text", "must be text"),
        ({"attachments": "a.pdf"}, "attachments", "must be a list"),
        ({"attachments": ["a.pdf", 3]}, "attachments", "entry 2"),
        ({"attachments": ["a\x00.pdf"]}, "attachments", "control character"),
        ({"unsubscribe": ["mailto:a@b.example\r\nX: y"]}, "unsubscribe", "line break"),
        ({"attachments": ["a"] * 1001}, "attachments", "at most 1000"),
        ({"body": "x\udc80y"}, "body", "cannot be stored"),
    ],
)
def test_invalid_fields_are_refused(store: TemplateStore, kw: dict, field: str, message: str) -> None:
    with pytest.raises(TemplateStoreError, match=message) as info:
        store.save(make(**kw))
    assert info.value.field == field
    assert files(store.folder) == []


def test_too_large_template_is_refused(store: TemplateStore) -> None:
    with pytest.raises(TemplateStoreError, match="at most 5 MB") as info:
        store.save(make(body="x" * (MAX_FILE_BYTES + 1)))
    assert info.value.field == "body"


def test_unknown_template(store: TemplateStore) -> None:
    with pytest.raises(TemplateNotFoundError, match="no saved template named 'Nope'") as info:
        store.get("Nope")
    assert info.value.describe()["category"] == "invalid_settings"
    assert "Nope" not in store
    assert None not in store


# -- hostile names -------------------------------------------------------------------------


HOSTILE = ["../../x", "..", ".", "/etc/passwd", "a/b", "a\\b", "C:\\x", "c:x", "CON", "con.json",
           "NUL", "aux", ".hidden", "~", "*?<>|\"", "x" * 100, "名前", "🙂"]


@pytest.mark.parametrize("name", HOSTILE)
def test_hostile_names_stay_inside_the_folder(tmp_path: Path, name: str) -> None:
    folder = tmp_path / "deep" / "templates"
    store = TemplateStore(folder)
    store.save(make(name, body=name))
    written = files(tmp_path)
    assert len(written) == 1
    (only,) = written
    assert only.parent == folder
    assert only.name.endswith(".json") and not only.name.startswith(".")
    # Windows reserves device names before the first dot ("CON.json"); "con-1a2b.json" is fine
    assert only.name.split(".")[0].upper() not in {"CON", "NUL", "AUX", "PRN", "COM1", "LPT1"}
    assert only.name.isascii() and "/" not in only.name and "\\" not in only.name
    assert store.get(name).body == name
    store.delete(name)
    assert files(tmp_path) == []


def test_file_names_are_distinct_for_slug_collisions() -> None:
    names = ["a/b", "a:b", "a b", "A-B", "a..b", "ä b"]
    assert len({file_name(n) for n in names}) == len({n.casefold() for n in names})
    assert file_name("Promo") == file_name("PROMO")


def test_nul_in_name_is_refused_before_touching_disk(tmp_path: Path) -> None:
    store = TemplateStore(tmp_path / "t")
    with pytest.raises(TemplateStoreError, match="control character"):
        store.save(make("a\x00/../../etc"))
    with pytest.raises(TemplateStoreError):
        store.get("a\x00b")
    assert not (tmp_path / "t").exists()


# -- atomic writes -------------------------------------------------------------------------


def test_crash_during_replace_keeps_the_old_file(store: TemplateStore, monkeypatch: pytest.MonkeyPatch) -> None:
    store.save(make("Keep", body="old body"))
    before = {p.name: p.read_bytes() for p in files(store.folder)}

    def crash(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(TemplateFileError, match="could not be saved.*No space left") as info:
        store.save(make("Keep", body="new body"), overwrite=True)
    assert info.value.category == "file_error"
    monkeypatch.undo()
    assert {p.name: p.read_bytes() for p in files(store.folder)} == before  # no temp file left
    assert store.get("Keep").body == "old body"


def test_crash_during_rename_keeps_the_old_template(store: TemplateStore, monkeypatch: pytest.MonkeyPatch) -> None:
    store.save(make("Keep", body="body"))

    def crash(src, dst):
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(TemplateFileError):
        store.rename("Keep", "Other")
    monkeypatch.undo()
    assert [t.name for t in store.list()] == ["Keep"]


def test_unreadable_files_in_the_folder_are_skipped(store: TemplateStore) -> None:
    store.save(make("Good"))
    (store.folder / "garbage.json").write_text("{not json")
    (store.folder / "other.json").write_text(json.dumps({"format": "something-else"}))
    (store.folder / "notes.txt").write_text("ignored")
    assert [t.name for t in store.list()] == ["Good"]


def test_a_template_file_copied_in_under_another_name_is_found(store: TemplateStore, tmp_path: Path) -> None:
    store.save(make("Copied", body="b"))
    (only,) = files(store.folder)
    only.rename(store.folder / "my copy.json")
    assert store.get("copied").body == "b"
    store.save(make("Copied", body="c"), overwrite=True)
    assert [p.name for p in files(store.folder)] == [file_name("Copied")]
    store.delete("Copied")
    assert files(store.folder) == []


# -- export / import -----------------------------------------------------------------------


def test_export_import_round_trip(store: TemplateStore, tmp_path: Path) -> None:
    saved = store.save(make("Shared", text="plain", attachments=["x.pdf"], unsubscribe=["mailto:u@x.example"]))
    out = store.export("shared", tmp_path / "shared.json")
    doc = json.loads(out.read_text(encoding="utf-8"))
    assert doc["format"] == FILE_FORMAT and doc["version"] == 1
    assert doc["template"]["name"] == "Shared"

    other = TemplateStore(tmp_path / "elsewhere", clock=lambda: "2025-01-01T00:00:00+00:00")
    imported = other.import_file(out)
    assert imported == SavedTemplate(**{**saved.as_dict(), "updated": "2025-01-01T00:00:00+00:00"})
    assert other.get("Shared") == imported


def test_import_existing_name_needs_overwrite(store: TemplateStore, tmp_path: Path) -> None:
    store.save(make("Shared", body="mine"))
    out = store.export("Shared", tmp_path / "s.json")
    with pytest.raises(TemplateExistsError):
        store.import_file(out)
    doc = json.loads(out.read_text())
    doc["template"]["body"] = "theirs"
    out.write_text(json.dumps(doc))
    assert store.import_file(out, overwrite=True).body == "theirs"
    assert store.get("Shared").body == "theirs"


def test_import_does_not_execute_anything(store: TemplateStore, tmp_path: Path) -> None:
    body = "{{ cycler.__init__.__globals__.os.system('touch pwned') }}"
    path = tmp_path / "evil.json"
    path.write_text(json.dumps({"format": FILE_FORMAT, "version": 1,
                                "template": {"name": "Evil", "subject": "{{ 1/0 }}", "body": body}}))
    got = store.import_file(path)
    assert got.body == body and got.format == "html"
    assert not (Path.cwd() / "pwned").exists() and not (tmp_path / "pwned").exists()


def test_export_errors(store: TemplateStore, tmp_path: Path) -> None:
    with pytest.raises(TemplateNotFoundError):
        store.export("missing", tmp_path / "x.json")
    store.save(make("A"))
    with pytest.raises(TemplateFileError, match="is a folder"):
        store.export("A", tmp_path)
    with pytest.raises(TemplateFileError, match="cannot be written"):
        store.export("A", tmp_path / "no" / "such" / "dir" / "x.json")


def write(tmp_path: Path, content: bytes | str, name: str = "in.json") -> Path:
    path = tmp_path / name
    if isinstance(content, str):
        content = content.encode("utf-8")
    path.write_bytes(content)
    return path


def doc(template: object = None, **top) -> str:
    base = {"format": FILE_FORMAT, "version": 1,
            "template": template if template is not None else {"name": "T", "subject": "S", "body": "B"}}
    base.update(top)
    return json.dumps(base)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "not valid JSON"),
        (b"\x89PNG\r\n\x1a\n\x00\x00binary", "not UTF-8"),
        ("{\"format\": ", "not valid JSON"),
        ("<html>hello</html>", "not valid JSON"),
        ("[1, 2, 3]", "not a Bulk Mailer template file"),
        ("\"just text\"", "not a Bulk Mailer template file"),
        (json.dumps({"name": "T", "subject": "S", "body": "B"}), "not a Bulk Mailer template file"),
        (doc(format="mailchimp-template"), "its format is 'mailchimp-template'"),
        (doc(version=2), "newer Bulk Mailer"),
        (doc(version="1"), "no valid version"),
        (doc(version=True), "no valid version"),
        (doc(version=0), "unknown template file version"),
        (doc(template=[1]), "must be a JSON object, not a list"),
        (doc(template={"name": "T", "subject": "S"}), "no 'body'"),
        (doc(template={"name": 1, "subject": "S", "body": "B"}), "name must be text, not a number"),
        (doc(template={"name": "T", "subject": "S", "body": {"x": 1}}), "body must be text, not an object"),
        (doc(template={"name": "T", "subject": "S", "body": "B", "format": "rtf"}), "'html', 'text' or 'markdown'"),
        (doc(template={"name": "T", "subject": "S", "body": "B", "attachments": [None]}), "entry 1 of the attachments"),
        (doc(template={"name": "", "subject": "S", "body": "B"}), "name is empty"),
        (doc(template={"name": "a\x1b[31m", "subject": "S", "body": "B"}), "control character"),
        ('{"format": "bulk-mailer-template", "version": NaN}', "NaN is not allowed"),
        ("[" * 100_000 + "]" * 100_000, "not valid JSON"),
        ('{"format": "bulk-mailer-template", "version": 1' + "0" * 5000 + "}", "not valid JSON"),
    ],
)
def test_import_of_garbage_is_refused_clearly(store: TemplateStore, tmp_path: Path, content, message: str) -> None:
    path = write(tmp_path, content)
    with pytest.raises(TemplateFileError, match=message) as info:
        store.import_file(path)
    assert str(path) in info.value.message
    assert info.value.category == "file_error"
    assert store.list() == []


def test_import_too_large_file_is_refused_without_reading_it(store: TemplateStore, tmp_path: Path) -> None:
    path = tmp_path / "big.json"
    with path.open("wb") as fh:
        fh.truncate(MAX_FILE_BYTES + 1)  # sparse: nothing to parse, only the size
    with pytest.raises(TemplateFileError, match="larger than 5 MB"):
        store.import_file(path)


@pytest.mark.parametrize("case", ["missing", "folder", "nul"])
def test_import_unreadable_paths(store: TemplateStore, tmp_path: Path, case: str) -> None:
    path = {"missing": tmp_path / "nope.json", "folder": tmp_path, "nul": tmp_path / "a\x00b"}[case]
    with pytest.raises(TemplateFileError):
        store.import_file(path)


def test_import_accepts_utf8_bom_and_ignores_unknown_keys(store: TemplateStore, tmp_path: Path) -> None:
    content = doc(template={"name": "Bom", "subject": "S", "body": "B", "extra": {"ignored": True},
                            "attachments": None}, comment="x")
    got = store.import_file(write(tmp_path, b"\xef\xbb\xbf" + content.encode()))
    assert (got.name, got.attachments) == ("Bom", [])
