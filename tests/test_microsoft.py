"""Microsoft accounts against a local fake of the identity platform and Graph
(tests/fakemicrosoft.py): MSAL's sign-in with PKCE through a loopback redirect and with a
device code, refresh, sign-out, campaigns through Microsoft Graph and through SMTP with XOAUTH2
(a 429 deferred and sent, a 403 failing right), tokens in no file the app writes, and every
Microsoft answer mapped to its category and fix."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from backend import microsoft_auth
from backend.app import App
from backend.credentials import EncryptedFileStore
from backend.errors import CATEGORIES, OAuthError
from backend.inputs import AccountInput, MessageInput, SendOptions
from backend.microsoft_errors import reply_advice, sign_in_error, smtp_refusal
from backend.transports.graph import GRAPH_MAX_MESSAGE, classify
from tests.fakemicrosoft import (
    CLIENT_ID,
    SMTP_SEND,
    MicrosoftSmtpHandler,
    enter_device_code,
    play_browser,
)

PASSPHRASE = "correct horse battery"


def make_app(certs, tmp_path: Path, record: list[str] | None = None) -> App:
    return App(store=EncryptedFileStore(tmp_path / "secrets.enc"), open_browser=play_browser(certs.ca_file, record=record),
               journal_path=tmp_path / "journal.db")


def signed_in_app(microsoft, certs, tmp_path, **kw) -> App:
    app = make_app(certs, tmp_path)
    app.microsoft_sign_in(CLIENT_ID, passphrase=PASSPHRASE, **kw)
    state = app.wait_sign_in()
    assert state["state"] == "signed_in" and state["email"] == microsoft.email
    return app


def run(app: App, a: AccountInput, to: list[str], **options) -> object:
    app.import_recipients(("text", "email,name\n" + "\n".join(f"{x},N{i}" for i, x in enumerate(to))))
    m = MessageInput(subject="Hello {{ name }}", html="<p>Hi {{ name }}</p>", from_address=a.from_address,
                     delay_ms=0)
    draft, plan = app.prepare(a, m, SendOptions(retry={"base_s": 0.1, "cap_s": 3}, **options))
    from backend import service

    return draft, plan, service.send(draft, plan.transports() if plan.connections > 1 else plan.transport(),
                                     limits=None, retry=plan.retry, journal=app.journal, spec=plan.spec,
                                     account=plan.account)


# -- signing in -------------------------------------------------------------------------------


def test_sign_in_with_pkce_through_the_loopback_redirect(microsoft, certs, tmp_path):
    seen: list[str] = []
    app = make_app(certs, tmp_path, seen)
    started = app.microsoft_sign_in(CLIENT_ID, "organizations", passphrase=PASSPHRASE)
    assert app.microsoft_status()["sign_in"]["state"] == "waiting"
    app.wait_sign_in()
    asked = microsoft.auth_requests[0]
    assert started["url"] == seen[0] and asked["code_challenge_method"] == "S256"
    assert asked["redirect_uri"].startswith("http://localhost:")
    assert {"https://graph.microsoft.com/Mail.Send", SMTP_SEND, "offline_access"} <= set(asked["scope"].split())
    status = app.microsoft_status()
    assert status["signed_in"] and status["graph"] and status["smtp"] and not status["consumer"]
    assert status["limits"]["per_day"] == 10000 and status["limits"]["per_minute"] == 30
    assert status["profile"]["tenant"] == "organizations" and status["profile"]["client_id"] == CLIENT_ID
    # no token request carries two services' scopes (Microsoft refuses that)
    assert all("outlook.office.com" not in r["scope"] or "graph" not in r["scope"] for r in microsoft.token_requests)


def test_sign_in_with_a_device_code(microsoft, certs, tmp_path):
    microsoft.consumer = True
    app = make_app(certs, tmp_path)
    started = app.microsoft_sign_in(CLIENT_ID, "consumers", device_code=True, passphrase=PASSPHRASE)
    assert started["user_code"] and started["url"].endswith("/device") and started["user_code"] in started["message"]
    threading.Timer(0.5, enter_device_code, (microsoft, started["url"], started["user_code"], certs.ca_file)).start()
    state = app.wait_sign_in()
    assert state["state"] == "signed_in" and state["consumer"]
    status = app.microsoft_status()
    assert status["provider"] == "outlook" and status["limits"]["per_day"] == 300 and status["graph"]


def test_a_refused_consent_and_aadsts_errors_say_what_to_do(microsoft, certs, tmp_path):
    microsoft.consent = "deny"
    app = make_app(certs, tmp_path)
    app.microsoft_sign_in(CLIENT_ID, passphrase=PASSPHRASE)
    with pytest.raises(OAuthError) as exc:
        app.wait_sign_in()
    assert exc.value.category == "microsoft_consent" and "AADSTS65004" in exc.value.message
    microsoft.consent = "allow"
    microsoft.token_error = ("invalid_client", "AADSTS7000218: The request body must contain client_assertion "
                             "or client_secret.", [7000218])
    app.microsoft_sign_in(CLIENT_ID, passphrase=PASSPHRASE)
    with pytest.raises(OAuthError) as exc:
        app.wait_sign_in()
    assert exc.value.category == "microsoft_app" and "Allow public client flows" in " ".join(exc.value.fix_steps())
    assert not app.microsoft_status()["signed_in"]


def test_a_client_id_is_needed_and_checked(microsoft, certs, tmp_path):
    app = make_app(certs, tmp_path)
    with pytest.raises(OAuthError, match="client id") as exc:
        app.microsoft_sign_in(None, passphrase=PASSPHRASE)
    assert "Entra admin center" in " ".join(exc.value.fix_steps())
    with pytest.raises(OAuthError, match="not a client id"):
        app.microsoft_sign_in("my-app", passphrase=PASSPHRASE)
    with pytest.raises(OAuthError, match="not a tenant"):
        app.microsoft_sign_in(CLIENT_ID, "bad tenant!", passphrase=PASSPHRASE)


def test_refresh_renews_from_the_saved_cache_and_sign_out_forgets(microsoft, certs, tmp_path):
    app = signed_in_app(microsoft, certs, tmp_path)
    fresh = App(store=EncryptedFileStore(tmp_path / "secrets.enc"), journal_path=tmp_path / "journal.db")
    account = fresh.microsoft(PASSPHRASE)
    before = len(microsoft.token_requests)
    token = account.access_token("graph")  # no access token is kept: renewed from the refresh token
    assert token in microsoft.issued and len(microsoft.token_requests) == before + 1
    assert account.access_token("graph") == token  # held in memory for the run
    assert account.access_token("smtp") != token
    assert microsoft.token_ok(microsoft.email, account.access_token("smtp"))
    again = account.access_token("graph", force_refresh=True)
    assert again != token
    result = app.microsoft_sign_out(PASSPHRASE)
    assert result["email"] == microsoft.email and "microsoft.com" in result["apps_page"]
    assert not app.microsoft_status()["signed_in"] and not app.has_microsoft_token()
    with pytest.raises(OAuthError, match="nobody is signed in"):
        App(store=EncryptedFileStore(tmp_path / "secrets.enc")).microsoft(PASSPHRASE).access_token("graph")


def test_a_revoked_sign_in_asks_to_sign_in_again(microsoft, certs, tmp_path):
    signed_in_app(microsoft, certs, tmp_path)
    microsoft.revoke_all()
    account = App(store=EncryptedFileStore(tmp_path / "secrets.enc")).microsoft(PASSPHRASE)
    with pytest.raises(OAuthError) as exc:
        account.access_token("graph")
    assert exc.value.category == "microsoft_sign_in" and "AADSTS70008" in exc.value.message
    assert "bulk-mailer microsoft login" in " ".join(exc.value.fix_steps())


# -- campaigns --------------------------------------------------------------------------------


def test_a_campaign_through_graph_defers_429s_and_fails_a_403_right(microsoft, certs, tmp_path):
    app = signed_in_app(microsoft, certs, tmp_path)
    a = AccountInput(channel="microsoft", from_address="Sender Name")
    to = ["ann@example.org", "limit429@example.org", "busy429@example.org", "unavail503@example.org",
          "expire401@example.org", "chloé@exämple.org"]
    draft, plan, outcome = run(app, a, to)
    assert plan.limits.per_minute == 30 and plan.limits.per_day == 10000 and plan.connections == 1
    assert outcome.counts == {"sent": 6}, [(r.email, r.status, r.error) for r in outcome.results]
    rows = {r.email: r for r in outcome.results}
    assert rows["limit429@example.org"].attempts == 2 and rows["busy429@example.org"].attempts == 2
    sent = microsoft.sent
    assert len(sent) == 6 and {s.content_type for s in sent} == {"text/plain"}
    first = sent[0].message
    assert first["From"].addresses[0].addr_spec == microsoft.email
    assert first["From"].addresses[0].display_name == "Sender Name"
    assert app.journal.spec(draft.id)["channel"] == "microsoft"
    # a 403 stops the run with the fix (the permission), and nothing more is sent
    draft, plan, outcome = run(app, a, ["denied403@example.org", "bob@example.org"])
    assert outcome.error is not None and outcome.error.category == "microsoft_consent"
    assert "Mail.Send" in " ".join(outcome.error.fix_steps())
    assert not any(s.to.endswith("bob@example.org") for s in microsoft.sent)


def test_graphs_4_mb_limit_is_checked_before_sending(microsoft, certs, tmp_path):
    app = signed_in_app(microsoft, certs, tmp_path)
    account = app.microsoft(PASSPHRASE)
    from backend.transports.base import Envelope
    from backend.transports.graph import GraphTransport

    t = GraphTransport(account)
    t.open()
    big = b"Subject: x\r\n\r\n" + b"a" * (GRAPH_MAX_MESSAGE + 10)
    with pytest.raises(Exception) as exc:
        t.send(Envelope(microsoft.email, ("x@example.org",)), big)
    assert "4.0 MB" in str(exc.value) and "3.0 MB" in str(exc.value) and not microsoft.sent


def test_a_campaign_through_smtp_with_xoauth2(microsoft, certs, tmp_path, smtp_server):
    app = signed_in_app(microsoft, certs, tmp_path)
    handler = MicrosoftSmtpHandler(accept=microsoft.token_ok)
    server = smtp_server("starttls", handler=handler, accounts={})
    a = AccountInput(provider="office365", host=server.host, port=server.port, security="starttls", auth="xoauth2",
                     from_address=microsoft.email, ca_file=certs.ca_file)
    _, plan, outcome = run(app, a, ["ann@example.org", "bob@example.org"])
    assert outcome.counts == {"sent": 2} and handler.xoauth2_logins[0] == microsoft.email
    assert plan.limits.per_minute == 30 and len(server.messages) == 2
    # SMTP AUTH turned off for the tenant: the category says so, and Graph is offered
    handler.accept = lambda user, token: False
    handler.refusal = "535 5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled for the Tenant."
    _, _, outcome = run(app, a, ["chloe@example.org"])
    assert outcome.error.category == "smtp_auth_disabled"
    assert any("--channel microsoft" in s for s in outcome.error.fix_steps("office365"))
    handler.refusal = "535 5.7.3 Authentication unsuccessful"
    _, _, outcome = run(app, a, ["chloe@example.org"])
    assert outcome.error.category == "microsoft_sign_in" and "SMTP.Send" in " ".join(outcome.error.fix_steps())


def test_no_token_reaches_a_file_the_app_writes(microsoft, certs, tmp_path, isolated_home):
    app = signed_in_app(microsoft, certs, tmp_path)
    run(app, AccountInput(channel="microsoft"), ["ann@example.org", "echo400@example.org", "limit429@example.org"])
    app.microsoft(PASSPHRASE).access_token("smtp")
    written = [p for root in (isolated_home, tmp_path) for p in root.rglob("*") if p.is_file()]
    assert any(p.name == "microsoft-account.json" for p in written)
    secrets = [t for t in microsoft.issued if len(t) > 20]
    for path in written:
        data = path.read_bytes()
        for secret in secrets:
            assert secret.encode() not in data, f"{path} holds a token"


# -- each Microsoft answer, its category and its fix --------------------------------------------


@pytest.mark.parametrize(("error", "description", "codes", "category", "words"), [
    ("invalid_grant", "AADSTS65001: The user or administrator has not consented", [65001], "microsoft_consent", "accept"),
    ("invalid_request", "AADSTS90094: admin approval", [90094], "microsoft_consent", "admin consent"),
    ("invalid_request", "AADSTS50011: redirect URI mismatch", [50011], "microsoft_app", "http://localhost"),
    ("invalid_client", "AADSTS7000218: client_assertion or client_secret", [7000218], "microsoft_app",
     "Allow public client flows"),
    ("invalid_request", "AADSTS50194: not configured as a multi-tenant application", [50194], "microsoft_app",
     "--tenant"),
    ("invalid_request", "AADSTS9002331: only for Microsoft Account users", [9002331], "microsoft_app", "consumers"),
    ("unauthorized_client", "AADSTS700016: Application not found", [700016], "microsoft_app", "--client-id"),
    ("invalid_grant", "AADSTS70008: expired", [70008], "microsoft_sign_in", "microsoft login"),
    ("access_denied", None, [], "microsoft_consent", "Accept"),
])
def test_sign_in_answers(error, description, codes, category, words):
    exc = sign_in_error(error, description, codes)
    assert exc.category == category and words in " ".join(exc.fix_steps())


@pytest.mark.parametrize(("reply", "oauth", "category", "words"), [
    ("5.7.139 Authentication unsuccessful, basic authentication is disabled.", False, "basic_auth_disabled",
     "Sign in with Microsoft"),
    ("5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled for the Tenant.", True,
     "smtp_auth_disabled", "Authenticated SMTP"),
    ("5.7.139 Authentication unsuccessful, the user credentials were incorrect.", True, "smtp_auth_disabled",
     "--channel microsoft"),
    ("5.7.30 Basic authentication is not supported for Client Submission.", False, "basic_auth_disabled",
     "bulk-mailer microsoft login"),
    ("5.7.3 Authentication unsuccessful", True, "microsoft_sign_in", "SMTP.Send"),
    ("5.7.3 Authentication unsuccessful", False, "auth_failed", "Sign in with Microsoft"),
])
def test_smtp_login_answers(reply, oauth, category, words):
    got, fix = smtp_refusal(535, reply, oauth=oauth)
    assert got == category and got in CATEGORIES and words in " ".join(fix)


@pytest.mark.parametrize(("reply", "category"), [
    ("5.2.252 SendAsDenied; sender@contoso.com not allowed to send as other@contoso.com", "sender_rejected"),
    ("5.7.708 Service unavailable. Access denied, traffic not accepted from this IP.", "sending_restricted"),
    ("5.7.515 Access denied, sending domain example.com does not meet the required authentication level.",
     "sender_authentication"),
])
def test_reply_answers_and_the_provider_advice(reply, category):
    got, fix = reply_advice(reply)
    assert got == category and reply.split()[0] in fix
    from backend.presets import provider_advice

    assert any(reply.split()[0] in step for step in provider_advice("office365", category))


@pytest.mark.parametrize(("status", "code", "message", "wait", "category"), [
    (429, "TooManyRequests", "", 2.0, "rate_limited"),
    (429, "ApplicationThrottled", "Application is over its MailboxConcurrency limit.", None, "rate_limited"),
    (503, "ServiceUnavailable", "", 1.0, "rate_limited"),
    (503, "ServiceUnavailable", "", None, "server_error"),
    (401, "InvalidAuthenticationToken", "expired", None, "microsoft_sign_in"),
    (403, "ErrorAccessDenied", "Access is denied.", None, "microsoft_consent"),
    (403, "ErrorSendAsDenied", "SubmissionQuotaExceeded", None, "quota_exceeded"),
    (400, "ErrorInvalidRecipients", "At least one recipient is not valid.", None, "recipient_rejected"),
    (413, "RequestBodyTooLarge", "", None, "attachment_error"),
    (500, "ErrorInternalServerError", "", None, "server_error"),
])
def test_graph_answers(status, code, message, wait, category):
    assert classify(status, code, message, wait, retry_after_given=wait is not None)[1] == category


def test_the_profile_file_holds_nothing_secret(microsoft, certs, tmp_path):
    signed_in_app(microsoft, certs, tmp_path)
    text = microsoft_auth.profile_path().read_text()
    assert microsoft.email in text and not any(t in text for t in microsoft.issued)


def test_review_names_the_sign_in_and_its_limits(microsoft, certs, tmp_path):
    app = make_app(certs, tmp_path)
    a, m = AccountInput(channel="microsoft"), MessageInput(subject="Hi", html="<p>Hi</p>")
    before = app.review(a, m, SendOptions())
    assert "Sign in with Microsoft" in str(before)
    app.microsoft_sign_in(CLIENT_ID, passphrase=PASSPHRASE)
    app.wait_sign_in()
    after = str(app.review(a, m, SendOptions()))
    assert f"Microsoft Graph as {microsoft.email}" in after and "Sign in with Microsoft" not in after
