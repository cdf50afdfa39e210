"""Authentication for the channel actually used: SPF, DKIM, DMARC and the bulk-sender rule.

Gmail and Yahoo (February 2024) and Outlook.com (May 2025) ask bulk senders for SPF and DKIM,
a DMARC record with SPF or DKIM aligned to the From domain, and one-click unsubscribe over
5,000 messages a day. This asks DNS (it makes requests: only when asked) whether the From
domain of a campaign is set up for the way the campaign is sent:

- SPF: the From domain's v=spf1 record, its include:/redirect= chain walked under the limit of
  10 DNS lookups, and whether it covers the sending path: the provider's published include
  (backend/presets.py: Preset.spf_include), or a custom relay's own addresses (ip4/ip6/a/mx).
- DKIM: a key at <selector>._domainkey.<domain> for the selectors the provider uses
  (Preset.dkim_selectors), the common ones and any the user names.
- DMARC: _dmarc.<domain> (or its organisational domain's), its policy, and whether SPF or DKIM
  lines up with the From domain for this path.
- Bulk: one-click List-Unsubscribe when the campaign sends over 5,000 a day to Gmail, Yahoo or
  Outlook addresses (counted by the recipients' domains at the campaign's daily pace).

The answer is a checklist [{check, name, state: ok|warn|fail|unknown, words, fix}], the fix
saying what to add to DNS (the TXT value itself where it can be known).
"""

from __future__ import annotations

import ipaddress
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from email.utils import parseaddr
from typing import Any

import dns.exception
import dns.resolver

from backend.deliverability import FREEMAIL, registrable_domain
from backend.presets import PRESETS, Preset

MAX_LOOKUPS = 10  # RFC 7208 4.6.4: more DNS-querying terms is a permanent error
COMMON_SELECTORS = ("google", "selector1", "selector2", "s1", "s2", "k1", "k2", "default")
BULK_PER_DAY = 5000  # Gmail, Yahoo and Outlook.com: over this a day to their users is a bulk sender
# The mailbox providers whose bulk-sender rules count messages to their own addresses.
BIG_MAILBOXES: dict[str, tuple[str, ...]] = {
    "Gmail": ("gmail.com", "googlemail.com"),
    "Yahoo": ("yahoo.com", "yahoo.co.uk", "yahoo.fr", "yahoo.de", "yahoo.es", "yahoo.it", "yahoo.ca",
              "yahoo.com.au", "yahoo.co.jp", "ymail.com", "rocketmail.com", "aol.com"),
    "Outlook": ("outlook.com", "hotmail.com", "live.com", "msn.com", "hotmail.co.uk", "hotmail.fr", "hotmail.de",
                "hotmail.it", "hotmail.es", "outlook.fr", "outlook.de", "outlook.es", "outlook.it", "live.co.uk",
                "live.fr", "live.de", "live.it", "live.nl", "live.ca", "live.com.au", "windowslive.com"),
}
# Sending services send with their own bounce address (Return-Path) unless one is set up on the
# customer's domain: SPF then passes for their domain, not the From domain, and DKIM carries DMARC.
OWN_RETURN_PATH = frozenset({"sendgrid", "mailgun", "amazon-ses", "postmark", "brevo"})
_DKIM_SETUP = {
    "gmail": "Google Admin console > Apps > Google Workspace > Gmail > Authenticate email: generate the key "
             "and publish it as the TXT record it shows at google._domainkey.{domain}, then Start authentication",
    "outlook": "Microsoft Defender portal > Email & collaboration > Policies > Email authentication settings > "
               "DKIM: publish the two CNAME records it shows (selector1._domainkey.{domain} and "
               "selector2._domainkey.{domain}), then enable signing",
    "sendgrid": "SendGrid > Settings > Sender Authentication > Authenticate Your Domain: publish the CNAMEs it "
                "shows (s1._domainkey.{domain}, s2._domainkey.{domain})",
}
_DKIM_SETUP["google-workspace"] = _DKIM_SETUP["gmail"]
_DKIM_SETUP["office365"] = _DKIM_SETUP["outlook"]


@dataclass
class Check:
    """One line of the checklist."""

    check: str  # spf | dkim | dmarc | alignment | one_click
    name: str
    state: str  # ok | warn | fail | unknown
    words: str
    fix: str = ""

    def as_dict(self) -> dict[str, str]:
        return {"check": self.check, "name": self.name, "state": self.state, "words": self.words, "fix": self.fix}


@dataclass(frozen=True)
class SendingPath:
    """How a campaign leaves: the provider preset (its SPF include, DKIM selectors, own domains)
    or a custom relay (its addresses)."""

    name: str  # "Gmail", "the Gmail API", "Microsoft Graph", "relay.example.com"
    preset: Preset | None = None
    relay: str | None = None  # a custom SMTP server: its addresses are what SPF must cover

    @property
    def key(self) -> str | None:
        return self.preset.key if self.preset else None


def path_for(provider: str | None, host: str | None = None, *, channel: str = "smtp",
             workspace: bool = False) -> SendingPath:
    """The sending path of an account: a channel (gmail, microsoft), a preset, or a relay host."""
    if channel == "gmail":
        return SendingPath("the Gmail API", PRESETS["google-workspace" if workspace else "gmail"])
    if channel == "microsoft":
        return SendingPath("Microsoft Graph", PRESETS["office365"])
    preset = PRESETS.get(provider or "")
    if preset is None and host:
        preset = next((p for p in PRESETS.values() if p.host == host.lower() and p.spf_include), None)
    if preset is not None and preset.spf_include:
        return SendingPath(f"{preset.name} ({host or preset.host})", preset)
    relay = host or (preset.host if preset else None)
    return SendingPath(relay or "the SMTP server", preset, relay=relay)


# -- DNS --------------------------------------------------------------------------------------


class DnsTrouble(Exception):
    """DNS could not answer (timeout, no server): the check cannot tell."""


class _Dns:
    def __init__(self, resolver: Any) -> None:
        try:
            self.res = resolver or dns.resolver.get_default_resolver()
        except (dns.exception.DNSException, OSError):  # no resolver configuration on this computer
            self.res = None

    def _ask(self, name: str, rtype: str) -> list[Any]:
        if self.res is None:
            raise DnsTrouble("this computer has no DNS resolver configured")
        try:
            return list(self.res.resolve(name, rtype, lifetime=min(5.0, self.res.lifetime), search=False))
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            return []
        except (dns.exception.DNSException, OSError) as exc:
            raise DnsTrouble(f"DNS could not be asked about {name} ({type(exc).__name__})") from exc

    def txt(self, name: str) -> list[str]:
        return [b"".join(r.strings).decode("utf-8", "replace") for r in self._ask(name, "TXT")]

    def addresses(self, name: str) -> list[str]:
        return [r.address for rtype in ("A", "AAAA") for r in self._ask(name, rtype)]

    def mx(self, name: str) -> list[str]:
        return [str(r.exchange).rstrip(".") for r in self._ask(name, "MX")]


# -- SPF ----------------------------------------------------------------------------------------

_MECHANISMS = ("all", "include", "a", "mx", "ptr", "ip4", "ip6", "exists")
_LOOKUP_TERMS = ("include", "a", "mx", "ptr", "exists", "redirect")


class SpfError(Exception):
    """A permanent error in the SPF chain: kind is 'syntax', 'lookups' or 'missing'."""

    def __init__(self, kind: str, words: str) -> None:
        super().__init__(words)
        self.kind, self.words = kind, words


@dataclass
class Term:
    qualifier: str  # + - ~ ?
    mechanism: str  # a mechanism, or "redirect"
    value: str = ""
    networks: list[Any] = field(default_factory=list)  # ip4/ip6/a/mx: what it matches
    child: SpfRecord | None = None  # include / redirect


@dataclass
class SpfRecord:
    domain: str
    text: str
    terms: list[Term] = field(default_factory=list)
    macros: bool = False  # a term with %{...}: evaluated only by receivers


class SpfWalk:
    """The SPF tree of one domain, every include and redirect followed, DNS lookups counted."""

    def __init__(self, dns_: _Dns) -> None:
        self.dns = dns_
        self.lookups = 0

    def record(self, domain: str, *, via: str = "") -> SpfRecord:
        found = [t for t in self.dns.txt(domain) if t.strip().lower().startswith("v=spf1")
                 and (len(t.strip()) == 6 or t.strip()[6] == " ")]
        if not found:
            raise SpfError("missing", f"{domain} has no SPF record" + (f" ({via} points there)" if via else ""))
        if len(found) > 1:
            raise SpfError("syntax", f"{domain} has {len(found)} SPF records; there must be one (receivers treat "
                           "two as an error)")
        rec = SpfRecord(domain, found[0].strip())
        for raw in rec.text.split()[1:]:
            rec.terms.append(self._term(rec, raw))
        return rec

    def _count(self, raw: str) -> None:
        self.lookups += 1
        if self.lookups > MAX_LOOKUPS:
            raise SpfError("lookups", f"the SPF chain needs more than {MAX_LOOKUPS} DNS lookups (at {raw}): "
                           "receivers stop there and treat the record as an error (permerror)")

    def _term(self, rec: SpfRecord, raw: str) -> Term:
        low = raw.lower()
        if low.startswith("redirect="):
            self._count(raw)
            target = raw.split("=", 1)[1]
            return Term("+", "redirect", target, child=self._child(rec, target, raw))
        if "=" in low.split(":", 1)[0]:  # another modifier (exp=, ...): no effect on the result
            return Term("?", "modifier", raw)
        qualifier = raw[0] if raw[0] in "+-~?" else "+"
        body = raw[1:] if raw[0] in "+-~?" else raw
        name, _, value = body.partition(":")
        if "/" in name and name.split("/")[0].lower() in ("a", "mx"):
            name, value = name.split("/")[0], "/" + name.split("/", 1)[1]
        name = name.lower()
        if name not in _MECHANISMS:
            raise SpfError("syntax", f"{rec.domain}'s SPF has an unknown term '{raw}'")
        term = Term(qualifier, name, value)
        if name in _LOOKUP_TERMS:
            self._count(raw)
        if "%{" in value:
            rec.macros = True
            return term
        if name == "include":
            if not value:
                raise SpfError("syntax", f"{rec.domain}'s SPF has 'include' without a domain")
            term.child = self._child(rec, value, raw)
        elif name in ("ip4", "ip6"):
            try:
                net = ipaddress.ip_network(value, strict=False)
            except ValueError:
                raise SpfError("syntax", f"{rec.domain}'s SPF has a bad address in '{raw}'") from None
            if (name == "ip4") != (net.version == 4):
                raise SpfError("syntax", f"{rec.domain}'s SPF has a bad address in '{raw}'")
            term.networks = [net]
        elif name in ("a", "mx"):
            target, _, cidr = value.partition("/")
            target = target or rec.domain
            hosts = [target] if name == "a" else self.dns.mx(target)[:10]
            for host in hosts:
                for address in self.dns.addresses(host):
                    ip = ipaddress.ip_address(address)
                    bits = cidr if cidr and ip.version == 4 else str(ip.max_prefixlen)
                    try:
                        term.networks.append(ipaddress.ip_network(f"{address}/{bits}", strict=False))
                    except ValueError:
                        raise SpfError("syntax", f"{rec.domain}'s SPF has a bad prefix in '{raw}'") from None
        return term

    def _child(self, rec: SpfRecord, target: str, raw: str) -> SpfRecord | None:
        if "%{" in target:
            rec.macros = True
            return None
        try:
            return self.record(target.rstrip(".").lower(), via=f"{rec.domain}'s {raw}")
        except SpfError as exc:
            if exc.kind == "missing":  # an include without a record is a permanent error (RFC 7208 5.2)
                raise SpfError("syntax", exc.words) from None
            raise


def spf_result(rec: SpfRecord, ip: Any) -> str:
    """pass | fail | softfail | neutral | none for one address, over a walked tree."""
    for term in rec.terms:
        if term.mechanism in ("redirect", "modifier"):
            continue
        if term.mechanism == "all":
            matched = True
        elif term.mechanism == "include":
            matched = term.child is not None and spf_result(term.child, ip) == "pass"
        else:
            matched = any(ip in net for net in term.networks if net.version == ip.version)
        if matched:
            return {"+": "pass", "-": "fail", "~": "softfail", "?": "neutral"}[term.qualifier]
    redirect = next((t for t in rec.terms if t.mechanism == "redirect"), None)
    if redirect is not None and redirect.child is not None:
        return spf_result(redirect.child, ip)
    return "neutral"


def reaches(rec: SpfRecord, includes: Iterable[str]) -> bool:
    """Whether a passing include: or redirect= in the tree leads to one of these domains."""
    wanted = {d.lower().rstrip(".") for d in includes}
    for term in rec.terms:
        passes = term.mechanism == "redirect" or (term.mechanism == "include" and term.qualifier == "+")
        if passes and (term.value.lower().rstrip(".") in wanted or (term.child is not None
                                                                    and reaches(term.child, wanted))):
            return True
    return False


def _with_mechanism(text: str, mechanism: str) -> str:
    """An SPF record with one mechanism added before its all (or redirect=)."""
    terms = text.split()
    for i, term in enumerate(terms):
        if term.lower().lstrip("+-~?") == "all" or term.lower().startswith("redirect="):
            return " ".join(terms[:i] + [mechanism] + terms[i:])
    return " ".join(terms + [mechanism])


def _spf(dns_: _Dns, domain: str, path: SendingPath) -> tuple[Check, bool]:
    """The SPF line, and whether the path is covered (SPF passes for it)."""
    preset = path.preset
    wanted = preset.spf_include if preset and not path.relay else ()
    if wanted:
        mechanism, what = f"include:{wanted[0]}", f"{preset.name}'s servers (include:{wanted[0]})"  # type: ignore[union-attr]
        addresses: list[Any] = []
    else:
        if not path.relay:
            return Check("spf", "SPF", "unknown", f"which servers {path.name} sends from is not known here, so "
                         "whether SPF covers them cannot be checked",
                         "Ask the provider for the SPF include to publish, or choose its preset."), False
        try:
            addresses = [ipaddress.ip_address(path.relay)]
        except ValueError:
            addresses = [ipaddress.ip_address(a) for a in dns_.addresses(path.relay)]
        if not addresses:
            return Check("spf", "SPF", "unknown", f"the relay {path.relay} has no address in DNS, so whether "
                         "SPF covers it cannot be checked", "Check the server name."), False
        mechanism = " ".join(f"ip{a.version}:{a}" for a in addresses)
        what = f"the relay {path.relay} ({', '.join(map(str, addresses))})"
    walk = SpfWalk(dns_)
    try:
        rec = walk.record(domain)
    except SpfError as exc:
        if exc.kind == "missing":
            return Check("spf", "SPF", "fail", f"{domain} has no SPF record: receivers cannot tell that {what} "
                         "may send for it", f'Add a TXT record at {domain}: "v=spf1 {mechanism} ~all"'), False
        fix = ("Remove includes of services you no longer use, or replace some includes by the ip4:/ip6: "
               "ranges they list, to stay within 10 lookups." if exc.kind == "lookups"
               else f"Correct the SPF record at {domain} (one TXT record starting v=spf1).")
        return Check("spf", "SPF", "fail", exc.words, fix), False
    if wanted:
        covered = reaches(rec, wanted)
    elif rec.macros:
        return Check("spf", "SPF", "unknown", f"{domain}'s SPF uses macros (%{{...}}) only receivers can "
                     "evaluate", ""), False
    else:
        covered = all(spf_result(rec, ip) == "pass" for ip in addresses)
    lookups = f"{walk.lookups} of {MAX_LOOKUPS} DNS lookups"
    if covered:
        return Check("spf", "SPF", "ok", f"{domain}'s SPF covers {what} ({lookups})"), True
    return Check("spf", "SPF", "fail", f"{domain}'s SPF does not cover {what}: receivers see mail sent this way "
                 f"as not authorised ({lookups})",
                 f'Change the TXT record at {domain} to: "{_with_mechanism(rec.text, mechanism)}"'), False


# -- DKIM and DMARC -------------------------------------------------------------------------------


def _dkim(dns_: _Dns, domain: str, path: SendingPath, named: Sequence[str]) -> tuple[Check, bool]:
    """The DKIM line, and whether a key the path signs with is published."""
    own = tuple(path.preset.dkim_selectors) if path.preset else ()
    selectors = list(dict.fromkeys([*named, *own, *COMMON_SELECTORS]))
    found = []
    for selector in selectors:
        records = dns_.txt(f"{selector}._domainkey.{domain}")
        if any(re.search(r"(?:^|;)\s*p=[A-Za-z0-9+/]{16,}", r) for r in records):
            found.append(selector)
    expected = [s for s in found if s in named or s in own] if (named or own) else found
    where = ", ".join(f"{s}._domainkey.{domain}" for s in found)
    if expected:
        return Check("dkim", "DKIM", "ok", f"DKIM key published at {where}"), True
    setup = _DKIM_SETUP.get(path.key or "", "").format(domain=domain)
    fix = (setup or f"Turn on DKIM signing for {domain} at {path.name} and publish the key it gives as a TXT "
           f"(or CNAME) record at <selector>._domainkey.{domain}") + \
        ("; if it is published under another selector, name it (--dkim-selector)" if not named else "")
    if found:
        return Check("dkim", "DKIM", "warn", f"a DKIM key is published at {where}, but {path.name} signs with "
                     f"{', '.join(own)}: is that key for this provider?", fix), False
    tried = ", ".join(selectors)
    if not own and not named:  # a selector can be any name: absence under the common ones proves nothing
        return Check("dkim", "DKIM", "warn", f"no DKIM key found for {domain} under the common selectors ({tried}); "
                     f"{path.name}'s may have another name", fix), False
    return Check("dkim", "DKIM", "fail", f"no DKIM key found for {domain} (selectors tried: {tried})", fix), False


def _dmarc_tags(text: str) -> dict[str, str]:
    tags = {}
    for part in text.split(";"):
        key, _, value = part.strip().partition("=")
        if key:
            tags[key.strip().lower()] = value.strip()
    return tags


def _dmarc(dns_: _Dns, domain: str, bulk: bool) -> tuple[Check, str | None]:
    """The DMARC line, and the policy in force (None: no record)."""
    org = registrable_domain(domain)
    for name in dict.fromkeys([domain, org]):
        records = [t for t in dns_.txt(f"_dmarc.{name}") if t.strip().lower().startswith("v=dmarc1")]
        if len(records) > 1:
            return Check("dmarc", "DMARC", "fail", f"_dmarc.{name} has {len(records)} DMARC records; receivers "
                         "ignore them all", f"Keep one TXT record at _dmarc.{name}."), None
        if records:
            tags = _dmarc_tags(records[0])
            policy = tags.get("p", "").lower()
            if name != domain:
                policy = tags.get("sp", policy).lower()
            if policy not in ("none", "quarantine", "reject"):
                return Check("dmarc", "DMARC", "fail", f"the DMARC record at _dmarc.{name} has no valid policy "
                             f"(p={tags.get('p', '')})", f'Set p=none, quarantine or reject: "v=DMARC1; p=none; '
                             f'rua=mailto:dmarc@{org}"'), None
            at = "" if name == domain else f" (the organisation's record, at _dmarc.{name})"
            if policy == "none":
                return Check("dmarc", "DMARC", "ok", f"DMARC p=none{at}: receivers report but act on nothing; "
                             "it meets the bulk-sender rule",
                             "Once the reports show your mail aligned, consider p=quarantine."), policy
            acts = "sent to spam" if policy == "quarantine" else "refused"
            return Check("dmarc", "DMARC", "ok", f"DMARC p={policy}{at}: mail that fails DMARC is {acts}"), policy
    return Check("dmarc", "DMARC", "fail" if bulk else "warn",
                 f"{domain} has no DMARC record: Gmail, Yahoo and Outlook.com require one from bulk senders",
                 f'Add a TXT record at _dmarc.{org}: "v=DMARC1; p=none; rua=mailto:dmarc@{org}"'), None


def _alignment(domain: str, path: SendingPath, spf_ok: bool, dkim_ok: bool, policy: str | None) -> Check:
    spf_aligned = spf_ok and path.key not in OWN_RETURN_PATH
    stake = {"reject": "refused", "quarantine": "sent to spam"}.get(policy or "", "at risk of spam folders")
    if dkim_ok and spf_aligned:
        return Check("alignment", "DMARC alignment", "ok", f"SPF and DKIM both line up with {domain}")
    if dkim_ok:
        return Check("alignment", "DMARC alignment", "ok", f"DKIM lines up with {domain}" + (
            f" ({path.name} sends with its own bounce address, so SPF counts for its domain, not yours)"
            if path.key in OWN_RETURN_PATH else ""))
    if spf_aligned:
        return Check("alignment", "DMARC alignment", "warn", f"only SPF lines up with {domain}: mail forwarded on "
                     "the way fails DMARC, and Gmail and Yahoo want DKIM as well",
                     "Set up DKIM for the domain (see the DKIM line).")
    return Check("alignment", "DMARC alignment", "fail", f"neither SPF nor DKIM lines up with {domain} when sending "
                 f"through {path.name}: DMARC fails, and the mail is {stake}",
                 "Fix the SPF and DKIM lines above; either one aligned makes DMARC pass.")


# -- the bulk-sender rule -------------------------------------------------------------------------


def per_day(total: int, delay_s: float, limits: Any = None) -> int:
    """How many of total messages go out in one day at the delay and the limits (RateLimits)."""
    interval = max(delay_s, 0.0)
    cap = None
    for window, count in (limits.windows() if limits else []):
        if window >= 86400:
            cap = count if cap is None else min(cap, count)
        else:
            interval = max(interval, window / count)
    pace = total if interval <= 0 else math.floor(86400 / interval) + 1
    return int(min(total, pace, cap if cap else total))


def _one_click(emails: Sequence[str], daily: int, headers: dict[str, str] | None) -> tuple[Check, bool]:
    """The bulk-sender line, and whether the campaign is a bulk sender's."""
    total = len(emails)
    counts = dict.fromkeys(BIG_MAILBOXES, 0)
    owner = {d: name for name, domains in BIG_MAILBOXES.items() for d in domains}
    for email in emails:
        name = owner.get(email.rpartition("@")[2].lower())
        if name:
            counts[name] += 1
    share = daily / total if total else 0
    a_day = {name: math.ceil(n * share) for name, n in counts.items()}
    over = [name for name, n in a_day.items() if n > BULK_PER_DAY]
    biggest = max(a_day, key=lambda k: a_day[k])
    if not over:
        return Check("one_click", "One-click unsubscribe (bulk senders)", "ok",
                     f"not a bulk sender by this campaign alone: at most {a_day[biggest]:,} a day to {biggest} "
                     f"addresses ({daily:,} messages a day in all); the rule starts over {BULK_PER_DAY:,} a day"), False
    headers = headers or {}
    one_click = "one-click" in headers.get("list-unsubscribe-post", "").lower() and \
        "<https:" in headers.get("list-unsubscribe", "").lower()
    who = ", ".join(f"{a_day[n]:,} a day to {n}" for n in over)
    if one_click:
        return Check("one_click", "One-click unsubscribe (bulk senders)", "ok",
                     f"a bulk sender ({who}), and the messages carry one-click List-Unsubscribe"), True
    return Check("one_click", "One-click unsubscribe (bulk senders)", "fail",
                 f"a bulk sender ({who}) must offer one-click unsubscribe (List-Unsubscribe with an https link "
                 "and List-Unsubscribe-Post); these messages do not",
                 "Add an https unsubscribe link under Message, Unsubscribe link (--unsubscribe https://...): "
                 "the app then adds both headers."), True


# -- the checklist -------------------------------------------------------------------------------


def check(from_address: str, path: SendingPath, *, resolver: Any = None, selectors: Sequence[str] = (),
          emails: Sequence[str] | None = None, daily: int = 0, headers: dict[str, str] | None = None) -> dict[str, Any]:
    """The checklist for mail from from_address sent by path. emails: the recipients (None: not
    known, the bulk rule unknown); daily: messages a day; headers: the built message's (lower-case)."""
    domain = parseaddr(from_address)[1].rpartition("@")[2].strip().lower().rstrip(".")
    bulk = False
    items: list[Check] = []
    if emails is not None:
        one_click, bulk = _one_click(emails, daily, headers)
        items.append(one_click)
    else:
        items.append(Check("one_click", "One-click unsubscribe (bulk senders)", "unknown",
                           "no recipients yet: whether the campaign is a bulk sender's is not known"))
    if not domain:
        return _answer("", path, [Check("spf", "SPF", "unknown", "no From address to check"), *items])
    own = path.preset is not None and (domain in path.preset.domains
                                       or registrable_domain(path.preset.host) in FREEMAIL.get(domain, ()))
    if own or domain in FREEMAIL:
        return _answer(domain, path, _freemail(domain, path, own) + items)
    dns_ = _Dns(resolver)
    try:
        spf, spf_ok = _spf(dns_, domain, path)
        dkim, dkim_ok = _dkim(dns_, domain, path, list(selectors))
        dmarc, policy = _dmarc(dns_, domain, bulk)
    except DnsTrouble as exc:
        return _answer(domain, path, [Check("dns", "DNS", "unknown", f"{exc}: the check needs a working DNS"), *items])
    return _answer(domain, path, [spf, dkim, dmarc, _alignment(domain, path, spf_ok, dkim_ok, policy), *items])


def _freemail(domain: str, path: SendingPath, own: bool) -> list[Check]:
    if own:
        words = f"{domain} is the provider's own domain ({path.name}): the provider publishes its SPF and signs its mail"
        return [Check("spf", "SPF", "ok", words), Check("dkim", "DKIM", "ok", words),
                Check("alignment", "DMARC alignment", "ok", f"mail from {domain} sent through {path.name} lines up")]
    fix = f"Send from an address on your own domain, or send {domain} mail through {domain}'s own server."
    return [Check("spf", "SPF", "fail", f"{domain} is a free-mail domain: its SPF does not list {path.name}, and "
                  "nobody but its provider can add it", fix),
            Check("alignment", "DMARC alignment", "fail", f"mail from {domain} sent through {path.name} fails "
                  f"{domain}'s DMARC: receivers may refuse it or file it as spam", fix)]


def _answer(domain: str, path: SendingPath, items: list[Check]) -> dict[str, Any]:
    order = {"fail": 3, "warn": 2, "unknown": 1, "ok": 0}
    worst = max((c.state for c in items), key=lambda s: order[s], default="ok")
    return {"domain": domain, "path": path.name, "state": worst, "checks": [c.as_dict() for c in items]}


def for_campaign(app: Any, a: Any, m: Any, *, selectors: Sequence[str] = (), resolver: Any = None,
                 to_file: str | None = None, limits: dict[str, Any] | None = None) -> dict[str, Any]:
    """The checklist for this session's campaign (app: the App; a, m: AccountInput, MessageInput):
    its sending path, From domain, recipients (to_file's, else the imported list) and daily pace."""
    from backend import service
    from backend.errors import MailerError
    from backend.plans import limits_with

    path, base = _account_path(app, a)
    try:
        sender = app.sender(a, m)
    except MailerError:
        sender = m.from_address or a.from_address
    emails = headers = None
    daily = 0
    if to_file or (app.imported is not None and app.imported.recipients):
        imported = app.import_recipients(("file", to_file)) if to_file else app.imported
        emails = [r.email for r in imported.recipients]
        try:
            pace = limits_with(base, limits or {})
        except MailerError:
            pace = base
        daily = per_day(len(emails), m.delay_ms / 1000, pace)
        headers = _headers(app, m, imported, service)
    return check(sender, path, resolver=resolver, selectors=selectors, emails=emails, daily=daily, headers=headers)


def _account_path(app: Any, a: Any) -> tuple[SendingPath, Any]:
    """The sending path of account a and its provider's published limits (RateLimits or None)."""
    from backend import service
    from backend.errors import MailerError
    from backend.google_auth import saved_profile
    from backend.microsoft_auth import saved_profile as microsoft_profile
    from backend.presets import GMAIL_API_LIMITS, gmail_api_limits, microsoft_limits

    if a.channel == "gmail":
        workspace = bool((saved_profile() or {}).get("workspace"))
        return (path_for(None, channel="gmail", workspace=workspace),
                service.rate_limits(GMAIL_API_LIMITS[gmail_api_limits(workspace)[0]]))
    if a.channel == "microsoft":
        consumer = bool((microsoft_profile() or {}).get("consumer", True))
        return path_for(None, channel="microsoft"), service.rate_limits(microsoft_limits(consumer)[1])
    try:
        settings, _ = app.smtp_settings(a, need_password=False)
        provider, host = settings.provider, settings.host
    except MailerError:
        provider, host = a.provider, a.host
    return path_for(provider, host), service.preset_limits(provider)


def _headers(app: Any, m: Any, imported: Any, service: Any) -> dict[str, str] | None:
    """The first recipient's message headers (lower-case names), as it would be sent."""
    from email import message_from_bytes

    try:
        draft = app.draft_to_check(m, imported=imported, strict=False)
        for recipient in draft.recipients[:50]:
            try:
                data = draft.outgoing(recipient, smtputf8=True).data
            except Exception:  # noqa: BLE001, S112 - a row that cannot be built is listed elsewhere
                continue
            head = data.split(b"\r\n\r\n", 1)[0]
            return {k.lower(): str(v) for k, v in message_from_bytes(head + b"\r\n\r\n").items()}
    except Exception:  # noqa: BLE001, S110 - no message yet (no body): the unsubscribe given decides
        pass
    uris = [u for u in (m.unsubscribe or ()) if u.lower().startswith("https:")]
    return {"list-unsubscribe": f"<{uris[0]}>", "list-unsubscribe-post": "List-Unsubscribe=One-Click"} if uris else {}
