"""Every js_api method fed arbitrary JSON (hypothesis), as a hostile page could send it.

The world is set up so that a careless method could do harm: a recording SMTP server on
127.0.0.1 is the saved account (password in the encrypted store, passphrase entered), a
campaign to it is in the journal, recipients are imported, a template, an attachment and a
suppressed address exist. Then each method gets random JSON values, random objects built from
the parameter names the bridge reads (and the ids that exist), and random extra arguments.
Every answer must be {ok, data} or a structured error; no unexpected exception (category
internal_error) and no traceback text; a refused call changes no file (under
BULK_MAILER_HOME or the working folder); methods that only read change no file whatever
they answer; and the account's server never sees a connection.
"""

from __future__ import annotations

import base64
import hashlib
import inspect
import json
import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import bridge as bridge_mod
from backend.credentials import EncryptedFileStore
from backend.inbox import LocalInbox
from bridge import Bridge
from tests.conftest import offline_detect
from tests.servers import PASSWORD, USER
from tests.test_bridge import EXPECTED_API, finished, ok, wait_for

# Methods that may write files when the call is valid; every other method only reads.
WRITERS = {
    "save_settings", "forget_password", "suppression_add", "suppression_remove", "template_save",
    "template_rename", "template_delete", "template_import", "template_import_data", "start_campaign",
    "resume_past_campaign", "resend_campaign",
}
# The parameter names the bridge reads (p.str("subject"), p.obj("account"), ...), found in its source.
_SOURCE = Path(bridge_mod.__file__).read_text()
KEYS = sorted({key for pair in re.findall(r'\.(?:str|int|bool|choice|obj|column|_get)\(\s*"(\w+)"|_b64\(p,\s*"(\w+)"',
                                          _SOURCE) for key in pair if key})
MAX_EXAMPLES = 40


def json_values(pool: list[str]) -> st.SearchStrategy:
    scalars = (st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
               | st.text(max_size=30) | st.sampled_from(pool))
    return st.recursive(
        scalars,
        lambda inner: st.lists(inner, max_size=4)
        | st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=8), inner, max_size=5),
        max_leaves=16,
    )


ACCOUNT_KEYS = ["provider", "host", "port", "security", "user", "from_address", "verify_certificates",
                "allow_plaintext_auth", "timeout", "region"]
MESSAGE_KEYS = ["subject", "body", "format", "unsubscribe", "delay_ms"]


def method_keys(name: str) -> list[str]:
    """The names one method reads: in its own body, and through the helpers it calls."""
    source = inspect.getsource(getattr(Bridge, name).__wrapped__)
    keys = {k for pair in re.findall(r'p\.(?:str|int|bool|choice|obj|column)\(\s*"(\w+)"|_b64\(p,\s*"(\w+)"',
                                     source) for k in pair if k}
    if re.search(r"_account\(p|_settings_from_spec\(p|_from_address\(p", source):
        keys |= {"account", "password", "passphrase", "from_address"}
    if re.search(r"_draft\(p|_template_from\(", source):
        keys |= {"message", "delay_ms"}
    return sorted(keys)


def arguments(name: str, pool: list[str]) -> st.SearchStrategy:
    """What the page could pass: mostly one object of the method's own parameter names with
    random values (account and message objects of their own names), sometimes any JSON value,
    nothing, or several arguments."""
    value = json_values(pool)
    nested = {"account": ACCOUNT_KEYS, "message": MESSAGE_KEYS}
    fields = {key: st.one_of(st.fixed_dictionaries({}, optional={k: value for k in nested[key]}), value)
              if key in nested else value for key in method_keys(name)}
    obj = st.fixed_dictionaries({}, optional=fields) if fields else st.dictionaries(st.sampled_from(KEYS), value)
    one = st.one_of(obj, obj, obj, value)
    single = one.map(lambda v: [v])
    return st.one_of(single, single, single, st.lists(one, max_size=3))


def snapshot(*roots: Path) -> dict[str, str]:
    """Every file's content hash. SQLite's -shm index is left out: reads update it, it holds no data."""
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest()
            for root in roots for p in sorted(root.rglob("*")) if p.is_file() and not p.name.endswith("-shm")}


def check_answer(name: str, answer: object) -> None:
    assert isinstance(answer, dict) and set(answer) in ({"ok", "data"}, {"ok", "error"}), (name, answer)
    text = json.dumps(answer)  # what pywebview hands the page must be JSON
    assert "Traceback" not in text and 'File "' not in text, (name, text[:500])
    if not answer["ok"]:
        error = answer["error"]
        assert {"category", "title", "message", "cause", "fix"} <= set(error), (name, error)
        assert isinstance(error["message"], str) and error["message"] and isinstance(error["fix"], list)
        assert error["category"] != "internal_error", (name, error)


@pytest.fixture
def world(tmp_path, isolated_home, smtp_server, monkeypatch):
    server = smtp_server("starttls")
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    inbox = LocalInbox()
    b = Bridge(inbox=inbox, deliver=lambda batch: None, detector=offline_detect, store=EncryptedFileStore())
    b._pump.ready()
    account = {"provider": "custom", "host": server.host, "port": server.port, "security": "starttls",
               "user": USER, "from_address": f"Me <{USER}>", "verify_certificates": False}
    message = {"subject": "Hi {{ name }}", "body": "<p>Hello {{ name }}</p>", "format": "html"}
    ok(b.save_settings({"account": account, "message": message, "remember_settings": True,
                        "remember_password": True, "password": PASSWORD, "passphrase": "a long passphrase"}))
    ok(b.import_recipients_text({"text": "email,name\na@example.org,Ann\nb@example.org,Bob\n"}))
    cid = ok(b.start_campaign({"account": account, "message": message, "delay_ms": 0}))["campaign"]
    wait_for(lambda: finished(b))
    assert ok(b.campaign_state())["state"] == "finished" and len(server.messages) == 2
    ok(b.template_save({"name": "Saved", "message": message}))
    ok(b.suppression_add({"text": "blocked@example.org"}))
    attachment = ok(b.add_attachment_data({"name": "a.txt", "data_base64": base64.b64encode(b"hi").decode()}))
    ok(b.campaign_history())  # the journal is open from here on
    pool = [cid, "Saved", attachment["attachments"][0]["id"], "blocked@example.org", "a@example.org",
            "custom", "gmail", "starttls", "ssl", "none", "html", "text", "email", "name", "resend", "skip",
            "ask", USER, "x.csv", base64.b64encode(b"email\nc@example.org\n").decode()]
    yield b, server, inbox, pool, [isolated_home, cwd]
    b._shutdown()
    inbox.stop()


def test_the_parameter_names_were_found():
    assert {"account", "message", "password", "passphrase", "subject", "body", "host", "port", "id", "name",
            "text", "data_base64", "column", "index", "delay_ms"} <= set(KEYS)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(EXPECTED_API))
def test_arbitrary_json_gets_a_structured_answer_and_no_side_effect(world, name):
    b, server, inbox, pool, roots = world
    method = getattr(b, name)
    connections = server.handler.connections
    received = len(inbox.messages())

    @settings(max_examples=MAX_EXAMPLES, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(args=arguments(name, pool))
    def call(args: list) -> None:
        before = snapshot(*roots)
        try:
            answer = method(*args)
        except Exception as exc:  # pragma: no cover - the failure itself is the report
            pytest.fail(f"{name}{tuple(args)!r} raised {exc!r}")
        run = b._app.run
        if run is not None and run.thread is not None:
            run.thread.join(30)  # a started campaign finishes before the files are compared
        check_answer(name, answer)
        if not answer["ok"] or name not in WRITERS:
            assert snapshot(*roots) == before, f"{name}{tuple(args)!r} changed files and answered {answer}"
        assert server.handler.connections == connections, f"{name}{tuple(args)!r} connected to the account"

    call()
    assert len(inbox.messages()) == received  # nothing went to the local test inbox either
