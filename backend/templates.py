"""Named message templates kept in the user's data folder: save, list, load, rename, delete, export, import.

Each template is one JSON file in the store's folder, the same shape as an exported file:

    {"format": "bulk-mailer-template", "version": 1,
     "template": {"name": ..., "subject": ..., "body": ..., "format": "html"|"text"|"markdown",
                  "text": ...|null, "attachments": [...], "unsubscribe": [...], "updated": ISO}}

The file name is derived from the name (an ASCII slug plus a hash of the case-folded name),
never the raw name, so names such as "../../x", "CON" or "a/b:c" stay inside the folder, and
two names that differ only in case map to the same file. Files are written atomically
(temporary file + os.replace): a crash mid-write leaves the previous version in place.
Bodies are kept as text and never rendered or evaluated here; compose.py does that.
"""

from __future__ import annotations

import builtins
import dataclasses
import datetime as dt
import hashlib
import json
import logging
import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from backend import paths
from backend.errors import InputError

__all__ = [
    "FILE_FORMAT",
    "FILE_VERSION",
    "MAX_FILE_BYTES",
    "MAX_NAME_LENGTH",
    "SavedTemplate",
    "TemplateExistsError",
    "TemplateFileError",
    "TemplateNotFoundError",
    "TemplateStore",
    "TemplateStoreError",
    "validate_name",
]

log = logging.getLogger(__name__)

FILE_FORMAT = "bulk-mailer-template"
FILE_VERSION = 1
MAX_NAME_LENGTH = 100
MAX_FILE_BYTES = 5 * 1024 * 1024
MAX_LIST_ITEMS = 1000  # attachments / unsubscribe entries in one template
BODY_FORMATS = ("html", "text", "markdown")
FOLDER = "templates"

# Controls, line/paragraph separators and bidi overrides: never in a name (they hide or
# reorder what the user sees in a list); surrogates cannot be written as UTF-8.
_NAME_FORBIDDEN_CATEGORIES = {"Cc", "Cs", "Zl", "Zp"}
_BIDI = re.compile("[\u200e\u200f\u202a-\u202e\u2066-\u2069]")
_HEADER_CONTROL = re.compile(r"[\x00-\x1f\x7f\u0085\u2028\u2029]")
_SLUG_DROP = re.compile(r"[^a-z0-9]+")
_SLUG_LENGTH = 40


class TemplateStoreError(InputError):
    """A template cannot be saved, found or read; .field names the part at fault, if any."""

    def __init__(self, message: str, *, field: str | None = None, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.field = field


class TemplateNotFoundError(TemplateStoreError):
    """No saved template has this name."""


class TemplateExistsError(TemplateStoreError):
    """A template with this name (compared case-insensitively) is already saved."""


class TemplateFileError(TemplateStoreError):
    """A template file cannot be read, written or understood."""

    default_category = "file_error"


@dataclass(frozen=True)
class SavedTemplate:
    """A named message: subject, body (HTML or text), optional text alternative, attachments."""

    name: str
    subject: str
    body: str
    format: str = "html"  # html | text | markdown
    text: str | None = None
    attachments: list[str] = field(default_factory=list)
    unsubscribe: list[str] = field(default_factory=list)
    updated: str = ""
    raw_html: bool = False  # markdown: raw HTML in it allowed

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON-ready fields (for files, the bridge and the CLI)."""
        return {
            "name": self.name,
            "subject": self.subject,
            "body": self.body,
            "format": self.format,
            "text": self.text,
            "attachments": list(self.attachments),
            "unsubscribe": list(self.unsubscribe),
            "updated": self.updated,
            "raw_html": self.raw_html,
        }

    @classmethod
    def from_dict(cls, data: object) -> SavedTemplate:
        """Build and validate a template from untrusted JSON data; raise TemplateStoreError."""
        if not isinstance(data, dict):
            raise TemplateFileError(f"the template must be a JSON object, not {_kind(data)}")
        missing = [k for k in ("name", "subject", "body") if k not in data]
        if missing:
            raise TemplateFileError(
                f"the template has no {', '.join(repr(m) for m in missing)}", field=missing[0]
            )
        updated = data.get("updated", "")
        template = cls(
            name=data["name"],
            subject=data["subject"],
            body=data["body"],
            format=data.get("format", "html"),
            text=data.get("text"),
            attachments=data.get("attachments", []) if data.get("attachments") is not None else [],
            unsubscribe=data.get("unsubscribe", []) if data.get("unsubscribe") is not None else [],
            updated=updated if isinstance(updated, str) else "",
            raw_html=data.get("raw_html") is True,
        )
        return validate(template)


def _kind(value: object) -> str:
    return {
        dict: "an object", list: "a list", str: "text", bool: "true/false",
        int: "a number", float: "a number", type(None): "null",
    }.get(type(value), type(value).__name__)


def validate_name(name: object) -> str:
    """The name as stored (trimmed, NFC), or raise TemplateStoreError saying what is wrong."""
    if not isinstance(name, str):
        raise TemplateStoreError(f"the template name must be text, not {_kind(name)}", field="name")
    value = unicodedata.normalize("NFC", name.strip())
    if not value:
        raise TemplateStoreError("the template name is empty; give the template a name", field="name")
    if len(value) > MAX_NAME_LENGTH:
        raise TemplateStoreError(
            f"the template name is {len(value)} characters long; at most {MAX_NAME_LENGTH} are allowed",
            field="name",
        )
    bad = next(
        (ch for ch in value if unicodedata.category(ch) in _NAME_FORBIDDEN_CATEGORIES or _BIDI.match(ch)),
        None,
    )
    if bad is not None:
        raise TemplateStoreError(
            f"the template name contains a control character (U+{ord(bad):04X}); "
            "use letters, digits, spaces and punctuation only",
            field="name",
        )
    return value


def _text(value: object, what: str, *, optional: bool = False) -> str | None:
    if value is None and optional:
        return None
    if not isinstance(value, str):
        raise TemplateStoreError(f"the {what} must be text, not {_kind(value)}", field=what)
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise TemplateStoreError(
            f"the {what} contains characters that cannot be stored (unpaired surrogates)", field=what
        ) from None
    return value


def _text_list(value: object, what: str) -> list[str]:
    if not isinstance(value, list | tuple):
        raise TemplateStoreError(f"the {what} must be a list of text, not {_kind(value)}", field=what)
    if len(value) > MAX_LIST_ITEMS:
        raise TemplateStoreError(
            f"the {what} list has {len(value)} entries; at most {MAX_LIST_ITEMS} are allowed", field=what
        )
    out = []
    for i, item in enumerate(value, 1):
        if not isinstance(item, str):
            raise TemplateStoreError(
                f"entry {i} of the {what} must be text, not {_kind(item)}", field=what
            )
        if _HEADER_CONTROL.search(item):
            raise TemplateStoreError(
                f"entry {i} of the {what} contains a line break or a control character", field=what
            )
        _text(item, what)
        out.append(item)
    return out


def validate(template: SavedTemplate) -> SavedTemplate:
    """The template with its name normalised, or raise TemplateStoreError naming the field."""
    name = validate_name(template.name)
    subject = _text(template.subject, "subject")
    assert subject is not None
    if _HEADER_CONTROL.search(subject):
        raise TemplateStoreError(
            "the subject contains a line break or a control character; a subject is one line",
            field="subject",
        )
    body = _text(template.body, "body")
    if template.format not in BODY_FORMATS:
        raise TemplateStoreError(
            f"the body format must be 'html', 'text' or 'markdown', not {template.format!r}"[:200], field="format"
        )
    text = _text(template.text, "text", optional=True)
    attachments = _text_list(template.attachments, "attachments")
    unsubscribe = _text_list(template.unsubscribe, "unsubscribe")
    updated = template.updated if isinstance(template.updated, str) else ""
    return SavedTemplate(name, subject, body or "", template.format, text, attachments, unsubscribe, updated,
                         template.raw_html is True)


def _key(name: str) -> str:
    return unicodedata.normalize("NFC", name.strip()).casefold()


def file_name(name: str) -> str:
    """A safe file name for a template name: ASCII slug + hash of the case-folded name."""
    key = _key(name)
    ascii_name = unicodedata.normalize("NFKD", key).encode("ascii", "ignore").decode("ascii")
    slug = _SLUG_DROP.sub("-", ascii_name).strip("-")[:_SLUG_LENGTH].strip("-") or "template"
    digest = hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()[:12]
    return f"{slug}-{digest}.json"


def _document(template: SavedTemplate) -> bytes:
    doc = {"format": FILE_FORMAT, "version": FILE_VERSION, "template": template.as_dict()}
    data = json.dumps(doc, ensure_ascii=False, indent=2).encode("utf-8") + b"\n"
    if len(data) > MAX_FILE_BYTES:
        raise TemplateStoreError(
            f"the template is {len(data) / 1048576:.1f} MB; at most {MAX_FILE_BYTES // 1048576} MB "
            "can be saved (attach large files instead of pasting them into the body)",
            field="body",
        )
    return data


def parse_document(data: bytes, source: str) -> SavedTemplate:
    """Read a template file's bytes (JSON only, nothing is evaluated); raise TemplateFileError."""
    if len(data) > MAX_FILE_BYTES:
        raise TemplateFileError(
            f"{source}: the file is larger than {MAX_FILE_BYTES // 1048576} MB; it is not a template file"
        )
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise TemplateFileError(f"{source}: not a template file (it is not UTF-8 text)") from None
    try:
        doc = json.loads(text, parse_constant=_refuse_constant)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, huge ints, deep nesting
        detail = str(exc) if isinstance(exc, ValueError) else "it is nested too deeply"
        raise TemplateFileError(f"{source}: not a template file (not valid JSON: {detail})") from None
    if not isinstance(doc, dict) or doc.get("format") != FILE_FORMAT:
        found = doc.get("format") if isinstance(doc, dict) else None
        what = f" (its format is {found!r})"[:120] if isinstance(found, str) else ""
        raise TemplateFileError(
            f"{source}: not a Bulk Mailer template file{what}; export a template from Bulk Mailer "
            "to get one", field="format"
        )
    version = doc.get("version")
    if isinstance(version, bool) or not isinstance(version, int):
        raise TemplateFileError(f"{source}: the template file has no valid version number", field="version")
    if version > FILE_VERSION:
        raise TemplateFileError(
            f"{source}: the template file was made by a newer Bulk Mailer (version {version}); "
            "update Bulk Mailer to open it", field="version"
        )
    if version < 1:
        raise TemplateFileError(f"{source}: unknown template file version {version}", field="version")
    try:
        return SavedTemplate.from_dict(doc.get("template"))
    except TemplateStoreError as exc:
        raise TemplateFileError(f"{source}: {exc.message}", field=exc.field) from None


def _refuse_constant(name: str) -> None:
    raise ValueError(f"{name} is not allowed")


def _read_limited(path: Path, source: str) -> bytes:
    """A regular file's bytes, at most MAX_FILE_BYTES + 1 of them; TemplateFileError otherwise."""
    try:
        if path.is_dir():
            raise TemplateFileError(f"{source}: is a folder, not a file")
        if path.exists() and not path.is_file():
            raise TemplateFileError(f"{source}: is not a regular file")
        if path.exists() and path.stat().st_size > MAX_FILE_BYTES:
            raise TemplateFileError(
                f"{source}: the file is larger than {MAX_FILE_BYTES // 1048576} MB; "
                "it is not a template file"
            )
        with path.open("rb") as fh:
            return fh.read(MAX_FILE_BYTES + 1)
    except FileNotFoundError:
        raise TemplateFileError(f"{source}: file not found") from None
    except PermissionError:
        raise TemplateFileError(f"{source}: permission denied, the file cannot be read") from None
    except (OSError, ValueError) as exc:  # ValueError: e.g. a NUL in the path
        raise TemplateFileError(f"{source}: cannot be read ({getattr(exc, 'strerror', None) or exc})") from None


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


class TemplateStore:
    """Named templates in a folder (default: data_dir()/templates), one JSON file each."""

    def __init__(self, folder: Path | str | None = None, *, clock: Callable[[], str] = _now) -> None:
        self._own = folder is None  # the app's folder: this user's alone (paths.check_folder)
        if folder is None:
            folder = paths.data_dir() / FOLDER
        self.folder = Path(folder)
        self._clock = clock

    # -- reading -----------------------------------------------------------------------

    def _load(self, path: Path) -> SavedTemplate:
        return parse_document(_read_limited(path, str(path)), str(path))

    def _scan(self) -> dict[str, tuple[Path, SavedTemplate]]:
        """case-folded name -> (file, template) for every readable template file."""
        found: dict[str, tuple[Path, SavedTemplate]] = {}
        try:
            files = sorted(self.folder.glob("*.json"))
        except OSError:
            return found
        for path in files:
            try:
                template = self._load(path)
            except TemplateStoreError as exc:
                log.warning("skipping an unreadable template file: %s", exc.message)
                continue
            key = _key(template.name)
            # the file named after the name wins over a stray copy under another file name
            if key not in found or path.name == file_name(template.name):
                found[key] = (path, template)
        return found

    def _find(self, name: str) -> tuple[Path, SavedTemplate] | None:
        key = _key(name)
        path = self.folder / file_name(name)
        if path.is_file():
            try:
                template = self._load(path)
            except TemplateStoreError:
                template = None
            if template is not None and _key(template.name) == key:
                return path, template
        return self._scan().get(key)  # a file copied in by hand under another file name

    def list(self) -> builtins.list[SavedTemplate]:
        """Every saved template, sorted by name (case-insensitive); unreadable files are skipped."""
        return sorted((t for _, t in self._scan().values()), key=lambda t: (_key(t.name), t.name))

    def get(self, name: str) -> SavedTemplate:
        """The template with this name (case-insensitive); TemplateNotFoundError if there is none."""
        found = self._find(validate_name(name))
        if found is None:
            raise TemplateNotFoundError(f"there is no saved template named {name.strip()!r}", field="name")
        return found[1]

    def __contains__(self, name: object) -> bool:
        try:
            return self._find(validate_name(name)) is not None
        except TemplateStoreError:
            return False

    # -- writing -----------------------------------------------------------------------

    def _write(self, template: SavedTemplate) -> Path:
        data = _document(template)
        target = self.folder / file_name(template.name)
        try:
            self.folder.mkdir(parents=True, exist_ok=True, mode=0o700)
            if self._own:
                paths.check_folder(self.folder)
            paths.atomic_write(target, data)
        except OSError as exc:
            raise TemplateFileError(
                f"the template {template.name!r} could not be saved in {self.folder}: "
                f"{exc.strerror or exc}"
            ) from exc
        return target

    def save(self, template: SavedTemplate, *, overwrite: bool = False) -> SavedTemplate:
        """Save (stamping .updated); TemplateExistsError if the name is taken and not overwrite."""
        template = dataclasses.replace(validate(template), updated=self._clock())
        existing = self._find(template.name)
        if existing is not None and not overwrite:
            raise TemplateExistsError(
                f"a template named {existing[1].name!r} already exists; choose another name or "
                "replace it",
                field="name",
            )
        target = self._write(template)
        if existing is not None and existing[0] != target:
            existing[0].unlink(missing_ok=True)
        return template

    def rename(self, old: str, new: str) -> SavedTemplate:
        """Give a template a new name; TemplateExistsError if another template has it."""
        source = self.get(old)
        path = self._find(source.name)
        assert path is not None
        new_name = validate_name(new)
        if _key(new_name) != _key(source.name) and self._find(new_name) is not None:
            raise TemplateExistsError(
                f"a template named {new_name!r} already exists; choose another name", field="name"
            )
        renamed = dataclasses.replace(source, name=new_name, updated=self._clock())
        target = self._write(renamed)
        if path[0] != target:
            path[0].unlink(missing_ok=True)
        return renamed

    def delete(self, name: str) -> None:
        """Remove a template; TemplateNotFoundError if there is none with this name."""
        self.get(name)
        key = _key(name)
        while (found := self._find(name)) is not None and _key(found[1].name) == key:
            try:
                found[0].unlink()
            except FileNotFoundError:
                pass
            except OSError as exc:
                raise TemplateFileError(f"the template {name!r} could not be deleted: {exc.strerror or exc}") from exc

    # -- files -------------------------------------------------------------------------

    def export(self, name: str, path: Path | str) -> Path:
        """Write one template to a file others can import; returns the path written."""
        template = self.get(name)
        target = Path(path)
        data = _document(template)
        try:
            if target.is_dir():
                raise TemplateFileError(f"{target}: is a folder; choose a file name to export to")
            paths.atomic_write(target, data)
        except OSError as exc:
            raise TemplateFileError(f"{target}: cannot be written ({exc.strerror or exc})") from exc
        except ValueError as exc:
            raise TemplateFileError(f"{target!r}: not a usable file path ({exc})") from exc
        return target

    def import_file(self, path: Path | str, *, overwrite: bool = False) -> SavedTemplate:
        """Read an exported template file and save it; nothing in it is rendered or run."""
        source = Path(path)
        template = parse_document(_read_limited(source, str(source)), str(source))
        return self.save(template, overwrite=overwrite)
