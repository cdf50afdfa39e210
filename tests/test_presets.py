"""Provider presets: complete, conventional, consistent with errors.CATEGORIES, and the look-ups."""

from __future__ import annotations

import ast
import dataclasses
import sys
from pathlib import Path

import pytest

from backend import presets
from backend.errors import CATEGORIES
from backend.presets import (
    PRESETS,
    Limits,
    Preset,
    get_preset,
    preset_for_domain,
    preset_host,
    provider_advice,
)

REQUIRED = (
    "gmail",
    "google-workspace",
    "outlook",
    "office365",
    "yahoo",
    "icloud",
    "aol",
    "zoho",
    "gmx",
    "fastmail",
    "sendgrid",
    "mailgun",
    "amazon-ses",
    "postmark",
    "brevo",
)
SERVICES = ("sendgrid", "mailgun", "amazon-ses", "postmark", "brevo")
BUSINESS = ("google-workspace", "office365")
VERIFIED_SENDERS_ONLY = ("amazon-ses", "sendgrid", "mailgun", "postmark", "brevo", "gmail")
CONVENTIONAL = {465: "ssl", 587: "starttls", 25: "starttls", 2525: "starttls"}

ALL = sorted(PRESETS)


def test_required_presets_present() -> None:
    assert set(REQUIRED) <= set(PRESETS)


@pytest.mark.parametrize("key", ALL)
def test_key_matches_dict_key(key: str) -> None:
    assert PRESETS[key].key == key
    assert key == key.strip().lower()


@pytest.mark.parametrize("key", ALL)
def test_host_port_security(key: str) -> None:
    p = PRESETS[key]
    assert p.host and p.host == p.host.strip() and " " not in p.host
    assert isinstance(p.port, int) and 1 <= p.port <= 65535
    assert p.security in {"starttls", "ssl", "none"}
    assert CONVENTIONAL.get(p.port) == p.security, f"{key}: port {p.port} with {p.security}"


@pytest.mark.parametrize("key", ALL)
def test_notes_and_names_non_empty(key: str) -> None:
    p = PRESETS[key]
    assert p.name.strip()
    assert p.notes, key
    assert all(isinstance(n, str) and n.strip() for n in p.notes)
    assert len(set(p.notes)) == len(p.notes)
    assert p.username_hint.strip()


@pytest.mark.parametrize("key", ALL)
def test_advice_keys_are_error_categories(key: str) -> None:
    advice = PRESETS[key].advice
    assert set(advice) <= set(CATEGORIES), set(advice) - set(CATEGORIES)
    for category, steps in advice.items():
        assert isinstance(steps, tuple) and steps, (key, category)
        assert all(isinstance(s, str) and s.strip() for s in steps), (key, category)
        # Provider steps add to the category's general ones, never repeat them.
        assert not set(steps) & set(CATEGORIES[category].fix), (key, category)


@pytest.mark.parametrize("key", ALL)
def test_every_preset_advises_on_auth_failed(key: str) -> None:
    assert PRESETS[key].advice.get("auth_failed")


@pytest.mark.parametrize("key", VERIFIED_SENDERS_ONLY)
def test_verified_sender_providers_advise_on_sender_rejected(key: str) -> None:
    assert PRESETS[key].advice.get("sender_rejected")


@pytest.mark.parametrize("key", ALL)
def test_known_limits_come_with_rate_or_quota_advice(key: str) -> None:
    p = PRESETS[key]
    limits = p.limits
    numbers = (limits.per_day, limits.per_hour, limits.per_minute, limits.per_second)
    if any(n is not None for n in numbers):
        assert "rate_limited" in p.advice or "quota_exceeded" in p.advice
    if limits.per_day is not None:
        assert "quota_exceeded" in p.advice


@pytest.mark.parametrize("key", ALL)
def test_limits_are_positive_and_explained(key: str) -> None:
    limits = PRESETS[key].limits
    assert isinstance(limits, Limits)
    for f in dataclasses.fields(Limits):
        value = getattr(limits, f.name)
        if f.name != "note" and value is not None:
            assert value > 0, (key, f.name)
    # Every preset says in words what its limits are, or that they are not published.
    assert limits.note.strip(), key


def test_published_limits() -> None:
    assert PRESETS["gmail"].limits.per_day == 500
    assert PRESETS["google-workspace"].limits.per_day == 2000
    assert PRESETS["office365"].limits.per_minute == 30
    assert PRESETS["office365"].limits.per_day == 10000
    assert PRESETS["icloud"].limits.per_day == 1000
    ses = PRESETS["amazon-ses"].limits
    assert (ses.per_day, ses.per_second) == (200, 1.0)
    assert PRESETS["sendgrid"].limits.per_day == 100
    assert PRESETS["brevo"].limits.per_day == 300


def test_specific_settings() -> None:
    assert (PRESETS["gmail"].host, PRESETS["gmail"].port) == ("smtp.gmail.com", 587)
    assert PRESETS["outlook"].host == "smtp-mail.outlook.com"
    assert PRESETS["office365"].host == "smtp.office365.com"
    assert (PRESETS["yahoo"].port, PRESETS["yahoo"].security) == (465, "ssl")
    assert PRESETS["icloud"].host == "smtp.mail.me.com"
    assert PRESETS["sendgrid"].username_hint == "apikey"
    assert PRESETS["postmark"].security == "starttls"  # Postmark has no port 465
    assert PRESETS["brevo"].host == "smtp-relay.brevo.com"


@pytest.mark.parametrize("key", SERVICES + BUSINESS)
def test_services_and_business_presets_have_no_domains(key: str) -> None:
    assert PRESETS[key].domains == ()


def test_domains_are_normalised_and_unique() -> None:
    seen: dict[str, str] = {}
    for p in PRESETS.values():
        for d in p.domains:
            assert d == d.strip().lower() and "@" not in d and "." in d, d
            assert d not in seen, f"{d} in both {seen.get(d)} and {p.key}"
            seen[d] = p.key


def test_regions_only_where_host_has_a_placeholder() -> None:
    for p in PRESETS.values():
        if "{region}" in p.host:
            assert p.regions and p.default_region in p.regions, p.key
            assert len(set(p.regions)) == len(p.regions)
        else:
            assert p.regions == () and p.default_region is None, p.key


def test_presets_are_frozen_and_hashable() -> None:
    p = PRESETS["gmail"]
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.port = 25  # type: ignore[misc]
    with pytest.raises(TypeError):
        p.advice["auth_failed"] = ()  # type: ignore[index]
    assert hash(p) == hash(PRESETS["gmail"])
    assert len({*PRESETS.values()}) == len(PRESETS)
    assert isinstance(p, Preset)


# get_preset ---------------------------------------------------------------------------------


def test_get_preset() -> None:
    assert get_preset("gmail") is PRESETS["gmail"]
    assert get_preset(" Amazon-SES ") is PRESETS["amazon-ses"]


@pytest.mark.parametrize("bad", ["hotmail.com", "", "gmail2"])
def test_get_preset_unknown_lists_valid_keys(bad: str) -> None:
    with pytest.raises(ValueError, match="unknown provider") as info:
        get_preset(bad)
    message = str(info.value)
    assert repr(bad) in message
    assert "choose one of:" in message
    assert all(k in message for k in PRESETS)


# preset_host --------------------------------------------------------------------------------


def test_preset_host_plain() -> None:
    assert preset_host(PRESETS["gmail"]) == "smtp.gmail.com"
    # A region means nothing to a preset without regions: it is ignored.
    assert preset_host(PRESETS["gmail"], "eu-west-1") == "smtp.gmail.com"


def test_preset_host_amazon_ses_default_region() -> None:
    host = preset_host(get_preset("amazon-ses"))
    assert host == "email-smtp.us-east-1.amazonaws.com"
    assert "{" not in host


@pytest.mark.parametrize(
    ("region", "host"),
    [
        ("eu-west-1", "email-smtp.eu-west-1.amazonaws.com"),
        ("  AP-Southeast-2 ", "email-smtp.ap-southeast-2.amazonaws.com"),
        ("", "email-smtp.us-east-1.amazonaws.com"),
    ],
)
def test_preset_host_amazon_ses_region(region: str, host: str) -> None:
    assert preset_host(PRESETS["amazon-ses"], region) == host


@pytest.mark.parametrize("region", PRESETS["amazon-ses"].regions)
def test_preset_host_every_ses_region(region: str) -> None:
    assert preset_host(PRESETS["amazon-ses"], region) == f"email-smtp.{region}.amazonaws.com"


@pytest.mark.parametrize("bad", ["mars-north-1", "us-east-1.evil.example", "us_east_1"])
def test_preset_host_unknown_region_names_valid_ones(bad: str) -> None:
    with pytest.raises(ValueError, match="unknown region") as info:
        preset_host(PRESETS["amazon-ses"], bad)
    assert "us-east-1" in str(info.value) and "eu-west-1" in str(info.value)


# preset_for_domain --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("domain", "key"),
    [
        ("gmail.com", "gmail"),
        ("GoogleMail.com", "gmail"),
        ("hotmail.com", "outlook"),
        ("live.com", "outlook"),
        ("msn.com", "outlook"),
        ("ymail.com", "yahoo"),
        ("yahoo.co.uk", "yahoo"),
        ("me.com", "icloud"),
        ("mac.com", "icloud"),
        ("aol.com", "aol"),
        ("zohomail.com", "zoho"),
        ("gmx.com", "gmx"),
        ("gmx.de", "gmx-net"),
        ("fastmail.fm", "fastmail"),
        (" ICLOUD.COM. ", "icloud"),
        ("Someone@Gmail.com", "gmail"),
    ],
)
def test_preset_for_domain(domain: str, key: str) -> None:
    preset = preset_for_domain(domain)
    assert preset is not None and preset.key == key


@pytest.mark.parametrize(
    "domain", ["example.com", "", "yahoo.co.jp", "mail.gmail.com", "sendgrid.net"]
)
def test_preset_for_domain_unknown(domain: str) -> None:
    assert preset_for_domain(domain) is None


# provider_advice ----------------------------------------------------------------------------


def test_provider_advice() -> None:
    steps = provider_advice("gmail", "auth_failed")
    assert steps and any("app password" in s.lower() for s in steps)
    assert provider_advice("GMAIL", "auth_failed") == steps
    steps.append("mutated")
    assert "mutated" not in provider_advice("gmail", "auth_failed")


@pytest.mark.parametrize(
    ("key", "category"),
    [
        (None, "auth_failed"),
        ("", "auth_failed"),
        ("nope", "auth_failed"),
        ("gmail", "no_such_category"),
        ("gmail", "template_error"),
    ],
)
def test_provider_advice_unknown_is_empty(key: str | None, category: str) -> None:
    assert provider_advice(key, category) == []


def test_errors_fix_steps_can_append_provider_advice() -> None:
    # errors.MailerError.fix_steps appends these after the category's own steps.
    general = list(CATEGORIES["quota_exceeded"].fix)
    extra = provider_advice("amazon-ses", "quota_exceeded")
    assert extra and not set(general) & set(extra)


# independence -------------------------------------------------------------------------------


def test_presets_imports_only_the_standard_library() -> None:
    tree = ast.parse(Path(presets.__file__).read_text(encoding="utf-8"))
    modules: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0 and node.module
            modules.add(node.module.split(".")[0])
    assert modules <= set(sys.stdlib_module_names) | {"__future__"}, modules
