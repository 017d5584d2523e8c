"""Every malformed, unknown, unauthorised or out-of-order frame gets an ``error`` frame
with a precise message; the socket stays usable and nothing stored changes."""

import time

import pytest

from tests.support import Server, retire
from tests.test_waiter_support import USER_PATH, frame, rows, serving, user

STATE = (
    "SELECT count(*) FROM message",
    "SELECT id, status, kefu_id, rating FROM conversation ORDER BY id",
    "SELECT id, current_concurrent, accepting, max_concurrent FROM agent ORDER BY id",
)


def stored(server):
    """Everything a bad frame could have changed."""
    return [rows(server, query) for query in STATE]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """This module sends many frames on one socket: a frame budget that never runs out."""
    srv = Server(tmp_path_factory.mktemp("srv"), ws_rate_per_second=1000, ws_rate_burst=1000)
    yield srv.start()
    retire(srv)


@pytest.fixture(scope="module")
def desk(server):
    _, w, u = serving(server, "stored")
    stranger = user(server)  # signed in, never connected
    yield {"w": w, "u": u, "stranger": stranger}


def err(message, op_id=None, to=None):
    return frame("error", {"message": message}, op_id, None, to)


USER_CASES = [
    ("not json", "Invalid JSON"),
    ("[1, 2]", "Frame must be a JSON object"),
    ({"payload": {}}, "type is required"),
    ({"type": 7}, "type must be a string"),
    ({"type": ""}, "type is required"),
    ({"type": "fly"}, "Unknown type: fly"),
    ({"type": "ready"}, "Unknown type: ready"),  # a waiter's frame on the user endpoint
    ({"type": "message_text"}, "text is required"),
    ({"type": "message_text", "payload": {"text": "  "}}, "text is required"),
    ({"type": "message_text", "payload": {"text": 5}}, "text must be a string"),
    ({"type": "message_text", "payload": "hi"}, "payload must be an object"),
    (
        {"type": "message_text", "payload": {"text": "x" * 5001}},
        "text is too long (max 5000 characters)",
    ),
    ({"type": "message_image", "payload": {}}, "image is required"),
    (
        {"type": "message_image", "payload": {"image": "javascript:alert(1)"}},
        "image must be an http(s) URL or an upload's path (/uploads/<name>)",
    ),
    (
        {"type": "message_image", "payload": {"image": "//evil.example/x.png"}},
        "image must be an http(s) URL or an upload's path (/uploads/<name>)",
    ),
    (
        {"type": "message_text", "payload": {"text": "x"}, "op_id": {"a": 1}},
        "op_id must be a string or a number",
    ),
    (
        {"type": "message_text", "payload": {"text": "x"}, "op_id": "o" * 65},
        "op_id is too long (max 64 characters)",
    ),
    ({"type": "message_text", "payload": {"text": "x"}, "to": 3}, "to must be a string"),
    # PostgreSQL refused the INSERT ("Internal server error"): found by the fuzzer.
    ({"type": "message_text", "payload": {"text": "\x00"}}, "text must not contain NUL characters"),
    (
        {"type": "message_text", "payload": {"text": "x"}, "op_id": "o\x00"},
        "op_id must not contain NUL characters",
    ),
    ({"type": "get_history", "payload": {"limit": 0}}, "limit must be a positive integer"),
    ({"type": "get_history", "payload": {"limit": 101}}, "limit must be at most 100"),
    ({"type": "get_history", "payload": {"before": "x"}}, "before must be a positive integer"),
    ({"type": "rate", "payload": {}}, "rate is required"),
    ({"type": "rate", "payload": {"rate": 6}}, "rate must be an integer from 1 to 5"),
    ({"type": "rate", "payload": {"rate": "x"}}, "rate must be an integer from 1 to 5"),
    ({"type": "rate", "payload": {"rate": "3"}}, "There is no ended conversation to rate"),
    ({"type": "rate", "payload": {"rate": 3}}, "There is no ended conversation to rate"),
    (
        {"type": "rate", "payload": {"rate": 3, "conversation_id": 1}},
        "Only an ended conversation can be rated",
    ),
    (
        {"type": "rate", "payload": {"rate": 3, "conversation_id": 999}},
        "Conversation not found or no permission",
    ),
    ({"type": "auth", "payload": {}}, "token is required"),
    ({"type": "auth", "payload": {"token": "nope"}}, "Invalid or expired token"),
]


@pytest.mark.parametrize(("raw", "message"), USER_CASES, ids=[m for _, m in USER_CASES])
def test_bad_user_frames(server, desk, raw, message):
    u = desk["u"]
    before = stored(server)
    u.ws.send(raw)
    op_id = raw.get("op_id") if isinstance(raw, dict) else None
    echoed = op_id if isinstance(op_id, str) else None
    assert u.ws.recv() == err(message, echoed, u.uuid)
    assert stored(server) == before
    assert u.request("get_history", op_id="still-ok")["op_id"] == "still-ok"


WAITER_CASES = [
    ({"type": "connect"}, "Unknown type: connect"),
    (
        {"type": "message_text", "payload": {"text": "x"}},
        "to is required: the uuid of one of your users",
    ),
    (
        {"type": "message_text", "payload": {"text": "x"}, "to": "nobody"},
        "This user is not connected to you",
    ),
    # Found by the fuzzer on PostgreSQL: the uuid lookup was refused (an internal error).
    (
        {"type": "message_text", "payload": {"text": "x"}, "to": "\x00"},
        "to must not contain NUL characters",
    ),
    ({"type": "disconnect", "payload": {}}, "uuid is required"),
    ({"type": "disconnect", "payload": {"uuid": "nobody"}}, "This user is not connected to you"),
    ({"type": "get_history", "payload": {}}, "user_id is required"),
    ({"type": "get_history", "payload": {"user_id": [1]}}, "user_id must be a user's id or uuid"),
    ({"type": "get_history", "payload": {"user_id": "999999"}}, "You have not served this user"),
    # Found by the fuzzer on PostgreSQL, which refuses a NUL in any text it is sent.
    (
        {"type": "get_history", "payload": {"user_id": "a\x00"}},
        "user_id must not contain NUL characters",
    ),
    # Past SQLite's 64-bit integers: no such user, not an overflow.
    ({"type": "get_history", "payload": {"user_id": 2**70}}, "You have not served this user"),
    # A digit to str.isdigit(), not to int(): no such user, not an internal error.
    ({"type": "get_history", "payload": {"user_id": "\u00b2"}}, "You have not served this user"),
    ({"type": "get_history_session", "payload": {"limit": "x"}}, "limit must be an integer"),
]


@pytest.mark.parametrize(("raw", "message"), WAITER_CASES, ids=[m for _, m in WAITER_CASES])
def test_bad_waiter_frames(server, desk, raw, message):
    w = desk["w"]
    before = stored(server)
    w.ws.send({**raw, "op_id": "bad"})
    assert w.ws.recv() == err(message, "bad", w.uuid)
    assert stored(server) == before
    assert w.request("get_history_session", op_id="ok")["type"] == "session_history"


def test_waiter_cannot_touch_a_user_it_does_not_serve(server, desk):
    """The original let any waiter read or disconnect anyone."""
    w, stranger = desk["w"], desk["stranger"]
    before = stored(server)
    other = user(server)
    other.request("message_text", {"text": "x"})  # not connected: refused, nothing stored
    for raw, message in [
        (
            {"type": "disconnect", "payload": {"uuid": stranger.uuid}},
            "This user is not connected to you",
        ),
        (
            {"type": "message_text", "to": stranger.uuid, "payload": {"text": "hi"}},
            "This user is not connected to you",
        ),
        (
            {"type": "get_history", "payload": {"user_id": stranger.me["id"]}},
            "You have not served this user",
        ),
        (
            {"type": "get_history", "payload": {"user_id": stranger.uuid}},
            "You have not served this user",
        ),
    ]:
        w.ws.send(raw)
        assert w.ws.recv() == err(message, None, w.uuid)
    assert stored(server) == before


def test_frames_before_auth_and_oversized(server):
    ws = server.ws(USER_PATH)
    for kind in ("connect", "message_text", "get_history", "disconnect", "rate"):
        assert ws.request({"type": kind, "op_id": kind}) == err("Please auth first", kind)
    assert ws.request("x" * (64 * 1024 + 1)) == err("Frame too large (max 65536 bytes)")
    ws.sock.send_binary(b"\xff\xfe")
    assert ws.recv() == err("Frame is not valid UTF-8")
    assert ws.request({"type": "auth", "payload": {"token": server.host_jwt("late")}})["type"] == (
        "auth_success"
    )


def test_one_socket_one_account(server, desk):
    u = desk["u"]
    other = server.host_jwt("someone-else")
    assert u.request("auth", {"token": other}, op_id="x") == err(
        "This connection is already authenticated as another account", "x", u.uuid
    )
    assert u.request("auth", {"token": u.token})["type"] == "auth_success"  # same person: fine


def test_frame_rate_is_limited_per_socket(make_server):
    srv = make_server(ws_rate_per_second=5, ws_rate_burst=5)
    u = user(srv)  # the auth frame used one of the five
    replies = [u.request("get_history", op_id=str(i))["type"] for i in range(5)]
    assert replies == ["message_history"] * 4 + ["error"]
    assert u.request("get_history", op_id="x") == err(
        "Rate limit exceeded: too many frames, slow down", "x", u.uuid
    )
    time.sleep(0.5)  # the budget refills at 5 frames a second
    assert u.request("get_history", op_id="y")["type"] == "message_history"


def test_a_conversation_nobody_served_cannot_be_rated(server, desk):
    """It ended while it waited: ``rate`` without an id does not pick it (it would have
    replaced the rating of the agent the user did talk to), and with its id is refused."""
    w = desk["w"]
    assert w.request("unready", op_id="off")["type"] == "unready"
    try:
        u = user(server)
        assert u.request("connect")["type"] == "connect_queue"
        assert u.request("disconnect", op_id="bye")["type"] == "disconnected"
        (waited,) = rows(server, "SELECT max(id) FROM conversation")[0]
        nothing = u.request("rate", {"rate": 5})
        assert nothing == err("There is no ended conversation to rate", to=u.uuid)
        refused = u.request("rate", {"rate": 5, "conversation_id": waited})
        assert refused == err("Only a conversation an agent served can be rated", to=u.uuid)
    finally:
        assert w.request("ready", op_id="on")["type"] == "ready"
