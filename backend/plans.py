"""How a campaign sends, decided once: account + draft -> Plan (transports, journal spec, the
account key its daily quota counts by, limits, retries, connections); also from a journal spec."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from backend import service
from backend.errors import SettingsError
from backend.inputs import LIMIT_KEYS, SendOptions
from backend.mailbox.imap import ImapSettings
from backend.model import DEFAULT_MAX_FAILURES, RateLimits, RetryPolicy
from backend.presets import (
    GMAIL_API_LIMITS,
    MAX_CONNECTIONS,
    default_connections,
    gmail_api_limits,
    microsoft_limits,
)
from backend.settings import SmtpSettings
from backend.transports.base import Transport
from backend.transports.smtp import SmtpTransport


@dataclass
class Plan:
    """How a run sends: its transports, what the journal keeps, its account key and limits."""

    transport: Callable[[], Transport]
    spec: dict[str, Any]
    account: str  # the journal's account key: the daily quota counts every campaign with it
    limits: RateLimits | None
    provider: str | None
    gmail: str | None = None  # the signed-in address, for a Gmail API run
    microsoft: str | None = None  # the signed-in address, for a Microsoft Graph run
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    max_failures_in_a_row: int = DEFAULT_MAX_FAILURES
    connections: int = 1  # transports (connections) sending at once; 1 for the Gmail API
    sent_copy: ImapSettings | None = None  # where a copy of each sent message is filed (None: nowhere)
    due: dict[int, str] = field(default_factory=dict)  # recipients' delivery times (local time), by position

    def transports(self) -> list[Transport]:
        return [self.transport() for _ in range(self.connections)]

    def where(self) -> str:
        """The server (or API) the messages go through, in words."""
        if self.gmail:
            return f"the Gmail API as {self.gmail}"
        if self.microsoft:
            return f"Microsoft Graph as {self.microsoft}"
        s = self.spec["settings"]
        return f"{s['host']}:{s['port']}"


def with_sent_copy(plan: Plan, imap: ImapSettings | None) -> Plan:
    """The plan filing a copy of each sent message in Sent over IMAP (kept in its spec, without
    the password, so a resume files the rest)."""
    plan.sent_copy = imap
    if imap is None:
        plan.spec.pop("sent_copy", None)
    else:
        plan.spec["sent_copy"] = imap_spec(imap)
    return plan


def with_mailbox(plan: Plan, imap: ImapSettings | None) -> Plan:
    """The account's mailbox kept in the campaign's spec (no password), where its bounces and
    replies are read later (track), whether or not it files copies in Sent."""
    if imap is not None:
        plan.spec["mailbox"] = imap_spec(imap)
    return plan


def imap_spec(imap: ImapSettings) -> dict[str, Any]:
    return {"host": imap.host, "port": imap.port, "security": imap.security, "user": imap.user,
            "ca_file": imap.ca_file, "verify_certificates": imap.verify_certificates, "provider": imap.provider}


def smtp_account_key(settings: SmtpSettings) -> str:
    return f"{settings.user or '(no login)'} @ {settings.host}:{settings.port}"


def gmail_account_key(email: str) -> str:
    return f"{email} (Gmail API)"


def microsoft_account_key(email: str) -> str:
    return f"{email} (Microsoft Graph)"


def smtp_plan(draft: service.Draft, settings: SmtpSettings, *, local_inbox: bool = False,
              attach: tuple[str, ...] = ()) -> Plan:
    spec = service.campaign_spec(draft, settings, attach=attach)
    spec["settings"]["local_inbox"] = local_inbox
    connections = 1 if local_inbox else default_connections(settings.provider)
    spec["connections"] = connections
    return Plan(lambda: SmtpTransport(settings), spec, smtp_account_key(settings),
                service.preset_limits(settings.provider), settings.provider, connections=connections)


def gmail_plan(draft: service.Draft, account: Any, email: str, workspace: bool, *, provider: str | None = None,
               attach: tuple[str, ...] = ()) -> Plan:
    """A Gmail API run: Google's limits for the account (or for the provider named, gmail or
    google-workspace); one connection."""
    key, _ = gmail_api_limits(workspace)
    provider = provider if provider in GMAIL_API_LIMITS else key
    # Google's modules are loaded for a Gmail run only.
    from backend.transports.gmail import GmailTransport

    return Plan(lambda: GmailTransport(account), service.campaign_spec(draft, None, attach=attach, gmail=email),
                gmail_account_key(email), service.rate_limits(GMAIL_API_LIMITS[provider]), provider, gmail=email)


def graph_plan(draft: service.Draft, account: Any, email: str, consumer: bool, *,
               attach: tuple[str, ...] = ()) -> Plan:
    """A Microsoft Graph run: Outlook.com's or Exchange Online's limits; one connection (Graph
    allows a mailbox 4 requests at once)."""
    key, limits = microsoft_limits(consumer)
    from backend.transports.graph import GraphTransport  # loaded for a Graph run only

    return Plan(lambda: GraphTransport(account), service.campaign_spec(draft, None, attach=attach, microsoft=email),
                microsoft_account_key(email), service.rate_limits(limits), key, microsoft=email)


def limits_with(base: RateLimits | None, given: dict[str, Any]) -> RateLimits | None:
    """The base limits with the given ones in their place (0 or None: no limit)."""
    if not given:
        return base
    unknown = set(given) - set(LIMIT_KEYS)
    if unknown:
        raise SettingsError(f"limits.{sorted(unknown)[0]}", "is not a sending limit")
    values = {}
    for key, value in given.items():
        if value is not None and (value != value or value < 0):  # nan or negative would mean none
            raise SettingsError(f"limits.{key}", "must be 0 (no limit) or more")
        values[key] = (value if key == "per_second" else int(value)) if value else None
    return replace(base or RateLimits(), **values)


def retry_with(policy: RetryPolicy, failures: int, given: dict[str, Any]) -> tuple[RetryPolicy, int]:
    """The policy with the given retry values in place, checked together."""
    values = {k: given.get(k) if given.get(k) is not None else getattr(policy, k)
              for k in ("base_s", "cap_s", "max_attempts", "max_age_s")}
    if given.get("max_failures_in_a_row") is not None:
        failures = int(given["max_failures_in_a_row"])
    checks = [(values["base_s"] > 0, "retry.base_s", "must be more than 0 seconds"),
              (values["cap_s"] >= values["base_s"], "retry.cap_s", "must be at least the first retry's wait"),
              (values["max_attempts"] >= 1, "retry.max_attempts", "must be at least 1"),
              (values["max_age_s"] > 0, "retry.max_age_s", "must be more than 0"),
              (failures >= 0, "retry.max_failures_in_a_row", "must be 0 or more")]
    for fine, name, words in checks:
        if not fine:
            raise SettingsError(name, words)
    values["max_attempts"] = int(values["max_attempts"])
    return RetryPolicy(**values), failures


def with_options(plan: Plan, options: SendOptions) -> Plan:
    """The face's limits, retries and connections on top of the plan's own; kept in its spec."""
    plan.limits = limits_with(plan.limits, options.limits)
    plan.retry, plan.max_failures_in_a_row = retry_with(plan.retry, plan.max_failures_in_a_row, options.retry)
    if plan.gmail is not None or plan.microsoft is not None:
        plan.connections = 1  # the HTTP APIs send on one
    elif options.connections is not None:
        if not 1 <= options.connections <= MAX_CONNECTIONS:
            raise SettingsError("connections", f"give a whole number from 1 to {MAX_CONNECTIONS}")
        plan.connections = options.connections
        plan.spec["connections"] = plan.connections
    return plan


def as_before(plan: Plan, spec: dict[str, Any]) -> Plan:
    """A resumed or follow-up run keeps the campaign's own limits, retries and connections."""
    if "limits" in spec:
        plan.limits = service.limits_from_spec(spec)
    plan.retry, plan.max_failures_in_a_row = service.retry_from_spec(spec)
    if plan.gmail is None and plan.microsoft is None:
        plan.connections = int(spec.get("connections") or default_connections(plan.provider))
        plan.spec["connections"] = plan.connections
    return plan
