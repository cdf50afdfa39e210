"""Account settings validation and the error taxonomy's texts."""

from __future__ import annotations

import pytest

from backend import paths
from backend.errors import CATEGORIES, AuthError, MailerError, SettingsError
from backend.settings import SmtpSettings, apply_preset

DOCUMENTED_CATEGORIES = {
    "auth_failed", "auth_not_offered", "plaintext_auth_refused", "connection_refused", "timeout",
    "dns_failure", "tls_handshake_failed", "tls_mode_mismatch", "certificate_invalid",
    "sender_rejected", "recipient_rejected", "message_rejected", "rate_limited", "quota_exceeded",
    "server_disconnected", "invalid_address", "template_error", "attachment_error", "oauth_error",
}


@pytest.mark.parametrize(
    ("kw", "field", "words"),
    [
        ({"host": ""}, "host", "empty"),
        ({"host": "smtp://mail.example.com"}, "host", "web address"),
        ({"host": "mail example.com"}, "host", "not a valid"),
        ({"port": 0}, "port", "between 1 and 65535"),
        ({"port": 65536}, "port", "between 1 and 65535"),
        ({"port": "587"}, "port", "between"),
        ({"security": "tls"}, "security", "starttls"),
        ({"port": 465, "security": "starttls"}, "security", "choose SSL/TLS"),
        ({"port": 587, "security": "ssl"}, "security", "choose STARTTLS"),
        ({"user": "me\r\nMAIL FROM:<x>"}, "user", "line breaks"),
        ({"password": "x"}, "user", "username is empty"),
        ({"timeout": 0}, "timeout", "seconds"),
        ({"ca_file": "/nonexistent/ca.pem"}, "ca_file", "not a readable file"),
        ({"provider": "hotmale"}, "provider", "unknown provider"),
        ({"ca_file": __file__}, "ca_file", "no usable CA certificate"),
    ],
)
def test_invalid_settings_name_the_field(kw, field, words):
    with pytest.raises(SettingsError) as info:
        SmtpSettings(**{"host": "smtp.example.com", **kw}).validated()
    assert info.value.field == field
    assert str(info.value).startswith(f"{field}: ")
    assert words in str(info.value)


def test_port_security_mismatch_is_its_own_category():
    with pytest.raises(SettingsError) as info:
        SmtpSettings(host="smtp.example.com", port=465, security="starttls").validated()
    assert info.value.category == "tls_mode_mismatch"


def test_valid_settings_are_normalised_and_password_hidden():
    s = SmtpSettings(host="  smtp.example.com ", user="me", password="hunter2").validated()
    assert s.host == "smtp.example.com"
    assert "hunter2" not in repr(s)


def test_apply_preset_and_overrides():
    assert apply_preset("gmail") == {"host": "smtp.gmail.com", "port": 587, "security": "starttls", "provider": "gmail"}
    assert apply_preset("gmail", port=465, security="ssl")["port"] == 465
    assert apply_preset("amazon-ses", region="eu-west-1")["host"] == "email-smtp.eu-west-1.amazonaws.com"
    with pytest.raises(SettingsError) as info:
        apply_preset("amazon-ses", region="mars-1")
    assert info.value.field == "provider" and "mars-1" in str(info.value)


def test_every_design_category_has_cause_and_numbered_fixes():
    assert set(CATEGORIES) >= DOCUMENTED_CATEGORIES
    for cat in CATEGORIES.values():
        assert cat.title and cat.cause.endswith(".")
        assert cat.fix and all(step.strip() for step in cat.fix)


def test_describe_puts_specific_then_general_then_provider_steps():
    exc = AuthError("login refused", category="auth_failed", fix=("Specific first.",), host="h", port=1)
    d = exc.describe("gmail")
    assert d["category"] == "auth_failed" and d["message"] == "h:1: login refused"
    assert d["fix"][0] == "Specific first."
    assert d["fix"][1] == CATEGORIES["auth_failed"].fix[0]
    assert any("app password" in step.lower() for step in d["fix"][len(CATEGORIES["auth_failed"].fix):])
    assert len(d["fix"]) == len(set(d["fix"]))


def test_unknown_category_is_a_programming_error():
    with pytest.raises(ValueError):
        MailerError("x", category="no_such_thing")


def test_bulk_mailer_home_holds_every_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("BULK_MAILER_HOME", str(tmp_path / "portable"))
    for folder in (paths.config_dir(), paths.data_dir(), paths.log_dir()):
        assert folder.is_dir() and folder.is_relative_to(tmp_path / "portable")
    monkeypatch.delenv("BULK_MAILER_HOME")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg-data"))
    assert paths.data_dir().is_relative_to(tmp_path / "xdg-data")
