"""Authentication for the channel used (backend/authcheck.py), against the fake DNS on 127.0.0.1."""

from __future__ import annotations

import dns.resolver
import pytest

from backend import authcheck
from backend.app import App
from backend.authcheck import BULK_PER_DAY, path_for, per_day
from backend.inputs import AccountInput, MessageInput
from tests.fakedns import FakeDNS

KEY = '"v=DKIM1; k=rsa; p=MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAtest"'
GOOGLE = {
    ("_spf.google.com.", "TXT"): ['"v=spf1 include:_netblocks.google.com include:_netblocks2.google.com ~all"'],
    ("_netblocks.google.com.", "TXT"): ['"v=spf1 ip4:35.190.247.0/24 ip4:64.233.160.0/19 ~all"'],
    ("_netblocks2.google.com.", "TXT"): ['"v=spf1 ip6:2001:4860:4000::/36 ~all"'],
    ("spf.protection.outlook.com.", "TXT"): ['"v=spf1 ip4:40.92.0.0/15 -all"'],
}


@pytest.fixture
def fake():
    servers = []

    def make(records):
        server = FakeDNS({**GOOGLE, **records})
        servers.append(server)
        return server.resolver()

    yield make
    for server in servers:
        server.stop()


def _checks(answer):
    return {c["check"]: c for c in answer["checks"]}


def test_a_domain_whose_spf_includes_googles_is_covered_for_gmail(fake):
    res = fake({
        ("covered.test.", "TXT"): ['"v=spf1 include:_spf.google.com ~all"'],
        ("google._domainkey.covered.test.", "TXT"): [KEY],
        ("_dmarc.covered.test.", "TXT"): ['"v=DMARC1; p=reject; rua=mailto:d@covered.test"'],
    })
    answer = authcheck.check("Me <me@covered.test>", path_for("google-workspace", "smtp.gmail.com"), resolver=res)
    got = _checks(answer)
    assert got["spf"]["state"] == "ok" and "include:_spf.google.com" in got["spf"]["words"]
    assert "3 of 10 DNS lookups" in got["spf"]["words"]
    assert got["dkim"]["state"] == "ok" and "google._domainkey.covered.test" in got["dkim"]["words"]
    assert got["dmarc"]["state"] == "ok" and got["dmarc"]["words"].startswith("DMARC p=reject")
    assert got["alignment"]["state"] == "ok"
    assert answer["path"] == "Google Workspace (smtp.gmail.com)" and answer["domain"] == "covered.test"
    # The Gmail API is the same path for SPF: Google's servers.
    assert _checks(authcheck.check("me@covered.test", path_for(None, channel="gmail"), resolver=res))["spf"]["state"] == "ok"


def test_an_spf_without_the_providers_include_is_not_covered_and_the_fix_is_the_record_to_publish(fake):
    res = fake({("elsewhere.test.", "TXT"): ['"v=spf1 include:spf.protection.outlook.com -all"', '"other text"']})
    got = _checks(authcheck.check("me@elsewhere.test", path_for("gmail"), resolver=res))
    assert got["spf"]["state"] == "fail" and "does not cover Gmail's servers" in got["spf"]["words"]
    assert got["spf"]["fix"] == ('Change the TXT record at elsewhere.test to: '
                                 '"v=spf1 include:spf.protection.outlook.com include:_spf.google.com -all"')
    assert got["alignment"]["state"] == "fail"


def test_a_custom_relays_address_not_covered_then_covered(fake):
    records = {
        ("relay.mine.test.", "A"): ["192.0.2.10"],
        ("mine.test.", "MX"): ["10 mx.mine.test."],
        ("mx.mine.test.", "A"): ["198.51.100.7"],
    }
    res = fake({**records, ("mine.test.", "TXT"): ['"v=spf1 ip4:198.51.100.0/28 mx -all"']})
    got = _checks(authcheck.check("me@mine.test", path_for(None, "relay.mine.test"), resolver=res))
    assert got["spf"]["state"] == "fail"
    assert "the relay relay.mine.test (192.0.2.10)" in got["spf"]["words"]
    assert got["spf"]["fix"] == 'Change the TXT record at mine.test to: "v=spf1 ip4:198.51.100.0/28 mx ip4:192.0.2.10 -all"'
    res = fake({**records, ("mine.test.", "TXT"): ['"v=spf1 mx a:relay.mine.test -all"']})
    got = _checks(authcheck.check("me@mine.test", path_for(None, "relay.mine.test"), resolver=res))
    assert got["spf"]["state"] == "ok"
    res = fake({**records, ("mine.test.", "TXT"): ['"v=spf1 ip4:192.0.2.0/24 -all"']})
    assert _checks(authcheck.check("me@mine.test", path_for(None, "relay.mine.test"), resolver=res))["spf"]["state"] == "ok"


def test_an_include_chain_over_ten_lookups_is_an_error(fake):
    chain = {(f"i{n}.test.", "TXT"): [f'"v=spf1 include:i{n + 1}.test -all"'] for n in range(1, 12)}
    chain[("i12.test.", "TXT")] = ['"v=spf1 include:_spf.google.com -all"']
    res = fake({**chain, ("deep.test.", "TXT"): ['"v=spf1 include:i1.test -all"']})
    got = _checks(authcheck.check("me@deep.test", path_for("gmail"), resolver=res))
    assert got["spf"]["state"] == "fail"
    assert "more than 10 DNS lookups (at include:i11.test)" in got["spf"]["words"]
    assert "within 10 lookups" in got["spf"]["fix"]
    # Ten exactly is allowed.
    res = fake({**chain, ("i10.test.", "TXT"): ['"v=spf1 ip4:64.233.160.1 -all"'],
                ("ten.test.", "TXT"): ['"v=spf1 include:i1.test -all"']})
    got = _checks(authcheck.check("me@ten.test", path_for(None, "64.233.160.1"), resolver=res))
    assert got["spf"]["state"] == "ok" and "10 of 10 DNS lookups" in got["spf"]["words"]


@pytest.mark.parametrize(("record", "words"), [
    ('"v=spf1 include:_spf.google.com bogus:x -all"', "unknown term 'bogus:x'"),
    ('"v=spf1 ip4:300.1.1.1 -all"', "bad address in 'ip4:300.1.1.1'"),
    ('"v=spf1 include:nowhere.test -all"', "nowhere.test has no SPF record"),
])
def test_spf_syntax_errors(fake, record, words):
    res = fake({("broken.test.", "TXT"): [record]})
    got = _checks(authcheck.check("me@broken.test", path_for("gmail"), resolver=res))["spf"]
    assert got["state"] == "fail" and words in got["words"]


def test_no_spf_and_two_spf_records(fake):
    res = fake({("bare.test.", "TXT"): ['"google-site-verification=x"'],
                ("twice.test.", "TXT"): ['"v=spf1 -all"', '"v=spf1 include:_spf.google.com -all"']})
    bare = _checks(authcheck.check("me@bare.test", path_for("gmail"), resolver=res))["spf"]
    assert bare["state"] == "fail" and bare["fix"] == 'Add a TXT record at bare.test: "v=spf1 include:_spf.google.com ~all"'
    twice = _checks(authcheck.check("me@twice.test", path_for("gmail"), resolver=res))["spf"]
    assert twice["state"] == "fail" and "2 SPF records" in twice["words"]


def test_dmarc_missing_none_and_reject(fake):
    base = {("d.test.", "TXT"): ['"v=spf1 include:_spf.google.com -all"'], ("google._domainkey.d.test.", "TXT"): [KEY]}
    missing = _checks(authcheck.check("me@d.test", path_for("gmail"), resolver=fake(base)))["dmarc"]
    assert missing["state"] == "warn" and "no DMARC record" in missing["words"]
    assert missing["fix"] == 'Add a TXT record at _dmarc.d.test: "v=DMARC1; p=none; rua=mailto:dmarc@d.test"'
    none = _checks(authcheck.check("me@d.test", path_for("gmail"), resolver=fake(
        {**base, ("_dmarc.d.test.", "TXT"): ['"v=DMARC1; p=none"']})))["dmarc"]
    assert none["state"] == "ok" and none["words"].startswith("DMARC p=none: receivers report but act on nothing")
    reject = _checks(authcheck.check("me@news.d.test", path_for("gmail"), resolver=fake(
        {**base, ("_dmarc.d.test.", "TXT"): ['"v=DMARC1; p=reject"']})))["dmarc"]
    assert reject["state"] == "ok" and "p=reject (the organisation's record, at _dmarc.d.test)" in reject["words"]


def test_without_dkim_a_custom_domain_through_gmail_is_aligned_by_spf_only_and_under_reject_not_at_all(fake):
    spf_only = {("c.test.", "TXT"): ['"v=spf1 include:_spf.google.com -all"'],
                ("_dmarc.c.test.", "TXT"): ['"v=DMARC1; p=reject"']}
    got = _checks(authcheck.check("me@c.test", path_for("google-workspace"), resolver=fake(spf_only)))
    assert got["dkim"]["state"] == "fail" and "Authenticate email" in got["dkim"]["fix"]
    assert got["alignment"]["state"] == "warn" and "only SPF lines up" in got["alignment"]["words"]
    res = fake({("c.test.", "TXT"): ['"v=spf1 -all"'], ("_dmarc.c.test.", "TXT"): ['"v=DMARC1; p=reject"']})
    got = _checks(authcheck.check("me@c.test", path_for("google-workspace"), resolver=res))
    assert got["alignment"]["state"] == "fail" and "the mail is refused" in got["alignment"]["words"]


def test_dkim_for_microsofts_selectors(fake):
    spf = {("corp.test.", "TXT"): ['"v=spf1 include:spf.protection.outlook.com -all"']}
    found = _checks(authcheck.check("me@corp.test", path_for("office365"), resolver=fake(
        {**spf, ("selector1._domainkey.corp.test.", "TXT"): [KEY], ("selector2._domainkey.corp.test.", "TXT"): [KEY]})))
    assert found["dkim"]["state"] == "ok"
    assert found["dkim"]["words"] == "DKIM key published at selector1._domainkey.corp.test, selector2._domainkey.corp.test"
    other = _checks(authcheck.check("me@corp.test", path_for("office365"), resolver=fake(
        {**spf, ("s1._domainkey.corp.test.", "TXT"): [KEY]})))["dkim"]
    assert other["state"] == "warn" and "signs with selector1, selector2" in other["words"]
    assert "selector1._domainkey.corp.test" in other["fix"]
    named = _checks(authcheck.check("me@corp.test", path_for("office365"), selectors=["mykey"], resolver=fake(
        {**spf, ("mykey._domainkey.corp.test.", "TXT"): [KEY]})))["dkim"]
    assert named["state"] == "ok" and "mykey._domainkey.corp.test" in named["words"]
    revoked = _checks(authcheck.check("me@corp.test", path_for("office365"), resolver=fake(
        {**spf, ("selector1._domainkey.corp.test.", "TXT"): ['"v=DKIM1; p="']})))["dkim"]
    assert revoked["state"] == "fail" and "no DKIM key found" in revoked["words"]


def test_free_mail_through_its_own_provider_and_through_another():
    own = authcheck.check("me@gmail.com", path_for(None, channel="gmail"))  # no DNS asked
    assert {c["state"] for c in own["checks"]} == {"ok", "unknown"}  # unknown: the bulk rule, no recipients
    graph = authcheck.check("me@hotmail.com", path_for(None, channel="microsoft"))
    assert {c["state"] for c in graph["checks"]} == {"ok", "unknown"}
    other = _checks(authcheck.check("me@gmail.com", path_for("sendgrid")))
    assert other["spf"]["state"] == other["alignment"]["state"] == "fail"
    assert "own domain" in other["alignment"]["fix"]


def test_a_dead_dns_says_unknown():
    dead = dns.resolver.Resolver(configure=False)
    dead.nameservers, dead.port, dead.lifetime = ["127.0.0.1"], 9, 0.3
    answer = authcheck.check("me@anything.test", path_for("gmail"), resolver=dead)
    assert answer["checks"][0]["check"] == "dns" and answer["checks"][0]["state"] == "unknown"


def test_the_daily_pace():
    from backend.model import RateLimits

    assert per_day(20000, 1.0) == 20000
    assert per_day(200000, 1.0) == 86401
    assert per_day(20000, 0.0, RateLimits(per_day=2000)) == 2000
    assert per_day(100000, 0.0, RateLimits(per_minute=30)) == 43201


def test_the_bulk_sender_rule(fake):
    emails = [f"p{i}@gmail.com" for i in range(6000)] + [f"q{i}@example.org" for i in range(4000)]
    one_click = {"list-unsubscribe": "<https://x.test/u?id=1>", "list-unsubscribe-post": "List-Unsubscribe=One-Click"}
    path = path_for(None, channel="gmail")
    bulk = _checks(authcheck.check("me@gmail.com", path, emails=emails, daily=10000, headers={}))["one_click"]
    assert bulk["state"] == "fail" and bulk["words"].startswith("a bulk sender (6,000 a day to Gmail)")
    ok = _checks(authcheck.check("me@gmail.com", path, emails=emails, daily=10000, headers=one_click))["one_click"]
    assert ok["state"] == "ok" and "one-click" in ok["words"]
    mailto_only = {"list-unsubscribe": "<mailto:u@x.test>"}
    assert _checks(authcheck.check("me@gmail.com", path, emails=emails, daily=10000,
                                   headers=mailto_only))["one_click"]["state"] == "fail"
    slow = _checks(authcheck.check("me@gmail.com", path, emails=emails, daily=8000, headers={}))["one_click"]
    assert slow["state"] == "ok" and "at most 4,800 a day to Gmail" in slow["words"]
    assert f"{BULK_PER_DAY:,}" in slow["words"]


def test_the_app_checks_this_sessions_campaign(fake, tmp_path):
    res = fake({("corp.test.", "TXT"): ['"v=spf1 include:spf.protection.outlook.com -all"'],
                ("selector1._domainkey.corp.test.", "TXT"): [KEY],
                ("_dmarc.corp.test.", "TXT"): ['"v=DMARC1; p=quarantine"']})
    app = App()
    app.import_recipients(("text", "\n".join(f"p{i}@outlook.com" for i in range(5200))))
    a = AccountInput(provider="office365", user="me@corp.test", from_address="me@corp.test")
    m = MessageInput(subject="News", html="<p>Hello</p>", delay_ms=0)
    answer = app.check_authentication(a, m, resolver=res)
    got = _checks(answer)
    assert answer["path"] == "Microsoft 365 / Office 365 (smtp.office365.com)"
    assert [got[k]["state"] for k in ("spf", "dkim", "dmarc", "alignment")] == ["ok"] * 4
    assert got["one_click"]["state"] == "fail" and "5,200 a day to Outlook" in got["one_click"]["words"]
    m = MessageInput(subject="News", html="<p>Hello</p>", delay_ms=0, unsubscribe=("https://corp.test/u?e={{ email }}",))
    assert _checks(app.check_authentication(a, m, resolver=res))["one_click"]["state"] == "ok"
    # The provider's 10,000 a day is the pace; a limit of 5,000 a day makes it no bulk campaign.
    slow = _checks(app.check_authentication(a, MessageInput(subject="News", html="<p>Hi</p>", delay_ms=0),
                                            resolver=res, limits={"per_day": 5000}))["one_click"]
    assert slow["state"] == "ok"


def test_cli_check_auth(fake, tmp_path, monkeypatch):
    import io
    import json

    from backend.cli import main

    monkeypatch.setattr(dns.resolver, "default_resolver", fake({
        ("corp.test.", "TXT"): ['"v=spf1 include:spf.protection.outlook.com -all"'],
        ("mykey._domainkey.corp.test.", "TXT"): [KEY]}))
    out, err = io.StringIO(), io.StringIO()
    code = main(["check", "--auth", "--from", "me@corp.test", "--provider", "office365", "--json"], out=out, err=err)
    assert code == 1, err.getvalue()
    lines = err.getvalue()
    assert "ok       SPF: corp.test's SPF covers Microsoft 365 / Office 365's servers" in lines
    assert "fail     DKIM: no DKIM key found for corp.test" in lines and "fix: Microsoft Defender portal" in lines
    assert "Authentication (corp.test through Microsoft 365 / Office 365 (smtp.office365.com)): 1 to fix" in lines
    assert json.loads(out.getvalue())["authentication"]["domain"] == "corp.test"
    err = io.StringIO()
    code = main(["check", "--auth", "--from", "me@corp.test", "--provider", "office365", "--dkim-selector", "mykey"],
                out=io.StringIO(), err=err)
    assert "ok       DKIM: DKIM key published at mykey._domainkey.corp.test" in err.getvalue()
    assert "fail     DMARC alignment" not in err.getvalue()
    err = io.StringIO()
    assert main(["check", "--auth"], out=io.StringIO(), err=err) == 2 and "--auth needs --from" in err.getvalue()


def test_the_guide_names_every_providers_include_and_selectors():
    from pathlib import Path

    from backend.presets import PRESETS

    doc = (Path(__file__).resolve().parent.parent / "docs" / "authentication.md").read_text(encoding="utf-8")
    for preset in PRESETS.values():
        for name in (*preset.spf_include, *preset.dkim_selectors):
            assert f"`{name}`" in doc, f"{preset.key}: {name} is not in docs/authentication.md"


def test_the_window_asks_through_the_bridge(fake, tmp_path, monkeypatch):
    from backend.credentials import EncryptedFileStore
    from bridge import Bridge
    from tests.conftest import offline_detect

    monkeypatch.setattr(dns.resolver, "default_resolver", fake({
        ("corp.test.", "TXT"): ['"v=spf1 include:_spf.google.com -all"'],
        ("k7._domainkey.corp.test.", "TXT"): [KEY]}))
    b = Bridge(deliver=lambda events: None, store=EncryptedFileStore(tmp_path / "s.enc"), detector=offline_detect)
    try:
        answer = b.check_authentication({"account": {"provider": "gmail", "from_address": "me@corp.test"},
                                         "message": {"subject": "Hi", "body": "x"}, "dkim_selectors": "k7, other"})
    finally:
        b._shutdown()
    assert answer["ok"] is True, answer
    got = _checks(answer["data"])
    assert got["spf"]["state"] == "ok" and got["dkim"]["words"] == "DKIM key published at k7._domainkey.corp.test"
    assert got["one_click"]["state"] == "unknown"  # no recipients yet


def test_a_relay_without_a_key_under_the_common_selectors_is_a_warning_and_no_dmarc_fails_a_bulk_sender(fake):
    res = fake({("relay.mine.test.", "A"): ["192.0.2.10"], ("mine.test.", "TXT"): ['"v=spf1 ip4:192.0.2.10 -all"']})
    emails = [f"p{i}@yahoo.com" for i in range(5001)]
    small = _checks(authcheck.check("me@mine.test", path_for(None, "relay.mine.test"), resolver=res))
    assert small["dkim"]["state"] == "warn" and "under the common selectors" in small["dkim"]["words"]
    assert "name it (--dkim-selector)" in small["dkim"]["fix"]
    assert small["dmarc"]["state"] == "warn"
    bulk = _checks(authcheck.check("me@mine.test", path_for(None, "relay.mine.test"), resolver=res, emails=emails,
                                   daily=5001, headers={}))
    assert bulk["dmarc"]["state"] == "fail" and bulk["one_click"]["state"] == "fail"
    assert "5,001 a day to Yahoo" in bulk["one_click"]["words"]
