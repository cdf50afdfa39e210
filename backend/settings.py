"""Account settings: SmtpSettings, their validation, and the provider presets that fill them."""

from __future__ import annotations

import dataclasses
import json
import logging
import re
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from backend import paths
from backend.errors import SettingsError
from backend.presets import PRESETS, Preset, get_preset, preset_host, provider_advice

log = logging.getLogger(__name__)

__all__ = [
    "PRESETS",
    "SECURITY_MODES",
    "Preset",
    "SmtpSettings",
    "apply_preset",
    "get_preset",
    "provider_advice",
]

SECURITY_MODES = ("starttls", "ssl", "none")
AUTH_MODES = ("password", "xoauth2")  # xoauth2: log in with the Google sign-in (SMTP OAuth2)
SECURITY_LABELS = {"starttls": "STARTTLS", "ssl": "SSL/TLS", "none": "None"}

# A host name or an IP literal; the resolver has the last word, this only catches typos
# such as spaces, schemes ("smtp://") or ports glued to the host.
_HOST_RE = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_]([A-Za-z0-9_.-]{0,251}[A-Za-z0-9_])?)$")
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f\x85\u2028\u2029]")


@dataclass(frozen=True)
class SmtpSettings:
    """One SMTP account: where to connect, how to secure it and how to log in."""

    host: str
    port: int = 587
    security: str = "starttls"
    user: str = ""
    password: str = dataclasses.field(default="", repr=False)
    from_address: str = ""
    ca_file: str | None = None
    verify_certificates: bool = True
    allow_plaintext_auth: bool = False
    timeout: float = 30.0
    provider: str | None = None
    helo_name: str | None = None
    auth: str = "password"
    # For auth="xoauth2": an object with .access_token(force_refresh=False) -> str (the Google
    # sign-in); never saved, never shown.
    token_source: Any = dataclasses.field(default=None, repr=False, compare=False)

    def validated(self) -> SmtpSettings:
        """Return self if every field is usable, else raise SettingsError naming the field."""
        host = self.host.strip() if isinstance(self.host, str) else ""
        if not host:
            raise SettingsError("host", "the server name is empty; enter e.g. smtp.example.com")
        if "://" in host:
            raise SettingsError(
                "host", f"'{host}' looks like a web address; enter only the server name, e.g. smtp.example.com"
            )
        if not _HOST_RE.match(host) or len(host) > 253 or (
            not host.startswith("[") and any(not 1 <= len(label) <= 63 for label in host.rstrip(".").split("."))
        ):
            raise SettingsError("host", f"'{host}' is not a valid server name")
        if isinstance(self.port, bool) or not isinstance(self.port, int) or not 1 <= self.port <= 65535:
            raise SettingsError("port", f"{self.port!r} is not a port number between 1 and 65535")
        if self.security not in SECURITY_MODES:
            raise SettingsError(
                "security", f"{self.security!r} is not one of {', '.join(SECURITY_MODES)}"
            )
        mismatch = port_security_mismatch(self.port, self.security)
        if mismatch:
            raise SettingsError("security", mismatch, category="tls_mode_mismatch")
        for name in ("user", "password"):
            value = getattr(self, name)
            if not isinstance(value, str) or _CONTROL_RE.search(value):
                raise SettingsError(name, "must be text without line breaks or control characters")
        if self.password and not self.user:
            raise SettingsError("user", "a password is set but the username is empty")
        if self.auth not in AUTH_MODES:
            raise SettingsError("auth", f"{self.auth!r} is not one of {', '.join(AUTH_MODES)}")
        if self.auth == "xoauth2":
            if not self.user:
                raise SettingsError("user", "signing in with Google (XOAUTH2) needs the account's address as username")
            if self.token_source is None:
                raise SettingsError("auth", "signing in with Google (XOAUTH2) needs a Google sign-in",
                                    category="oauth_error")
        if not isinstance(self.timeout, int | float) or not 1 <= self.timeout <= 600:
            raise SettingsError("timeout", "must be between 1 and 600 seconds")
        if self.ca_file is not None:
            if not self.verify_certificates:
                raise SettingsError("ca_file", "a CA file and skipping verification exclude each other")
            if not Path(self.ca_file).is_file():
                raise SettingsError("ca_file", f"'{self.ca_file}' is not a readable file")
            try:
                ssl.create_default_context().load_verify_locations(cafile=self.ca_file)
            except (ssl.SSLError, OSError, ValueError) as exc:
                raise SettingsError(
                    "ca_file", f"'{self.ca_file}' holds no usable CA certificate (PEM expected): {exc}"
                ) from None
        if self.provider is not None and self.provider not in PRESETS:
            raise SettingsError("provider", f"unknown provider '{self.provider}'; choose one of: {', '.join(PRESETS)}")
        return dataclasses.replace(self, host=host)

    @property
    def encrypted(self) -> bool:
        """Whether the connection is encrypted before anything else is said."""
        return self.security in ("starttls", "ssl")


def port_security_mismatch(port: int, security: str) -> str | None:
    """A plain-words explanation when the port's convention contradicts the security mode."""
    if port == 465 and security != "ssl":
        return "port 465 speaks SSL/TLS (implicit TLS): choose SSL/TLS, or use port 587 with STARTTLS"
    if port in (587, 25) and security == "ssl":
        return f"port {port} speaks STARTTLS, not SSL/TLS: choose STARTTLS, or use port 465 with SSL/TLS"
    return None


def apply_preset(provider: str, *, region: str | None = None, **overrides: object) -> dict[str, object]:
    """Host, port and security of a provider preset, with explicit values taking precedence."""
    try:
        preset = get_preset(provider)
        host = preset_host(preset, region)
    except ValueError as exc:
        raise SettingsError("provider", str(exc)) from None
    values: dict[str, object] = {
        "host": host,
        "port": preset.port,
        "security": preset.security,
        "provider": preset.key,
    }
    values.update({k: v for k, v in overrides.items() if v is not None})
    return values


def tls_context(settings: Any) -> ssl.SSLContext:
    """The TLS context of a connection (SMTP or IMAP): the system's authorities plus the
    account's ca_file; no verification only when the account asks for it."""
    ctx = ssl.create_default_context()
    if settings.ca_file:
        ctx.load_verify_locations(cafile=settings.ca_file)
    if not settings.verify_certificates:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


# -- the saved settings file (never a password) ----------------------------------------

SETTINGS_FILE = "settings.json"


def settings_path() -> Path:
    """config_dir()/settings.json."""
    return paths.config_dir() / SETTINGS_FILE


def load_saved() -> dict[str, object] | None:
    """The saved settings, or None on first start (or when the file is unreadable)."""

    try:
        data = json.loads(paths.read_private(settings_path()).decode("utf-8"))  # never through a link
    except FileNotFoundError:
        return None
    except paths.AppFileError as exc:
        log.warning("the saved settings are not used: %s", exc.message)
        return {}  # the next save replaces the link with a file of our own
    except (OSError, ValueError):
        return {}  # damaged: start from defaults, but it is not a first start
    return data if isinstance(data, dict) else {}


def save(data: dict[str, object]) -> None:
    """Write settings.json atomically; refuses anything that looks like a password field."""

    def walk(value: object) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                if "password" in str(key).lower() and isinstance(item, str) and item:
                    raise ValueError("a password must never be written to settings.json")
                walk(item)

    walk(data)
    paths.atomic_write(settings_path(), json.dumps(data, indent=2, ensure_ascii=False).encode("utf-8"))
