"""The js_api Bridge without a window: argument checks, campaigns, events, settings, inbox."""

from __future__ import annotations

import datetime as dt
import json
import shutil
import stat
import subprocess
import threading
import time
from collections import Counter

import pytest

import bridge as bridge_mod
from backend import settings as saved_settings
from backend.credentials import EncryptedFileStore
from backend.inbox import LocalInbox
from bridge import DISPATCH_JS, Bridge, EventPump
from tests.conftest import offline_detect
from tests.servers import PASSWORD, USER

EXPECTED_API = {"reschedule", "cancel_scheduled", "timer", "signature",
    "app_info", "campaign_state", "cancel_campaign", "cancel_import", "check_message", "check_replies", "microsoft",
    "choose_recipients_file",
    "export_results", "forget_password", "import_recipients_data", "import_recipients_text",
    "inbox_clear", "inbox_list", "inbox_message", "load_settings", "pause_campaign",
    "preview_message", "resume_campaign", "save_settings", "send_test", "set_email_column",
    "start_campaign", "test_connection", "detect_settings", "open_log_folder",
    "suppression_list", "suppression_add", "suppression_remove", "template_list", "template_save",
    "template_load", "template_rename", "template_delete", "template_export", "template_import",
    "template_import_data", "set_name_column", "choose_attachments", "add_attachment_data",
    "remove_attachment", "list_attachments", "choose_attachment_folder", "set_attachment_column",
    "campaign_history", "campaign_details", "resume_past_campaign", "resend_campaign",
    "google_status", "google_sign_in", "google_cancel_sign_in", "google_sign_out", "already_sent", "draft",
    "check_links", "check_authentication",
}
EVIL_NAMES = ["'); alert(1); ('", "</script><img src=x onerror=alert(1)>", "\u2028\u2029`${alert(1)}`\\"]
MESSAGE = {"subject": "Hi {{ name }}", "body": "<p>Hello {{ name }}</p>", "format": "html"}
INBOX = {"provider": "local-inbox", "from_address": "Me <me@example.com>"}


class FakeWindow:
    """Records evaluate_js calls the way pywebview's window would receive them."""

    def __init__(self) -> None:
        self.scripts: list[str] = []

    def evaluate_js(self, script: str) -> None:
        self.scripts.append(script)


@pytest.fixture
def inbox():
    box = LocalInbox()
    yield box
    box.stop()


@pytest.fixture
def make_bridge(inbox, tmp_path):
    made: list[Bridge] = []

    def make(**kw) -> tuple[Bridge, list[dict]]:
        events: list[dict] = []
        kw.setdefault("store", EncryptedFileStore(tmp_path / "secrets.enc"))
        b = Bridge(inbox=inbox, deliver=events.extend, detector=offline_detect, **kw)
        b._pump.ready()
        made.append(b)
        return b, events

    yield make
    for b in made:
        b._shutdown()


def ok(answer: dict) -> object:
    assert answer["ok"], answer
    return answer["data"]


def wait_for(predicate, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting")
        time.sleep(0.02)


def finished(b: Bridge) -> bool:
    return ok(b.campaign_state())["state"] in ("finished", "cancelled", "failed")


def test_exactly_the_intended_methods_are_public():
    public = {n for n in dir(Bridge) if not n.startswith("_")}
    assert public == EXPECTED_API
    assert set(Bridge._api_names()) == EXPECTED_API


@pytest.mark.parametrize("bad", [None, "text", 42, [1, 2], {"account": "x"}, {"text": 5}, {"text": "x" * 6_000_000}])
def test_bad_arguments_get_structured_errors(make_bridge, bad):
    b, _ = make_bridge()
    for name in ("import_recipients_text", "start_campaign", "test_connection", "preview_message"):
        answer = getattr(b, name)(bad)
        assert answer["ok"] is False
        assert set(answer["error"]) >= {"category", "title", "message", "cause", "fix"}
        assert "Traceback" not in json.dumps(answer)


def test_extra_arguments_are_refused(make_bridge):
    b, _ = make_bridge()
    answer = b.app_info({}, "extra")
    assert answer["ok"] is False and "one object" in answer["error"]["message"]


def test_campaign_through_the_local_inbox(make_bridge, inbox):
    b, events = make_bridge()
    ok(b.import_recipients_text({"text": "email,name\na@example.org,Ann\nb@example.org,Bob\nnope,X\n"}))
    started = ok(b.start_campaign({"account": INBOX, "message": MESSAGE, "delay_ms": 0}))
    wait_for(lambda: finished(b))
    b._pump.flush()
    state = ok(b.campaign_state())
    assert state["state"] == "finished" and state["counts"] == {"sent": 2}
    progress = [e for e in events if e["type"] == "email-progress"]
    assert [(e["recipient"], e["status"]) for e in progress if e["status"] != "sending"] == [
        ("a@example.org", "sent"), ("b@example.org", "sent")]
    assert all(e["campaign"] == started["campaign"] for e in events if e["type"] != "import-progress")
    assert events[-1]["type"] == "campaign-state" and events[-1]["state"] == "finished"
    assert events[-1]["summary"]["sent"] == 2
    listed = ok(b.inbox_list())["messages"]
    assert sorted(m["subject"] for m in listed) == ["Hi Ann", "Hi Bob"]
    detail = ok(b.inbox_message({"id": listed[0]["id"]}))
    assert "<p>Hello" in detail["html"] and detail["text"].strip().startswith("Hello")
    csv_text = ok(b.export_results())["csv"]
    assert csv_text.splitlines()[0] == ("email,status,category,smtp_code,error,attempts,sent_at,message_id,line,"
                                        "dsn_status,notice,notice_at")
    (past,) = ok(b.campaign_history())["campaigns"]
    assert past["id"] == started["campaign"] and past["state"] == "finished" and past["counts"] == {"sent": 2, "skipped": 1}  # the invalid line is kept too
    assert "nope,skipped,invalid_address" in csv_text


def test_one_campaign_at_a_time_and_pause_resume_cancel(make_bridge, inbox):
    b, events = make_bridge()
    ok(b.import_recipients_text({"text": "\n".join(f"p{i}@example.org" for i in range(50))}))
    ok(b.start_campaign({"account": INBOX, "message": {**MESSAGE, "subject": "x"}, "delay_ms": 100}))
    second = b.start_campaign({"account": INBOX, "message": MESSAGE, "delay_ms": 0})
    assert second["ok"] is False and "running" in second["error"]["message"]
    ok(b.pause_campaign())
    wait_for(lambda: ok(b.campaign_state())["state"] == "paused")
    held = len(inbox.messages())
    time.sleep(0.4)
    assert len(inbox.messages()) == held  # nothing goes out while paused
    ok(b.resume_campaign())
    wait_for(lambda: len(inbox.messages()) > held)
    ok(b.cancel_campaign())
    wait_for(lambda: finished(b))
    state = ok(b.campaign_state())
    assert state["state"] == "cancelled"
    assert state["counts"]["sent"] < 50 and state["counts"]["skipped"] == 50 - state["counts"]["sent"]
    b._pump.flush()
    states = [e["state"] for e in events if e["type"] == "campaign-state"]
    assert states[0] == "running" and "paused" in states and states[-1] == "cancelled"
    assert b.pause_campaign()["ok"] is False  # nothing running any more


def test_template_problems_block_the_start(make_bridge, inbox):
    b, _ = make_bridge()
    ok(b.import_recipients_text({"text": "email,name\na@example.org,Ann\nb@example.org,\n"}))
    answer = b.start_campaign({"account": INBOX, "message": {**MESSAGE, "subject": "Hi {{ nick }}"}, "delay_ms": 0})
    assert answer["ok"] is False and answer["error"]["category"] == "template_error"
    assert [s["line"] for s in answer["error"]["steps"]] == [2, 3]
    problems = ok(b.check_message({"account": INBOX, "message": {**MESSAGE, "subject": "Hi {{ nick }}"}}))["problems"]
    assert {p["line"] for p in problems} == {2, 3} and {p["field"] for p in problems} == {"nick"}
    assert inbox.messages() == []


def test_test_connection_reports_steps(make_bridge, smtp_server, certs):
    server = smtp_server("ssl", cert=certs.self_signed)
    b, _ = make_bridge()
    account = {"provider": "custom", "host": server.host, "port": server.port, "security": "ssl", "user": USER}
    answer = b.test_connection({"account": account, "password": PASSWORD})
    assert answer["ok"] is False
    assert answer["error"]["category"] == "certificate_invalid"
    failed = answer["error"]["steps"][-1]
    assert (failed["name"], failed["status"], failed["ok"]) == ("certificate", "failed", False)
    assert failed["title"] == "Certificate" and "self-signed" in failed["detail"]
    data = ok(b.test_connection({"account": {**account, "verify_certificates": False}, "password": PASSWORD}))
    assert [(s["name"], s["status"]) for s in data["steps"]] == [
        ("dns", "ok"), ("tcp", "ok"), ("tls", "ok"), ("certificate", "warning"), ("ehlo", "ok"), ("auth", "ok")]
    assert data["authenticated_as"] == USER
    assert PASSWORD not in json.dumps(answer) + json.dumps(data)


def test_provider_advice_in_errors(make_bridge, smtp_server, certs):
    server = smtp_server("starttls")
    b, _ = make_bridge()
    account = {"provider": "gmail", "host": server.host, "port": server.port, "security": "starttls",
               "user": USER, "verify_certificates": False}
    answer = b.test_connection({"account": account, "password": "wrong-password"})
    assert answer["error"]["category"] == "auth_failed"
    assert any("app password" in step.lower() for step in answer["error"]["fix"])
    assert "wrong-password" not in json.dumps(answer)


def test_send_test_goes_to_the_from_address(make_bridge, inbox):
    b, _ = make_bridge()
    ok(b.import_recipients_text({"text": "email,name\na@example.org,Ann\nb@example.org,Bob\n"}))
    data = ok(b.send_test({"account": INBOX, "message": MESSAGE, "index": 2}))
    assert data["to"] == "me@example.com"
    (got,) = inbox.messages()
    assert got.rcpt_tos == ("me@example.com",) and got.parsed()["Subject"] == "Hi Bob"


def test_events_with_hostile_names_arrive_as_data():
    window = FakeWindow()
    b = Bridge(inbox=LocalInbox(), store=EncryptedFileStore())
    b._window = window
    events = [{"type": "email-progress", "campaign": "c", "current": i + 1, "total": 3, "recipient": name,
               "status": "failed", "category": None, "code": None, "error": name, "ts": "t"}
              for i, name in enumerate(EVIL_NAMES)]
    b._deliver_to_window(events)
    (script,) = window.scripts
    prefix, suffix = DISPATCH_JS.split("%s")
    assert script.startswith(prefix) and script.endswith(suffix)
    assert json.loads(script[len(prefix):-len(suffix)]) == events
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed; the JSON round trip above still holds")
    harness = (
        "const out=[];globalThis.window={dispatchEvent:e=>out.push([e.type,e.detail])};"
        "globalThis.CustomEvent=class{constructor(t,o){this.type=t;this.detail=o.detail}};"
        "globalThis.alert=()=>{throw new Error('script ran')};"
        f"eval({json.dumps(script)});process.stdout.write(JSON.stringify(out));"
    )
    proc = subprocess.run([node, "-e", harness], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == [["email-progress", e] for e in events]
    b._shutdown()


def test_pump_queues_until_ready_and_coalesces():
    batches: list[list[dict]] = []
    pump = EventPump(batches.append)
    for i in range(1, 1001):
        pump.put({"type": "email-progress", "campaign": "c", "current": i, "status": "sending"})
        pump.put({"type": "email-progress", "campaign": "c", "current": i, "status": "sent" if i % 2 else "failed"})
    pump.put({"type": "email-progress", "campaign": "c", "current": 1001, "status": "sending"})
    time.sleep(0.2)
    assert batches == []  # the page is not ready yet
    pump.ready()
    assert pump.flush()
    pump.close()
    delivered = [e for batch in batches for e in batch]
    assert len(batches) == 1
    finals = [e for e in delivered if e["status"] != "sending"]
    assert [e["current"] for e in finals] == list(range(1, 1001))
    assert [e["current"] for e in delivered if e["status"] == "sending"] == [1001]


def test_pump_limits_deliveries_per_second():
    batches: list[int] = []
    pump = EventPump(lambda batch: batches.append(len(batch)), interval=0.05)
    pump.ready()
    stop = threading.Event()

    def produce():
        i = 0
        while not stop.is_set():
            i += 1
            pump.put({"type": "email-progress", "campaign": "c", "current": i, "status": "sent"})
            time.sleep(0.0005)

    t = threading.Thread(target=produce)
    t.start()
    time.sleep(1.0)
    stop.set()
    t.join()
    pump.flush()
    pump.close()
    # at most one delivery per 50 ms interval, plus the final flush
    assert len(batches) <= 1.0 / 0.05 + 3
    assert sum(batches) > 200


def test_settings_saved_without_password_and_password_encrypted(make_bridge, tmp_path):
    store = EncryptedFileStore(tmp_path / "secrets.enc")
    b, _ = make_bridge(store=store)
    account = {"provider": "custom", "host": "smtp.example.com", "port": 587, "security": "starttls",
               "user": USER, "from_address": "me@example.com"}
    params = {"account": account, "message": MESSAGE, "remember_settings": True, "remember_password": True,
              "password": PASSWORD}
    short = b.save_settings({**params, "passphrase": "short"})
    assert short["ok"] is False and "passphrase" in short["error"]["message"]
    ok(b.save_settings({**params, "passphrase": "correct horse battery"}))
    text = saved_settings.settings_path().read_text()
    assert PASSWORD not in text and json.loads(text)["account"]["host"] == "smtp.example.com"
    ok(b.save_settings({**params, "message": {**MESSAGE, "unsubscribe": ["mailto:u@example.com"]},
                        "passphrase": "correct horse battery"}))
    assert PASSWORD.encode() not in store.path.read_bytes()
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o600
    fresh, _ = make_bridge(store=store)
    loaded = ok(fresh.load_settings())
    assert loaded["has_saved_password"] and loaded["password_locked"] and loaded["remember_settings"]
    assert loaded["message"]["unsubscribe"] == ["mailto:u@example.com"]
    assert fresh.test_connection({"account": account})["error"]["message"].startswith("the saved password is locked")
    wrong = fresh.test_connection({"account": account, "passphrase": "not it at all"})
    assert "passphrase is wrong" in wrong["error"]["message"]
    assert store.load(f"smtp:{USER}@smtp.example.com", "correct horse battery") == PASSWORD


def test_tampered_password_file_is_refused(tmp_path):
    store = EncryptedFileStore(tmp_path / "s.enc")
    store.save("k", "secret-value", "a long passphrase")
    blob = json.loads(store.path.read_text())
    token = blob["token"]
    blob["token"] = token[:-8] + ("A" if token[-8] != "A" else "B") + token[-7:]
    store.path.write_text(json.dumps(blob))
    with pytest.raises(Exception) as info:
        store.load("k", "a long passphrase")
    assert "was changed" in str(info.value)
    store.path.write_text("garbage")
    with pytest.raises(Exception) as info:
        store.load("k", "a long passphrase")
    assert "damaged" in str(info.value)


def test_first_start_defaults_to_the_local_inbox(make_bridge, inbox):
    b, _ = make_bridge()
    data = ok(b.load_settings())
    assert data["first_start"] and data["account"]["provider"] == "local-inbox"
    assert data["account"]["port"] == inbox.port
    providers = ok(b.app_info())["providers"]
    assert providers[0]["key"] == "local-inbox" and providers[0]["name"] == "Local test inbox"


def test_entry_point_hands_subcommands_to_the_cli(capsys):
    with pytest.raises(SystemExit) as info:
        bridge_mod.main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out.startswith("bulk-mailer ")


def test_forgetting_one_password_keeps_the_others(tmp_path):
    store = EncryptedFileStore(tmp_path / "s.enc")
    store.save("smtp:alice@h", "pw-alice", "a long passphrase")
    store.save("smtp:bob@h", "pw-bob", "a long passphrase")
    with pytest.raises(Exception) as info:
        store.delete("smtp:alice@h")  # needs the passphrase: bob's must survive
    assert "passphrase" in str(info.value)
    store.delete("smtp:alice@h", "a long passphrase")
    assert not store.has("smtp:alice@h") and store.has("smtp:bob@h")
    assert store.load("smtp:bob@h", "a long passphrase") == "pw-bob"
    store.delete("smtp:bob@h")  # the last one goes without a passphrase
    assert not store.path.exists()


def test_unticked_remember_password_only_forgets_on_an_actual_untick(make_bridge, tmp_path):
    store = EncryptedFileStore(tmp_path / "s2.enc")
    b, _ = make_bridge(store=store)
    alice = {"provider": "custom", "host": "h.example", "user": "alice@example.com"}
    bob = {"provider": "custom", "host": "h.example", "user": "bob@example.com"}
    ok(b.save_settings({"account": alice, "remember_settings": True, "remember_password": True,
                        "password": "pw-alice", "passphrase": "a long passphrase"}))
    ok(b.save_settings({"account": alice, "remember_settings": True, "remember_password": True}))
    assert store.has("smtp:alice@example.com@h.example")
    # another account with the box unticked does not wipe alice's password
    ok(b.save_settings({"account": bob, "remember_settings": True, "remember_password": False}))
    ok(b.save_settings({"account": bob, "remember_settings": True, "remember_password": False}))
    assert store.has("smtp:alice@example.com@h.example")


def test_damaged_password_file_does_not_hide_the_settings(make_bridge, tmp_path):
    store = EncryptedFileStore(tmp_path / "s3.enc")
    b, _ = make_bridge(store=store)
    account = {"provider": "custom", "host": "h.example", "user": "me@example.com", "port": 2525}
    ok(b.save_settings({"account": account, "remember_settings": True}))
    store.path.write_text("garbage")
    data = ok(b.load_settings())
    assert data["account"]["port"] == 2525 and data["has_saved_password"] is False
    assert "damaged" in data["password_store_error"]


def test_state_errors_have_their_own_category(make_bridge):
    b, _ = make_bridge()
    answer = b.export_results()
    assert answer["error"]["category"] == "action_unavailable"
    assert b.pause_campaign()["error"]["category"] == "action_unavailable"


@pytest.mark.parametrize("value", ["--1", "²", "1e5", "9" * 40, True, 1.5])
def test_odd_numbers_are_field_errors_not_crashes(make_bridge, value):
    b, _ = make_bridge()
    answer = b.inbox_message({"id": value})
    assert answer["ok"] is False and answer["error"]["category"] == "invalid_settings"
    assert answer["error"]["message"].startswith("id:")


def test_lone_surrogates_are_refused(make_bridge):
    b, _ = make_bridge()
    answer = b.save_settings({"account": {"host": "h\ud800"}})
    assert answer["ok"] is False and "not valid text" in answer["error"]["message"]


class ClosingWindow(FakeWindow):
    def __init__(self, answer: bool) -> None:
        super().__init__()
        self.answer = answer
        self.asked = 0
        self.destroyed = threading.Event()
        self.hidden = False

    def create_confirmation_dialog(self, title: str, message: str) -> bool:
        self.asked += 1
        self.words = message
        return self.answer

    def hide(self) -> None:
        self.hidden = True

    def destroy(self) -> None:
        self.destroyed.set()


@pytest.mark.parametrize("answer", [False, True])
def test_closing_during_a_run_asks_first(make_bridge, inbox, answer):
    b, _ = make_bridge()
    window = ClosingWindow(answer)
    b._window = window
    ok(b.import_recipients_text({"text": "\n".join(f"p{i}@example.org" for i in range(30))}))
    ok(b.start_campaign({"account": INBOX, "message": {**MESSAGE, "subject": "x"}, "delay_ms": 200}))
    assert b._on_closing() is False  # never closes on the GUI thread while sending
    assert window.asked == 1
    assert "stop after the current message" in window.words and "keep sending in the background" in window.words
    if answer:  # stop after the current message, then close
        assert window.destroyed.wait(10)
        assert ok(b.campaign_state())["state"] == "cancelled"
    else:  # keep sending in the background: the window goes, the run goes on, the app ends with it
        time.sleep(0.3)
        assert window.hidden and not window.destroyed.is_set() and ok(b.campaign_state())["state"] == "running"
        assert window.destroyed.wait(30)
        assert ok(b.campaign_state())["state"] == "finished" and len(inbox.messages()) == 30
    assert b._on_closing() is True  # nothing running: close at once


def test_detect_settings_and_log_folder(make_bridge, isolated_home):
    b, _ = make_bridge()
    found = ok(b.detect_settings({"address": "Me <me@gmail.com>"}))["suggestions"]
    assert found[0]["provider"] == "gmail" and found[0]["source"] == "preset"
    assert found[0]["host"] == "smtp.gmail.com" and "Gmail" in found[0]["reason"]
    bad = b.detect_settings({"address": "not an address"})
    assert bad["ok"] is False and bad["error"]["message"].startswith("from:")
    folder = ok(b.open_log_folder())
    assert folder["path"].startswith(str(isolated_home)) and folder["opened"] is False


def test_skip_problem_rows_sends_the_rest_and_reports_them(make_bridge, inbox):
    b, _ = make_bridge()
    ok(b.import_recipients_text({"text": "email,nick\na@example.org,Al\nb@example.org,\nc@example.org,Cy\n"}))
    message = {"subject": "Hi", "body": "{{ nick }}{% if not nick %}{{ missing }}{% endif %}", "format": "text"}
    answer = b.start_campaign({"account": INBOX, "message": message, "delay_ms": 0})
    assert answer["ok"] is False and answer["error"]["category"] == "template_error"
    assert [s["line"] for s in answer["error"]["steps"]] == [3]
    ok(b.start_campaign({"account": INBOX, "message": message, "delay_ms": 0, "skip_problem_rows": True}))
    wait_for(lambda: finished(b))
    assert sorted(m.rcpt_tos[0] for m in inbox.messages()) == ["a@example.org", "c@example.org"]
    rows = ok(b.export_results())["csv"]
    assert "b@example.org,skipped,template_error" in rows and "line 3" in rows


def test_suppression_through_the_bridge(make_bridge, inbox):
    b, _ = make_bridge()
    added = ok(b.suppression_add({"text": "b@example.org, nope\nC@Example.org", "reason": "unsubscribed"}))
    assert added["added"] == 2 and [(i["line"], i["value"]) for i in added["invalid"]] == [(1, "nope")]
    preview = ok(b.import_recipients_text({"text": "a@example.org\nb@example.org\nc@example.org"}))
    assert preview["counts"]["suppressed"] == 2
    assert {s["email"] for s in preview["suppressed"]} == {"b@example.org", "c@example.org"}
    ok(b.start_campaign({"account": INBOX, "message": MESSAGE, "delay_ms": 0}))
    wait_for(lambda: finished(b))
    assert [m.rcpt_tos for m in inbox.messages()] == [("a@example.org",)]
    assert "b@example.org,skipped,,,not sent: suppressed: unsubscribed" in ok(b.export_results())["csv"]
    assert ok(b.suppression_remove({"email": "b@example.org"}))["removed"] is True
    assert ok(b.suppression_list())["count"] == 1


def test_templates_through_the_bridge(make_bridge):
    b, _ = make_bridge()
    message = {"subject": "Hi {{ name }}", "body": "<p>x</p>", "format": "html",
               "unsubscribe": ["https://example.org/u?e={{ email }}"]}
    ok(b.template_save({"name": "Spring ../invite", "message": message}))
    dup = b.template_save({"name": "spring ../INVITE", "message": message})
    assert dup["ok"] is False
    ok(b.template_save({"name": "spring ../INVITE", "message": {**message, "subject": "v2"}, "overwrite": True}))
    assert [t["name"] for t in ok(b.template_list())["templates"]] == ["spring ../INVITE"]
    loaded = ok(b.template_load({"name": "Spring ../invite"}))
    assert loaded["message"]["subject"] == "v2" and loaded["message"]["unsubscribe"] == message["unsubscribe"]
    exported = ok(b.template_export({"name": "Spring ../invite"}))
    ok(b.template_delete({"name": "Spring ../invite"}))
    assert ok(b.template_list())["templates"] == []
    import base64 as b64

    imported = ok(b.template_import_data({"data_base64": b64.b64encode(exported["json"].encode()).decode()}))
    assert imported["template"]["subject"] == "v2"
    bad = b.template_import_data({"data_base64": b64.b64encode(b"not json").decode()})
    assert bad["ok"] is False and "Traceback" not in json.dumps(bad)
    ok(b.template_rename({"old": "spring ../INVITE", "new": "Autumn"}))
    assert [t["name"] for t in ok(b.template_list())["templates"]] == ["Autumn"]


def test_name_column_mapping(make_bridge):
    b, _ = make_bridge()
    preview = ok(b.import_recipients_text({"text": "email,First Name,Last Name,Nick\na@example.org,Ann,Lee,Annie\n"}))
    assert preview["name_column"] == "First Name + Last Name"
    assert preview["rows"][0]["fields"]["name"] == "Ann Lee"
    preview = ok(b.set_name_column({"column": "Nick"}))
    assert preview["name_column"] == "Nick" and preview["rows"][0]["fields"]["name"] == "Annie"
    preview = ok(b.set_email_column({"column": "email"}))
    assert preview["name_column"] == "Nick"  # the name choice is kept
    bad = b.set_name_column({"column": "Nope"})
    assert bad["ok"] is False and "Nope" in bad["error"]["message"]


def test_attachments_and_unsubscribe_through_the_bridge(make_bridge, inbox):
    import base64 as b64

    b, _ = make_bridge()
    ok(b.import_recipients_text({"text": "email,name\na@example.org,Ann\n"}))
    listed = ok(b.add_attachment_data({"name": "../../Plan été.pdf", "data_base64": b64.b64encode(b"%PDF x").decode()}))
    (att,) = listed["attachments"]
    assert att["filename"] == "Plan été.pdf" and att["content_type"] == "application/pdf" and att["size"] == 6
    message = {**MESSAGE, "unsubscribe": "https://example.org/u?e={{ email }} mailto:u@example.org"}
    preview = ok(b.preview_message({"account": INBOX, "message": message, "index": 1}))
    assert preview["attachments"] == [{"filename": "Plan été.pdf", "content_type": "application/pdf", "size": 6}]
    headers = dict(preview["headers"])
    assert headers["List-Unsubscribe"] == "<https://example.org/u?e=a%40example.org>, <mailto:u@example.org>"
    ok(b.start_campaign({"account": INBOX, "message": message, "delay_ms": 0}))
    wait_for(lambda: finished(b))
    (got,) = inbox.messages()
    assert [a.get_filename() for a in got.parsed().iter_attachments()] == ["Plan été.pdf"]
    assert ok(b.remove_attachment({"id": att["id"]}))["attachments"] == []
    bad = b.preview_message({"account": INBOX, "message": {**MESSAGE, "unsubscribe": "http://x.example/u"}})
    assert bad["ok"] is False and "https" in bad["error"]["message"]
    assert b.choose_attachment_folder()["error"]["category"] == "action_unavailable"  # browser mode


def test_per_recipient_files_without_a_folder_are_refused_and_preview_skips_suppressed(make_bridge, inbox):
    b, _ = make_bridge()
    ok(b.suppression_add({"text": "a@example.org"}))
    ok(b.import_recipients_text({"text": "email,name,file\na@example.org,Ann,x.pdf\nb@example.org,Bob,y.pdf\n"}))
    preview = ok(b.preview_message({"account": INBOX, "message": MESSAGE, "index": 1}))
    assert preview["total"] == 1 and "b@example.org" in preview["to"]
    ok(b.set_attachment_column({"column": "file"}))
    answer = b.start_campaign({"account": INBOX, "message": MESSAGE, "delay_ms": 0})
    assert answer["ok"] is False and "folder" in answer["error"]["message"]
    assert inbox.messages() == []


def test_resume_and_resend_from_the_history(make_bridge, inbox):
    from backend.journal import Journal

    b, _ = make_bridge()
    ok(b.import_recipients_text({"text": "\n".join(f"p{i}@example.org" for i in range(6))}))
    started = ok(b.start_campaign({"account": INBOX, "message": MESSAGE, "delay_ms": 150}))
    wait_for(lambda: len(inbox.messages()) >= 2)
    ok(b.cancel_campaign())
    wait_for(lambda: finished(b))
    cid = started["campaign"]
    sent_first = len(inbox.messages())
    info = ok(b.campaign_details({"id": cid}))
    assert info["campaign"]["state"] == "paused"
    assert [r["status"] for r in info["rows"]].count("pending") == 6 - sent_first
    # pretend the app died while sending to one of the pending ones
    journal = Journal()
    journal.mark_sending(cid, sent_first)
    journal.set_state(cid, "interrupted", "the app stopped")
    journal.mark_interrupted(cid, "the app stopped")
    asked = b.resume_past_campaign({"id": cid, "account": INBOX})
    assert asked["ok"] is False and asked["error"]["steps"][0]["message"] == f"p{sent_first}@example.org"
    ok(b.resume_past_campaign({"id": cid, "uncertain": "skip", "account": INBOX}))
    wait_for(lambda: finished(b))
    delivered = Counter(m.rcpt_tos[0] for m in inbox.messages())
    assert all(n == 1 for n in delivered.values()) and len(delivered) == 5  # the uncertain one skipped
    rows = ok(b.campaign_details({"id": cid}))["rows"]
    assert Counter(r["status"] for r in rows) == {"sent": 5, "skipped": 1}
    history = ok(b.campaign_history())["campaigns"]
    assert history[0]["id"] == cid and history[0]["state"] == "finished"
    nothing = b.resend_campaign({"id": cid, "account": INBOX})
    assert nothing["ok"] is False and "nobody" in nothing["error"]["message"]


def test_the_pages_sending_limits_are_used_and_waits_announced(make_bridge, inbox):
    b, events = make_bridge()
    ok(b.import_recipients_text({"text": "a@example.org\nb@example.org\n"}))
    bad = b.start_campaign({"account": INBOX, "message": MESSAGE, "delay_ms": 0, "limits": {"per_minute": 2.5}})
    assert bad["ok"] is False and "limits.per_minute" in bad["error"]["message"]
    started = ok(b.start_campaign({"account": INBOX, "message": MESSAGE, "delay_ms": 0,
                                   "limits": {"per_second": 0.5, "per_day": ""}}))
    wait_for(lambda: finished(b))
    b._pump.flush()
    (wait,) = [e for e in events if e["type"] == "campaign-wait"]
    assert wait["campaign"] == started["campaign"] and wait["reason"] == "sending limit: 0.5 a second"
    assert 1 <= wait["seconds"] <= 2
    stamps = [dt.datetime.fromisoformat(e["ts"]) for e in events
              if e["type"] == "email-progress" and e["status"] == "sent"]
    assert len(stamps) == 2 and (stamps[1] - stamps[0]).total_seconds() >= 1.5
    # The campaign keeps its limits: a resumed or follow-up run uses them too.
    from backend.journal import Journal
    assert Journal().spec(started["campaign"])["limits"] == {
        "per_second": 0.5, "per_minute": None, "per_hour": None, "per_day": None}


def test_a_quota_stopped_campaign_waits_for_its_time_unless_told(make_bridge, inbox):
    from backend.journal import Journal

    b, _ = make_bridge()
    ok(b.import_recipients_text({"text": "a@example.org\nb@example.org\n"}))
    started = ok(b.start_campaign({"account": INBOX, "message": MESSAGE, "delay_ms": 0,
                                   "limits": {"per_day": 1}}))
    wait_for(lambda: finished(b))
    cid = started["campaign"]
    (past,) = ok(b.campaign_history())["campaigns"]
    assert past["state"] == "paused" and past["resume_after"] and past["counts"] == {"sent": 1, "pending": 1}
    early = b.resume_past_campaign({"id": cid, "account": INBOX})
    assert early["ok"] is False and "can continue after" in early["error"]["message"]
    assert len(inbox.messages()) == 1
    # Lift our own day's limit for the retry: the journal's limits are the campaign's own.
    journal = Journal()
    spec = journal.spec(cid)
    assert spec["limits"]["per_day"] == 1
    ok(b.resume_past_campaign({"id": cid, "account": INBOX, "now": True}))
    wait_for(lambda: finished(b))
    assert len(inbox.messages()) == 1  # the day's limit of 1 still holds across runs: not sent
    assert ok(b.campaign_history())["campaigns"][0]["state"] == "paused"


def test_a_campaign_with_files_added_in_the_window_resumes_after_a_restart(make_bridge, inbox, isolated_home):
    import base64 as b64

    b, _ = make_bridge()
    ok(b.import_recipients_text({"text": "\n".join(f"p{i}@example.org" for i in range(4))}))
    ok(b.add_attachment_data({"name": "Plan.pdf", "data_base64": b64.b64encode(b"%PDF kept").decode()}))
    started = ok(b.start_campaign({"account": INBOX, "message": MESSAGE, "delay_ms": 300}))
    wait_for(lambda: len(inbox.messages()) >= 1)
    ok(b.cancel_campaign())
    wait_for(lambda: finished(b))
    cid = started["campaign"]
    kept = list((isolated_home / "data" / "campaign-files" / cid).rglob("Plan.pdf"))
    assert len(kept) == 1 and kept[0].read_bytes() == b"%PDF kept"
    assert kept[0].stat().st_mode & 0o777 == 0o600 and kept[0].parent.stat().st_mode & 0o777 == 0o700

    # A new start of the app: nothing attached in memory any more.
    again, _ = make_bridge()
    assert ok(again.list_attachments())["attachments"] == []
    ok(again.resume_past_campaign({"id": cid, "account": INBOX, "uncertain": "skip"}))
    wait_for(lambda: finished(again))
    got = inbox.messages()
    assert sorted(m.rcpt_tos[0] for m in got) == [f"p{i}@example.org" for i in range(4)]
    for m in got:
        (attachment,) = m.parsed().iter_attachments()
        assert attachment.get_filename() == "Plan.pdf" and attachment.get_content() == b"%PDF kept"


class DialogWindow(FakeWindow):
    """A window whose native dialogs answer with prepared paths (None: cancelled)."""

    def __init__(self, answers: list) -> None:
        super().__init__()
        self.answers = answers
        self.asked: list[int] = []

    def create_file_dialog(self, kind, **options):
        self.asked.append(int(kind))
        return self.answers.pop(0)


def test_native_dialogs_are_the_only_source_of_paths(make_bridge, tmp_path):
    people = tmp_path / "people.csv"
    people.write_text("email,name\na@example.org,Ann\n")
    attach = tmp_path / "plan.pdf"
    attach.write_bytes(b"%PDF")
    out = tmp_path / "results.csv"
    b, _ = make_bridge(native_dialogs=True)
    b._window = DialogWindow([None, (str(people),), [str(attach)], (str(tmp_path),), None, str(out)])
    assert ok(b.choose_recipients_file()) is None  # cancelled
    assert ok(b.choose_recipients_file())["counts"]["valid"] == 1
    assert [a["filename"] for a in ok(b.choose_attachments())["attachments"]] == ["plan.pdf"]
    assert ok(b.choose_attachment_folder())["folder"] == str(tmp_path)
    assert ok(b.template_import()) is None
    b._window.answers = []
    assert b.export_results()["error"]["category"] == "action_unavailable"  # no run yet


def test_a_campaign_on_several_connections_from_the_window(make_bridge, smtp_server):
    server = smtp_server("plain", auth=False)
    b, events = make_bridge()
    info = ok(b.app_info())
    by_key = {p["key"]: p["connections"] for p in info["providers"]}
    assert by_key["gmail"] == by_key["outlook"] == by_key["local-inbox"] == 1
    assert by_key["amazon-ses"] == by_key["sendgrid"] == by_key["postmark"] == 4
    emails = [f"p{i}@example.org" for i in range(40)]
    ok(b.import_recipients_text({"text": "\n".join(emails)}))
    account = {"provider": None, "host": server.host, "port": server.port, "security": "none",
               "from_address": "me@example.com"}
    answer = b.start_campaign({"account": account, "message": MESSAGE, "delay_ms": 0, "connections": 99})
    assert not answer["ok"] and answer["error"]["category"] == "invalid_settings"
    ok(b.start_campaign({"account": account, "message": MESSAGE, "delay_ms": 0, "connections": 3}))
    wait_for(lambda: finished(b))
    b._pump.flush()
    assert server.sessions == 3
    assert sorted(m.rcpt_tos[0] for m in server.messages) == sorted(emails)
    state = ok(b.campaign_state())
    assert state["counts"] == {"sent": 40} and state["summary"]["sent"] == 40
    finals = [e["current"] for e in events if e["type"] == "email-progress" and e["status"] == "sent"]
    assert sorted(finals) == list(range(1, 41))


def test_the_pages_retry_settings_are_used_and_kept(make_bridge, inbox):
    from backend.journal import Journal

    b, _ = make_bridge()
    ok(b.import_recipients_text({"text": "a@example.org\n"}))
    bad = b.start_campaign({"account": INBOX, "message": MESSAGE, "delay_ms": 0,
                            "retry": {"base_s": 100, "cap_s": 10}})
    assert bad["ok"] is False and "retry.cap_s" in bad["error"]["message"]
    bad = b.start_campaign({"account": INBOX, "message": MESSAGE, "delay_ms": 0, "retry": {"max_attempts": 0}})
    assert bad["ok"] is False and "retry.max_attempts" in bad["error"]["message"]
    started = ok(b.start_campaign({"account": INBOX, "message": MESSAGE, "delay_ms": 0, "retry": {
        "base_s": 30, "cap_s": 600, "max_attempts": 3, "max_age_h": 2, "max_failures_in_a_row": 0}}))
    wait_for(lambda: finished(b))
    assert Journal().spec(started["campaign"])["retry"] == {
        "base_s": 30.0, "cap_s": 600.0, "max_attempts": 3, "max_age_s": 7200.0, "max_failures_in_a_row": 0}


def test_resuming_with_nobody_left_marks_the_campaign_finished(make_bridge, inbox):
    from backend.campaign import ResultRow
    from backend.journal import Journal
    from backend.recipients import Recipient

    b, _ = make_bridge()
    journal = Journal()
    journal.create("c-left", account="x", spec={"message": {"subject": "s", "html": None, "text": "t",
                                                            "from": "me@example.com"}},
                   recipients=[Recipient("a@example.org", {}, 2), Recipient("b@example.org", {}, 3)])
    journal.record("c-left", sending=0)
    journal.mark_outcome("c-left", 0, ResultRow("a@example.org", "sent", None, 250, None, 1, "t", "<a>"))
    journal.record("c-left", sending=1)
    journal.mark_interrupted("c-left", "the app stopped")
    answer = b.resume_past_campaign({"id": "c-left", "uncertain": "skip", "account": INBOX})
    assert answer["ok"] is False and "marked finished" in answer["error"]["message"]
    (past,) = ok(b.campaign_history())["campaigns"]
    assert past["state"] == "finished" and past["counts"] == {"sent": 1, "skipped": 1}
    assert inbox.messages() == []


def test_deeply_nested_arguments_get_structured_answers(make_bridge):
    # pywebview hands js_api methods already-parsed objects; however deep they are, every
    # method answers in its own shape (nothing walks them recursively).
    import inspect
    import re

    deep: list = []
    for _ in range(100_000):
        deep = [deep]
    getter = r'\.(?:str|obj|int|bool|choice|number|column|list|_b64)\((?:p, )?"(\w+)"'
    fields = set(re.findall(getter, inspect.getsource(bridge_mod)))  # every field name a method reads
    assert {"account", "message", "text", "data_base64", "name"} <= fields
    b, _ = make_bridge()
    for name in sorted(EXPECTED_API - {"open_log_folder", "google_sign_in"}):  # these open a browser
        for params in (deep, {field: deep for field in fields}):
            answer = getattr(b, name)(params)
            assert isinstance(answer["ok"], bool), name
            if not answer["ok"]:
                assert set(answer["error"]) >= {"category", "title", "message", "cause", "fix"}, name
                assert answer["error"]["category"] != "internal_error", (name, answer)
