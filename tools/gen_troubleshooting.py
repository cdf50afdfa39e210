"""Generate docs/troubleshooting.md from errors.CATEGORIES, presets.PRESETS and classify_reply.

The guide is never edited by hand: change the text in backend/errors.py or backend/presets.py
and run `python tools/gen_troubleshooting.py`.  `--check` exits 1 when the file on disk differs
from what would be generated (tests/test_docs.py runs the same comparison).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from backend import paths  # noqa: E402
from backend.cli import PASSWORD_ENV, build_parser  # noqa: E402
from backend.errors import CATEGORIES, AuthError, Category  # noqa: E402
from backend.presets import GMAIL_API_LIMITS, PRESETS, Preset  # noqa: E402
from backend.settings import SECURITY_LABELS  # noqa: E402
from backend.transports.gmail import classify as classify_api  # noqa: E402
from backend.transports.smtp import classify_reply  # noqa: E402

OUTPUT = ROOT / "docs" / "troubleshooting.md"
REGENERATE = "python tools/gen_troubleshooting.py"
LOG_FILE = "bulk-mailer.log"
STAGES = {"mail": "MAIL FROM", "rcpt": "RCPT TO", "data": "end of DATA"}


@dataclass(frozen=True)
class Reply:
    """A typical server reply; its category is whatever classify_reply makes of it."""

    code: int
    text: str  # the reply text after the code, as servers send it
    stage: str  # "mail" | "rcpt" | "data": the command it answers (classify_reply's stage)
    meaning: str
    note: str = ""  # where the example comes from, if one provider sends it
    when: str = ""  # the command as shown, when it differs from the stage classified

    @property
    def category(self) -> str:
        return classify_reply(self.code, self.text, self.stage)


# Hand-written examples; the category column is computed, so the table follows the code.
REPLIES: tuple[Reply, ...] = (
    Reply(421, "4.7.0 Try again later, closing connection.", "mail",
          "The server is throttling you and closes the connection.", "Gmail"),
    Reply(421, "4.3.2 Service not available, closing transmission channel", "mail",
          "The server is shutting down or overloaded."),
    Reply(450, "4.2.1 The user you are trying to contact is receiving mail at a rate that "
          "prevents additional messages from being delivered.", "rcpt",
          "Temporary refusal: too much mail too fast.", "Gmail"),
    Reply(451, "4.3.0 Temporary local problem, please try again later", "data",
          "A temporary problem on the server while taking the message."),
    Reply(451, "4.7.1 Greylisted, please try again in 5 minutes", "rcpt",
          "Greylisting: a server that has not seen you before asks you to come back later."),
    Reply(452, "4.5.3 Too many recipients", "rcpt",
          "Too many recipients for this message or this connection."),
    Reply(452, "4.2.2 The email account that you tried to reach is over quota.", "rcpt",
          "The recipient's mailbox is full (their quota, not yours).", "Gmail"),
    Reply(454, "4.7.0 Too many login attempts, please try again later.", "mail",
          "Too many connections or logins in a short time.", "Gmail"),
    Reply(454, "Throttling failure: Maximum sending rate exceeded.", "mail",
          "Sending faster than the account's per-second rate.", "Amazon SES"),
    Reply(454, "Throttling failure: Daily message quota exceeded.", "mail",
          "The account's 24-hour sending quota is used up.", "Amazon SES"),
    Reply(530, "5.7.0 Authentication Required", "mail",
          "The server wants you to log in before sending."),
    Reply(535, "5.7.8 Username and Password not accepted.", "mail",
          "Wrong username or password.", "Gmail", when="AUTH (or MAIL FROM)"),
    Reply(550, "5.1.1 The email account that you tried to reach does not exist.", "rcpt",
          "The recipient's mailbox does not exist.", "Gmail"),
    Reply(550, "5.7.1 Sender address rejected: not owned by user", "mail",
          "You may not send as this From address."),
    Reply(550, "5.4.5 Daily user sending quota exceeded.", "mail",
          "The account's daily sending limit is reached.", "Gmail"),
    Reply(551, "5.1.6 User not local; please try another path", "rcpt",
          "The recipient is not on this server."),
    Reply(552, "5.3.4 Message size exceeds fixed maximum message size", "data",
          "The message is too large."),
    Reply(552, "5.2.2 The email account that you tried to reach is over quota.", "rcpt",
          "The recipient's mailbox is full.", "Gmail"),
    Reply(553, "5.1.3 The recipient address is not a valid RFC 5321 address.", "rcpt",
          "The recipient address is malformed or not allowed."),
    Reply(553, "5.7.1 Sender address rejected: not owned by user", "mail",
          "You may not send as this From address."),
    Reply(554, "5.7.1 Message rejected as spam", "data",
          "The message was refused for its content or by policy."),
    Reply(554, "Message rejected: Email address is not verified.", "data",
          "The From address is not a verified identity.", "Amazon SES"),
)


@dataclass(frozen=True)
class ApiAnswer:
    """A typical Gmail API error answer; its category is whatever the Gmail transport makes of it."""

    status: int
    reason: str
    text: str
    meaning: str
    wait: float | None = None

    @property
    def kind(self) -> tuple[type, str]:
        return classify_api(self.status, self.text, {self.reason.lower()}, self.wait)


API_ANSWERS: tuple[ApiAnswer, ...] = (
    ApiAnswer(429, "rateLimitExceeded", "Too many requests", "Sending faster than the API allows."),
    ApiAnswer(403, "userRateLimitExceeded", "User Rate Limit Exceeded",
              "More than 15,000 quota units a minute for this user (150 messages)."),
    ApiAnswer(403, "rateLimitExceeded", "Rate Limit Exceeded", "The Cloud project's own rate limit."),
    ApiAnswer(403, "dailyLimitExceeded", "Daily Limit Exceeded", "The account's daily sending limit."),
    ApiAnswer(429, "rateLimitExceeded", "User-rate limit exceeded.  Retry after 2026-01-02T08:00:00.000Z",
              "Gmail's sending limit, with the time it lifts.", wait=10 * 3600.0),
    ApiAnswer(400, "failedPrecondition", "Precondition check failed.",
              "Gmail will not send this message (often: the account cannot send yet, or the message breaks a rule)."),
    ApiAnswer(400, "invalidArgument", "Invalid To header", "The recipient address is not acceptable."),
    ApiAnswer(401, "authError", "Request had invalid authentication credentials.",
              "The sign-in is no longer valid (after one automatic renewal)."),
    ApiAnswer(403, "insufficientPermissions", "Request had insufficient authentication scopes.",
              "The permission to send was not granted."),
    ApiAnswer(403, "accessNotConfigured", "Gmail API has not been used in project 123 before or it is disabled.",
              "The Gmail API is not enabled in the Cloud project."),
    ApiAnswer(500, "backendError", "Backend Error", "Google failed after receiving the message."),
    ApiAnswer(503, "backendError", "The service is currently unavailable.", "Google is overloaded or down."),
)
_WHAT_HAPPENS = {
    ("ApiThrottled", "rate_limited"): "deferred: tried again later in the run, not before the wait Google asks for "
                                      "(Retry-After), with backoff and jitter",
    ("ApiThrottled", "quota_exceeded"): "the run stops (the recipient stays due) and says when it can continue; "
                                        "resume then",
    ("ApiRejected", "recipient_rejected"): "failed",
    ("ApiRejected", "message_rejected"): "failed",
    ("OAuthError", "oauth_error"): "the run stops (the recipient stays due): sign in again, then resume",
    ("UncertainDelivery", "server_error"): "uncertain: it may have been sent, so it is never resent by itself",
}


# -- Markdown helpers --------------------------------------------------------------------------


def md_text(text: str) -> str:
    """Text from errors.py/presets.py as Markdown that renders back to exactly that text."""
    for ch in ("\\", "`", "*", "<"):
        text = text.replace(ch, "\\" + ch)
    return text


def _cell(text: str) -> str:
    return md_text(text).replace("|", "\\|")


def _code(text: str) -> str:
    return f"`{text}`"


def _steps(steps: tuple[str, ...] | list[str]) -> list[str]:
    return [f"{n}. {md_text(step)}" for n, step in enumerate(steps, 1)]


def security_label(security: str) -> str:
    """STARTTLS, SSL/TLS or None: the labels the window and the CLI use."""
    return SECURITY_LABELS.get(security, security)


def provider_anchor(preset: Preset) -> str:
    return f"provider-{preset.key}"


def _host(preset: Preset) -> str:
    return preset.host.replace("{region}", "<region>")


def _cli_has_option(option: str) -> bool:
    """Whether `bulk-mailer` (any subcommand) accepts ``option``: the intro follows the CLI."""
    todo = [build_parser()]
    while todo:
        parser = todo.pop()
        for action in parser._actions:
            if option in action.option_strings:
                return True
            if isinstance(action, argparse._SubParsersAction):
                todo.extend(action.choices.values())
    return False


# -- the sections ------------------------------------------------------------------------------


def _intro() -> list[str]:
    detail = (
        "`--verbose` (for example `bulk-mailer verify --verbose ...`)"
        if _cli_has_option("--verbose")
        else "`--log-level DEBUG` (for example `bulk-mailer --log-level DEBUG verify ...`)"
    )
    home = paths.HOME_ENV
    return [
        "# Troubleshooting Bulk Mailer",
        "",
        f"<!-- Generated by tools/gen_troubleshooting.py from backend/errors.py and "
        f"backend/presets.py. Do not edit by hand: change those files and run `{REGENERATE}`. -->",
        "",
        "When something fails, Bulk Mailer names the problem with a short category such as "
        "`auth_failed` and tells you what to do. This guide lists every category with its cause "
        "and fix steps, the extra steps for each email provider, and what common server replies "
        "mean. The window, the command line and this page show the same text.",
        "",
        "## Start here: run the connection test",
        "",
        "- **In the window:** fill in the account and press **Test connection**. It connects, "
        "secures the connection, logs in and shows each step; nothing is sent. When a step fails "
        "you see the category, the cause and the fix steps for your provider.",
        "- **On the command line:** `bulk-mailer verify --provider gmail --user you@gmail.com` "
        "(or `--host`, `--port` and `--security` for any server). The password is read from "
        f"`${PASSWORD_ENV}` or, with `--password-stdin`, from standard input. Each step is "
        "printed with its time; a failure prints `error [category]`, the cause and numbered "
        "fix steps.",
        "- **For scripts and bug reports:** `bulk-mailer verify --json ...` prints the same result "
        "as one JSON object: `ok`, the `steps`, and on failure an `error` with `category`, "
        "`message`, `cause` and `fix`.",
        "",
        "Then look up the category below. During a campaign, every failed recipient carries its "
        "category, the server's reply code and text, and the fix, in the activity log and in the "
        "results file.",
        "",
        "## The log file",
        "",
        f"Every connection step, server reply and progress event is written with a timestamp to "
        f"`{LOG_FILE}` in the app's log folder. Passwords, login exchanges and sign-in tokens are "
        f"never written, so the log is safe to attach to a bug report.",
        "",
        f"- Linux: `~/.local/state/{paths.APP}/log/` (or `$XDG_STATE_HOME/{paths.APP}/log/`)",
        f"- macOS: `~/Library/Logs/{paths.APP}/`",
        f"- Windows: `%LOCALAPPDATA%\\{paths.APP}\\{paths.APP}\\Logs\\`",
        f"- With `{home}` set (portable use): `${home}/logs/`",
        "",
        f"For more detail, run the command line with {detail}: every command and server reply "
        "goes into the log.",
        "",
    ]


def _toc(categories: list[Category], presets: list[Preset]) -> list[str]:
    lines = ["## Contents", ""]
    lines += [f"- [{md_text(c.title)} — `{c.name}`](#{c.name})" for c in categories]
    lines += ["- [Providers](#providers)"]
    lines += [f"  - [{md_text(p.name)}](#{provider_anchor(p)})" for p in presets]
    lines += ["- [Gmail API (Sign in with Google)](#gmail-api)", "- [SMTP reply codes](#smtp-reply-codes)", ""]
    return lines


def _category(cat: Category, presets: list[Preset]) -> list[str]:
    lines = [
        f'<a id="{cat.name}"></a>',
        "",
        f"## {md_text(cat.title)} — `{cat.name}`",
        "",
        "### What it means",
        "",
        md_text(cat.cause),
        "",
    ]
    replies = [r for r in REPLIES if r.category == cat.name]
    if replies:
        lines += ["Typical server replies (see [SMTP reply codes](#smtp-reply-codes)):", ""]
        lines += [f"- {_code(f'{r.code} {r.text}')}" for r in replies]
        lines.append("")
    lines += ["### How to fix it", "", *_steps(cat.fix), ""]
    advised = [p for p in presets if p.advice.get(cat.name)]
    if advised:
        lines += ["### Provider-specific steps", ""]
        for p in advised:
            lines += [
                f"**{md_text(p.name)}** ([settings](#{provider_anchor(p)}))",
                "",
                *_steps(p.advice[cat.name]),
                "",
            ]
    return lines


def _providers(presets: list[Preset]) -> list[str]:
    lines = [
        '<a id="providers"></a>',
        "",
        "## Providers",
        "",
        "Choosing a provider in the window (or `--provider NAME` on the command line) fills in "
        "these settings. Security: STARTTLS upgrades a plain connection (usually port 587), "
        "SSL/TLS is encrypted from the start (usually port 465).",
        "",
        "| Provider | `--provider` | Host | Port | Security |",
        "| --- | --- | --- | --- | --- |",
    ]
    for p in presets:
        lines.append(
            f"| [{_cell(p.name)}](#{provider_anchor(p)}) | `{p.key}` | `{_host(p)}` | {p.port} "
            f"| {security_label(p.security)} |"
        )
    lines.append("")
    for p in presets:
        lines += [
            f'<a id="{provider_anchor(p)}"></a>',
            "",
            f"### {md_text(p.name)}",
            "",
            f"- Host: `{_host(p)}`, port {p.port}, security {security_label(p.security)}",
        ]
        if p.regions:
            lines.append(
                f"- Regions (default `{p.default_region}`): "
                + ", ".join(_code(r) for r in p.regions)
            )
        if p.username_hint:
            lines.append(f"- Username: {md_text(p.username_hint)}")
        if p.domains:
            lines.append(
                "- Chosen automatically for addresses at " + ", ".join(_code(d) for d in p.domains)
            )
        if p.limits.note:
            lines.append(f"- Limits: {md_text(p.limits.note)}")
        lines.append("")
        if p.notes:
            lines += ["Notes:", "", *[f"- {md_text(n)}" for n in p.notes], ""]
        advised = [name for name in CATEGORIES if p.advice.get(name)]
        if advised:
            links = ", ".join(f"[`{name}`](#{name})" for name in advised)
            lines += [f"Provider-specific steps in this guide: {links}.", ""]
    return lines


def _gmail_api() -> list[str]:
    lines = [
        '<a id="gmail-api"></a>',
        "",
        "## Gmail API (Sign in with Google)",
        "",
        "Instead of SMTP and an app password, a Gmail or Google Workspace account can send through "
        "the Gmail API after **Sign in with Google** (in the window) or `bulk-mailer gmail login "
        "--client-secrets FILE` (on the command line); `bulk-mailer gmail status` says who is signed "
        "in. Every sign-in problem (cancelled, timed out, an OAuth client of the wrong type, a "
        "revoked sign-in) is [`oauth_error`](#oauth_error), with the fix.",
        "",
        "Limits applied to Gmail API campaigns (give your own with `--max-per-minute`, "
        "`--max-per-hour` or `--max-per-day`):",
        "",
    ]
    for key, limits in GMAIL_API_LIMITS.items():
        lines.append(f"- {md_text(PRESETS[key].name)}: {md_text(limits.note)}")
    lines += [
        "",
        "What Google's answers to sending a message mean (the last columns are what Bulk Mailer "
        "makes of them):",
        "",
        "| Answer | Usually means | Category | The recipient |",
        "| --- | --- | --- | --- |",
    ]
    for a in API_ANSWERS:
        cls, category = a.kind
        lines.append(f"| `{a.status} {a.reason}: {a.text}` | {_cell(a.meaning)} | [`{category}`](#{category}) "
                     f"| {_cell(_WHAT_HAPPENS[(cls.__name__, category)])} |")
    lines += [
        "",
        "A request that times out, or whose connection drops, after the message went out is "
        "`uncertain` too ([`timeout`](#timeout) or [`server_disconnected`](#server_disconnected)); "
        "one that never reached Google is not sent and the run stops, to be resumed.",
        "",
    ]
    return lines


def _replies() -> list[str]:
    lines = [
        '<a id="smtp-reply-codes"></a>',
        "",
        "## SMTP reply codes",
        "",
        "A server answers each command with a three-digit code, often followed by an enhanced "
        "status such as `5.7.8`. Codes starting with 4 are temporary (trying again later may "
        "work); codes starting with 5 are permanent. The last column is the category Bulk Mailer "
        "gives such a reply; the exact text varies from server to server.",
        "",
        "| Reply | In answer to | Usually means | Category |",
        "| --- | --- | --- | --- |",
    ]
    for r in REPLIES:
        source = f" ({md_text(r.note)})" if r.note else ""
        lines.append(
            f"| `{r.code} {r.text}`{source} | {r.when or STAGES[r.stage]} | {_cell(r.meaning)} "
            f"| [`{r.category}`](#{r.category}) |"
        )
    # The fall-back of classify_reply for a reply no rule above it recognises.
    other = {stage: classify_reply(550, "5.0.0 Refused", stage) for stage in STAGES}
    lines += [
        "",
        f"A 535 reply to the login itself (AUTH) is always "
        f"[`{AuthError.default_category}`](#{AuthError.default_category}). Other refusals of "
        f"MAIL FROM are [`{other['mail']}`](#{other['mail']}), of RCPT TO "
        f"[`{other['rcpt']}`](#{other['rcpt']}), and of the message "
        f"[`{other['data']}`](#{other['data']}).",
        "",
    ]
    return lines


def generate() -> str:
    """The whole guide as Markdown: same input, same output (no dates, stable order)."""
    categories = list(CATEGORIES.values())
    presets = list(PRESETS.values())
    lines = _intro() + _toc(categories, presets)
    for cat in categories:
        lines += _category(cat, presets)
    lines += _providers(presets) + _gmail_api() + _replies()
    while lines and lines[-1] == "":
        lines.pop()
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    import gendoc  # tools/, beside this file

    return gendoc.main(argv, description=__doc__.splitlines()[0], output=OUTPUT, generate=generate,
                       regenerate=REGENERATE)


if __name__ == "__main__":
    sys.exit(main())
