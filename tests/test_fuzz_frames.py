"""Property-based fuzzing of WebSocket frames: ds/kefu ``/ws`` and the waiter protocol.

Hypothesis generates frames for every ds/kefu action and every waiter-protocol type,
valid-ish (real tokens, ids and uuids) and garbage (wrong types, missing fields, huge
numbers, unicode, nested junk, non-JSON, binary, oversized), against ONE live server for
the module. Each example opens a fresh socket (signed in or not), sends one frame, then
a sync frame, and checks:

- the frame gets exactly one answer (ds/kefu: one ``success`` reply; waiter: a reply or
  an ``error`` / ``not_connect`` frame first), echoing ``op_id`` as the docs say;
- the socket still answers afterwards (the sync frame, then a WebSocket ping);
- a refused frame changes nothing stored (conversations, messages, visitors);
- the server stays healthy (``/healthz``).

``KEFU_FUZZ_EXAMPLES`` sets the examples per property (default 150).
"""

import contextlib
import json
import os
import threading
import uuid

import pytest
import requests
import websocket
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from kefu.db import make_database
from tests.fuzz_strategies import (
    DS_FRAMES,
    WAITER_FRAMES,
    WAITER_USER_FRAMES,
    Ref,
    expected_op_id,
    resolve,
)
from tests.support import Server, retire

FUZZ = settings(
    max_examples=int(os.environ.get("KEFU_FUZZ_EXAMPLES", "150")),
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
SYNC = f"sync-{uuid.uuid4().hex}"


# -- the live server and its clients ----------------------------------------------------


class Drain:
    """A signed-in socket kept open (an agent online, a user connected) whose pushes are
    read and dropped, so the server never sees it as a slow client."""

    def __init__(self, url: str, first: dict):
        self.ws = websocket.create_connection(url, timeout=10)
        self.ws.send(json.dumps(first))
        self.first = json.loads(self.ws.recv())
        self.ws.settimeout(None)
        threading.Thread(target=self._drain, daemon=True).start()

    def _drain(self):
        with contextlib.suppress(Exception):
            while True:
                self.ws.recv()


class Live:
    def __init__(self, srv: Server):
        self.srv = srv
        self.db = make_database(srv.env["KEFU_DATABASE_URL"], pool_size=1)
        agent = srv.create_agent("fuzz-agent", max_concurrent=1000)
        user, wuser = srv.host_jwt("fuzz-user", "Fuzz"), srv.host_jwt("fuzz-wuser", "Fuzz W")
        kefu = agent["kefu_id"]
        self.ctx = {"user_token": user, "bearer_user": f"Bearer {user}", "kefu": kefu}
        self.ctx |= {"waiter_user_token": wuser, "agent_token": agent["token"]}
        self.ctx |= {"kefu_str": str(kefu), "agent_uuid": agent["uuid"]}
        ws = f"ws://{srv.base}"
        # The agent online (on ds/kefu, so waiter sign-ins kick nothing out), a visitor.
        self.keep = [Drain(f"{ws}/ws", {"action": "login", "data": {"token": agent["token"]}})]
        visitor = {"visitor_id": "fuzz-visitor", "kefu_id": kefu, "content": "hi"}
        self.keep.append(
            Drain(f"{ws}/ws", {"action": "kefu_message_visitor_send", "data": visitor})
        )
        probe = Drain(f"{ws}/v1/ws/connect/user", {"type": "auth", "payload": {"token": wuser}})
        self.ctx["user_uuid"], self.ctx["user_id"] = (
            probe.first["payload"]["uuid"],
            probe.first["payload"]["id"],
        )
        probe.ws.close()

    def refresh(self) -> None:
        """Open conversations for both users again (a fuzzed frame may have ended them)."""
        conv = self.srv.get("/api/kefu/message/getConversation", self.ctx["user_token"]).json()
        self.ctx["conv"], self.ctx["conv_str"] = conv["data"]["id"], str(conv["data"]["id"])
        self.srv.get("/api/kefu/message/getConversation", self.ctx["waiter_user_token"])

    def snapshot(self):
        """What is stored, read on one connection kept for the module (autocommit, so
        each read sees the latest commit): a new one per snapshot cost 50 ms on MariaDB,
        two per example, and was most of this module's time there."""
        return tuple(
            [tuple(row) for row in self.db.execute_sql(sql).fetchall()]
            for sql in (
                "SELECT id, status, kefu_id, user_id, visitor_id, unread_count,"
                " kefu_unread_count, last_seq, rating, queued_at FROM conversation ORDER BY id",
                "SELECT id, is_read, read_at FROM message ORDER BY id",
                "SELECT id FROM visitor ORDER BY id",
            )
        )

    def healthy(self) -> bool:
        return requests.get(self.srv.url("/healthz"), timeout=5).json()["ok"]


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    many = 1000000  # limits out of the way: every frame must reach its handler
    limits = {
        "ws_rate_per_second": many,
        "ws_rate_burst": many,
        "visitor_messages_per_minute": many,
    }
    limits |= {"ws_login_timeout_seconds": 3600, "max_connections_per_identity": many}
    srv = Server(tmp_path_factory.mktemp("fuzz"), **limits).start()
    try:
        live = Live(srv)
        yield live
        live.db.close()  # back to its pool, which close_all then closes
        live.db.close_all()
    finally:
        retire(srv)


def exchange(live, path: str, sign_in: dict | None, generated, sync: dict, synced):
    """On a fresh socket (signed in first if ``sign_in``): send the generated frame, then
    ``sync``; return (what was sent, the frames before the sync's answer, the snapshot
    before). Afterwards the socket must still answer a WebSocket ping, and the server
    its health check."""
    ws = websocket.create_connection(f"ws://{live.srv.base}{path}", timeout=10)
    try:
        if sign_in:
            ws.send(json.dumps(resolve(sign_in, live.ctx)))
            exchange_sync(ws, sync, synced)  # the sign-in reply and what it pushes here
        before = live.snapshot()
        kind, value = generated
        raw = json.dumps(resolve(value, live.ctx)) if kind in {"obj", "bytes"} else value
        raw = raw.encode() if kind == "bytes" else raw
        ws.send_binary(raw) if isinstance(raw, bytes) else ws.send(raw)
        seen = exchange_sync(ws, sync, synced)
        ws.ping(b"fuzz")
        while ws.recv_data(control_frame=True)[0] != websocket.ABNF.OPCODE_PONG:
            pass
    finally:
        ws.close(timeout=1)
    assert live.healthy()
    return raw, seen, before


def exchange_sync(ws, sync: dict, synced) -> list[dict]:
    ws.send(json.dumps(sync))
    seen = []
    while not seen or not synced(seen[-1]):
        seen.append(json.loads(ws.recv()))
    return seen[:-1]


def refused_cleanly(live, raw, before, answer: str) -> None:
    assert answer != "Internal server error", f"{raw!r:.300}: {answer}"
    assert live.snapshot() == before, f"refused but stored: {raw!r:.300} ({answer})"


@pytest.mark.parametrize("who", [None, "user_token", "agent_token"])
@FUZZ
@given(generated=DS_FRAMES)
def test_ds_kefu_frames(live, who, generated):
    live.refresh()
    login = {"action": "login", "data": {"token": Ref(who)}} if who else None
    op = f"{SYNC}-ds"
    raw, seen, before = exchange(
        live,
        "/ws",
        login,
        generated,
        {"action": "ping", "op_id": op},
        lambda f: f.get("op_id") == op and f.get("message") == "pong",
    )
    answers = [f for f in seen if f.get("type") != "push_message"]
    assert len(answers) == 1, f"{raw!r:.300} got {seen}"
    reply = answers[0]
    assert isinstance(reply.get("success"), bool), reply
    assert reply["op_id"] == expected_op_id(raw), (raw, reply)
    event(f"{'accepted' if reply['success'] else 'refused'}: {reply['message'][:40]}")
    if not reply["success"]:
        refused_cleanly(live, raw, before, reply["message"])


@pytest.mark.parametrize(
    ("role", "token"),
    [("user", None), ("user", "waiter_user_token"), ("waiter", None), ("waiter", "agent_token")],
)
@FUZZ
@given(data=st.data())
def test_waiter_frames(live, role, token, data):
    generated = data.draw(WAITER_USER_FRAMES if role == "user" else WAITER_FRAMES, "frame")
    live.refresh()
    auth = {"type": "auth", "payload": {"token": Ref(token)}} if token else None
    op = f"{SYNC}-waiter"
    raw, seen, before = exchange(
        live,
        f"/v1/ws/connect/{role}",
        auth,
        generated,
        {"type": "fuzz_sync", "op_id": op},
        lambda f: f.get("op_id") == op and f.get("type") == "error",
    )
    assert seen, f"no answer to {raw!r:.300}"
    first, payload = seen[0], seen[0].get("payload")
    assert first.get("op_id") == expected_op_id(raw), (raw, seen)
    event(f"{first['type']}: {isinstance(payload, dict) and payload.get('message')}"[:60])
    if first["type"] in {"error", "not_connect"}:
        assert len(seen) == 1, f"refused, yet pushed: {seen}"
        refused_cleanly(live, raw, before, payload["message"])


# -- odd input that once got no answer or "Internal server error" (fixed) -------------

SURROGATE = "Frame contains invalid Unicode (a lone surrogate)"


@pytest.mark.parametrize(
    ("path", "raw", "message"),
    [
        ("/ws", '{"action": "ping", "op_id": "\\ud800"}', SURROGATE),
        ("/ws", '{"action": "\\ud800"}', SURROGATE),
        ("/v1/ws/connect/user", '{"type": "connect", "op_id": "\\udfff"}', SURROGATE),
        ("/v1/ws/connect/waiter", '{"type": "x\\ud800"}', SURROGATE),
        ("/ws", '{"action": "login", "data": {"token": "\\ud800"}}', SURROGATE),
        (
            "/ws",
            '{"action": "kefu_message_visitor_send", "data": '
            '{"visitor_id": "v\\ud800", "kefu_id": 1, "content": "x"}}',
            SURROGATE,
        ),
        ("/v1/ws/connect/user", '{"type": "auth", "payload": {"token": "\\udfff"}}', SURROGATE),
        ("/ws", "[" * 30000 + "]" * 30000, "Frame is nested too deeply"),
    ],
)
def test_odd_input_gets_a_clear_answer(live, path, raw, message):
    ws = websocket.create_connection(f"ws://{live.srv.base}{path}", timeout=3)
    try:
        ws.send(raw)
        reply = json.loads(ws.recv())
    except websocket.WebSocketTimeoutException:
        raise AssertionError("no answer") from None
    finally:
        ws.close(timeout=1)
    text = reply.get("message") or (reply.get("payload") or {}).get("message")
    assert text == message, reply
    assert reply.get("op_id") is None  # nothing unencodable is echoed
