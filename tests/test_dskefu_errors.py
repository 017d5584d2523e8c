"""Bad input on ds/kefu: a precise error, a socket that still works, nothing stored."""

import json
import time

import jwt
import pytest
import websocket

from tests.support import JWT_SECRET, Server


@pytest.fixture(scope="module")
def setup(server):
    agent = server.create_agent("err-agent")
    other_agent = server.create_agent("err-agent-2")
    owner = server.host_jwt("err-owner")
    stranger = server.host_jwt("err-stranger")
    agent_ws = server.ws()
    agent_ws.request({"action": "login", "data": {"token": agent["token"]}})
    cid = server.get("/api/kefu/message/getConversation", owner).json()["data"]["id"]
    agent_ws.recv()  # assigned
    ws = server.ws()
    ws.request({"action": "login", "data": {"token": owner}})
    ws.request({"action": "kefu_message_send", "data": {"conversation_id": cid, "content": "ok"}})
    agent_ws.recv()
    yield {
        "agent": agent,
        "other_agent": other_agent,
        "owner": owner,
        "stranger": stranger,
        "cid": cid,
        "ws": ws,
        "agent_ws": agent_ws,
    }


def stored(server, setup):
    reply = server.get(
        f"/api/kefu/message/list?conversation_id={setup['cid']}&page_size=100", setup["owner"]
    )
    return reply.json()["data"]


FRAME_CASES = [
    ("not json", "Invalid JSON", None),
    # Half a surrogate pair: refused, and the op_id still echoed (it was null).
    (
        '{"action": "ping", "op_id": "s1", "data": {"x": "\\ud800"}}',
        "Frame contains invalid Unicode (a lone surrogate)",
        "s1",
    ),
    ("[1, 2]", "Frame must be a JSON object", None),
    ('"text"', "Frame must be a JSON object", None),
    ({"data": {}}, "action is required", None),
    ({"action": 5, "op_id": "a"}, "action must be a string", "a"),
    ({"action": "bogus", "op_id": "a"}, "Unknown action: bogus", "a"),
    ({"action": "kefu_message_send", "data": [], "op_id": "b"}, "data must be an object", "b"),
    ({"action": "kefu_message_send", "data": {}, "op_id": 3}, "conversation_id is required", 3),
    (
        {"action": "kefu_message_send", "data": {"conversation_id": "x", "content": "a"}},
        "conversation_id must be a positive integer",
        None,
    ),
    (
        {"action": "kefu_message_send", "data": {"conversation_id": True, "content": "a"}},
        "conversation_id must be a positive integer",
        None,
    ),
    (
        {"action": "kefu_message_send", "data": {"conversation_id": -1, "content": "a"}},
        "conversation_id must be a positive integer",
        None,
    ),
    # Digits to str.isdigit() that int() refuses: a superscript, and past int()'s 4,300.
    (
        {"action": "kefu_message_send", "data": {"conversation_id": "\u00b2", "content": "a"}},
        "conversation_id must be a positive integer",
        None,
    ),
    (
        {"action": "kefu_message_send", "data": {"conversation_id": "9" * 5000, "content": "a"}},
        "conversation_id must be a positive integer",
        None,
    ),
    (
        {"action": "kefu_message_send", "data": {"conversation_id": "CID"}},
        "content is required",
        None,
    ),
    (
        {"action": "kefu_message_send", "data": {"conversation_id": "CID", "content": "   "}},
        "content is required",
        None,
    ),
    (
        {"action": "kefu_message_send", "data": {"conversation_id": "CID", "content": 5}},
        "content must be a string",
        None,
    ),
    (
        {
            "action": "kefu_message_send",
            "data": {"conversation_id": "CID", "content": "a", "message_type": 9},
        },
        "message_type must be 1 (text), 2 (image) or 3 (file)",
        None,
    ),
    (
        {"action": "kefu_message_send", "data": {"conversation_id": "CID", "message_type": 2}},
        "file_url is required for image and file messages",
        None,
    ),
    (
        {
            "action": "kefu_message_send",
            "data": {
                "conversation_id": "CID",
                "message_type": 2,
                "file_url": "javascript:alert(1)",
            },
        },
        "file_url must be an http(s) URL or an upload's path (/uploads/<name>)",
        None,
    ),
    (
        {
            "action": "kefu_message_send",
            "data": {
                "conversation_id": "CID",
                "message_type": 2,
                "file_url": "//evil.example/x.png",
            },
        },
        "file_url must be an http(s) URL or an upload's path (/uploads/<name>)",
        None,
    ),
    (
        {"action": "kefu_message_send", "data": {"conversation_id": "CID", "content": "x" * 5001}},
        "content is too long (max 5000 characters)",
        None,
    ),
    (
        {
            "action": "kefu_message_send",
            "data": {"conversation_id": "CID", "content": "a", "sender_type": 2},
        },
        "Only agents can send messages with sender_type 2",
        None,
    ),
    (
        {
            "action": "kefu_message_send",
            "data": {"conversation_id": "CID", "content": "a", "sender_type": 7},
        },
        "sender_type must be one of 1, 2",
        None,
    ),
    (
        {
            "action": "kefu_message_send",
            "data": {"conversation_id": "CID", "content": "a"},
            "op_id": {"x": 1},
        },
        "op_id must be a string or a number",
        None,
    ),
    (
        {
            "action": "kefu_message_send",
            "data": {"conversation_id": "CID", "content": "a"},
            "op_id": "o" * 65,
        },
        "op_id is too long (max 64 characters)",
        "o" * 65,
    ),
    # PostgreSQL refused the INSERT ("Internal server error"): found by the fuzzer.
    (
        {"action": "kefu_message_send", "data": {"conversation_id": "CID", "content": "a\x00"}},
        "content must not contain NUL characters",
        None,
    ),
    (
        {
            "action": "kefu_message_send",
            "data": {"conversation_id": "CID", "content": "a"},
            "op_id": "o\x00",
        },
        "op_id must not contain NUL characters",
        "o\x00",
    ),
    # The same for a visitor's send (found by the fuzzer on PostgreSQL, this round).
    (
        {
            "action": "kefu_message_visitor_send",
            "data": {"visitor_id": "nul-visitor", "kefu_id": 1, "content": "a"},
            "op_id": "v\x00",
        },
        "op_id must not contain NUL characters",
        "v\x00",
    ),
    (
        {"action": "kefu_message_send", "data": {"conversation_id": 999999, "content": "a"}},
        "Conversation not found or no permission",
        None,
    ),
    (
        {
            "action": "kefu_message_read",
            "data": {"conversation_id": "CID", "message_ids": "1", "sender_type": 2},
        },
        "message_ids must be an array of integers",
        None,
    ),
    (
        {"action": "kefu_message_read", "data": {"conversation_id": "CID", "message_ids": [1]}},
        "sender_type is required",
        None,
    ),
    (
        {
            "action": "kefu_message_read",
            "data": {"conversation_id": "CID", "message_ids": [1], "sender_type": 1},
        },
        "sender_type must be 2 when a user marks messages as read",
        None,
    ),
    (
        {"action": "kefu_message_end", "data": {"conversation_id": 999999}},
        "Failed to end conversation. Conversation not found or no permission.",
        None,
    ),
    ({"action": "login", "data": {}}, "token is required", None),
]


def test_an_empty_op_id_is_no_idempotency_key(server, setup):
    """A client sending "" for "no op_id" had every later send answered with its first
    message ("Message sent successfully") and nothing stored."""
    before = stored(server, setup)
    for text in ("empty op one", "empty op two"):
        reply = setup["ws"].request(
            {
                "action": "kefu_message_send",
                "data": {"conversation_id": setup["cid"], "content": text},
                "op_id": "",
            }
        )
        assert reply["success"] is True and reply["op_id"] == "", reply
        assert setup["agent_ws"].recv()["content"] == text  # each one is pushed
    after = stored(server, setup)
    assert [m["content"] for m in after[len(before) :]] == ["empty op one", "empty op two"]


def test_message_ids_no_row_can_have_name_nothing(server, setup):
    """Ids past 64 bits (either way) were handed to SQLite, whose OverflowError came
    back as "Internal server error". They name no message, like any unknown id."""
    [message] = [m for m in stored(server, setup) if m["content"] == "ok"]
    huge = [2**63, -(2**63) - 1, 2**64]
    reply = setup["agent_ws"].request(
        {
            "action": "kefu_message_read",
            "data": {
                "conversation_id": setup["cid"],
                "message_ids": [*huge, message["id"]],
                "sender_type": 1,
            },
            "op_id": "read-huge",
        }
    )
    assert reply == {
        "success": True,
        "message": "Messages marked as read",
        "data": {"updated_count": 1},
        "op_id": "read-huge",
    }
    assert [m["is_read"] for m in stored(server, setup) if m["id"] == message["id"]] == [1]
    assert "Traceback" not in server.log()


@pytest.mark.parametrize(("frame", "message", "op_id"), FRAME_CASES)
def test_bad_frames_get_precise_errors(server, setup, frame, message, op_id):
    before = stored(server, setup)
    if isinstance(frame, dict) and frame.get("data", {}) and isinstance(frame["data"], dict):
        frame = {
            **frame,
            "data": {k: setup["cid"] if v == "CID" else v for k, v in frame["data"].items()},
        }
    reply = setup["ws"].request(frame)
    assert reply == {"success": False, "message": message, "op_id": op_id}
    assert setup["ws"].request({"action": "ping", "op_id": "alive"})["op_id"] == "alive"
    assert stored(server, setup) == before


def test_actions_before_login_are_refused(server, setup):
    ws = server.ws()
    for action in ("kefu_message_send", "kefu_message_read", "kefu_message_end"):
        reply = ws.request(
            {"action": action, "data": {"conversation_id": setup["cid"]}, "op_id": action}
        )
        assert reply == {"success": False, "message": "Please login first", "op_id": action}
    bad = ws.request({"action": "login", "data": {"token": "nope"}})
    assert bad == {"success": False, "message": "Invalid or expired token", "op_id": None}
    assert ws.request({"action": "login", "data": {"token": setup["owner"]}})["success"]
    ws.close()


def test_foreign_conversations_are_invisible(server, setup):
    ws = server.ws()
    ws.request({"action": "login", "data": {"token": setup["stranger"]}})
    before = stored(server, setup)
    for action, data in [
        ("kefu_message_send", {"conversation_id": setup["cid"], "content": "intrude"}),
        (
            "kefu_message_read",
            {"conversation_id": setup["cid"], "message_ids": [1], "sender_type": 2},
        ),
    ]:
        reply = ws.request({"action": action, "data": data})
        assert reply == {
            "success": False,
            "message": "Conversation not found or no permission",
            "op_id": None,
        }
    ended = ws.request({"action": "kefu_message_end", "data": {"conversation_id": setup["cid"]}})
    assert ended["message"] == (
        "Failed to end conversation. Conversation not found or no permission."
    )
    assert stored(server, setup) == before
    listing = server.get(
        f"/api/kefu/message/list?conversation_id={setup['cid']}", setup["stranger"]
    )
    assert listing.status_code == 404
    assert listing.json() == {"code": 404, "message": "Conversation not found or no permission"}
    # An agent the conversation is not assigned to cannot speak in it either.
    other = server.ws()
    other.request({"action": "login", "data": {"token": setup["other_agent"]["token"]}})
    reply = other.request(
        {
            "action": "kefu_message_send",
            "data": {"conversation_id": setup["cid"], "content": "not mine", "sender_type": 2},
        }
    )
    assert reply["message"] == "Conversation not found or no permission"
    assert stored(server, setup) == before
    ws.close()
    other.close()


def test_oversized_frames(server, setup):
    ws = setup["ws"]
    before = stored(server, setup)
    big = {
        "action": "kefu_message_send",
        "data": {"conversation_id": setup["cid"], "content": "x" * 70_000},
    }
    assert ws.request(big) == {
        "success": False,
        "message": "Frame too large (max 65536 bytes)",
        "op_id": None,
    }
    assert ws.request({"action": "ping"})["success"]
    # The limit is in bytes: 40,000 "é" are 80,000 bytes (they passed as 40,000 characters).
    wide = {**big, "data": {**big["data"], "content": "é" * 40_000}}
    assert ws.request(json.dumps(wide, ensure_ascii=False))["message"] == (
        "Frame too large (max 65536 bytes)"
    )
    assert ws.request({"action": "ping"})["success"]
    # Beyond the transport limit (1 MiB) the socket is closed with 1009; the server lives on.
    huge = server.ws()
    # The close may come as a 1009 frame or, mid-write, as a reset: either way, refused.
    with pytest.raises((websocket.WebSocketConnectionClosedException, ConnectionError)):
        huge.send("x" * (1024 * 1024 + 10))
        for _ in range(3):
            huge.sock.recv()
    assert server.get("/healthz").ok
    assert stored(server, setup) == before


def test_rest_errors(server, setup):
    assert server.get("/api/kefu/message/getConversation").json() == {
        "code": 401,
        "message": "Authorization header with a Bearer token is required",
    }
    bad = server.get("/api/kefu/message/getConversation", "garbage")
    assert (bad.status_code, bad.json()["message"]) == (401, "Invalid or expired token")
    no_id = server.get("/api/kefu/message/list", setup["owner"])
    assert (no_id.status_code, no_id.json()) == (
        422,
        {"code": 422, "message": "conversation_id is required"},
    )
    for odd in ("abc", "+1", "%201%20", "1_0", "\u0663"):  # int() took all but abc
        wrong = server.get(f"/api/kefu/message/list?conversation_id={odd}", setup["owner"])
        assert wrong.json() == {"code": 422, "message": "conversation_id must be an integer"}
    page0 = server.get(
        f"/api/kefu/message/list?conversation_id={setup['cid']}&page=0", setup["owner"]
    )
    assert page0.json() == {"code": 422, "message": "page must be 1 or more"}
    agent_open = server.get("/api/kefu/message/getConversation", setup["agent"]["token"])
    assert agent_open.json() == {
        "code": 403,
        "message": "Agents cannot open customer conversations",
    }
    missing = server.get("/api/kefu/nothing-here", setup["owner"])
    assert missing.status_code == 404 and missing.json()["code"] == 404


def test_host_jwt_sign_in(server):
    token = Server.host_jwt("host-42", name="Host User")
    conv = server.get("/api/kefu/message/getConversation", token)
    assert conv.status_code == 200
    again = server.get("/api/kefu/message/getConversation", f"Bearer {token}".split(" ", 1)[1])
    assert again.json()["data"]["id"] == conv.json()["data"]["id"]  # same provisioned user
    expired = Server.host_jwt("host-42", ttl=-3600)
    reply = server.get("/api/kefu/message/getConversation", expired)
    assert reply.json() == {"code": 401, "message": "Token has expired"}
    forged = Server.host_jwt("host-42", secret="not-" + JWT_SECRET)
    reply = server.get("/api/kefu/message/getConversation", forged)
    assert reply.json() == {"code": 401, "message": "Token signature is invalid"}
    # Claims kefu would store: a NUL (PostgreSQL cannot store one) or a name that is
    # not text is refused alike on every database, and nobody is provisioned.
    for claims, message in (
        ({"sub": "host-\x00", "name": "n"}, "claims must not contain NUL characters"),
        ({"sub": "host-43", "avatar": "/a\x00.png"}, "claims must not contain NUL characters"),
        ({"sub": "host-44", "name": 7}, "name and avatar must be strings"),
        ({"sub": 4.5}, "sub must be a non-empty string or an integer"),
        ({"sub": ""}, "sub must be a non-empty string or an integer"),
        # Half a surrogate pair (a host signing a name cut from browser text): a 500 once.
        (
            {"sub": "host-45", "name": "Bob \ud83d"},
            "claims must be valid Unicode (a lone surrogate)",
        ),
        ({"sub": "\udfff"}, "claims must be valid Unicode (a lone surrogate)"),
    ):
        odd = jwt.encode({**claims, "exp": int(time.time()) + 60}, JWT_SECRET, algorithm="HS256")
        reply = server.get("/api/kefu/message/getConversation", odd)
        assert reply.json() == {"code": 401, "message": f"Invalid token: {message}"}
    quote = "`" if server.env["KEFU_DATABASE_URL"].startswith("mysql") else '"'
    users = f"SELECT external_id FROM {quote}user{quote} WHERE external_id IN (?, ?)"
    assert server.sql(users, "host-43", "host-44") == []
    assert server.sql(users.replace("(?, ?)", "(?)"), "host-45") == []
    ws = server.ws()
    assert ws.request({"action": "login", "data": {"token": expired}}) == {
        "success": False,
        "message": "Token has expired",
        "op_id": None,
    }
    assert ws.request({"action": "login", "data": {"token": f"Bearer {token}"}})["success"]
    ws.close()
    # Hosts often put their numeric user id in ``sub`` as a number: one user either way.
    numeric = jwt.encode({"sub": 998877, "exp": int(time.time()) + 60}, JWT_SECRET, "HS256")
    as_number = server.get("/api/kefu/message/getConversation", numeric)
    assert as_number.status_code == 200, as_number.text
    as_text = server.get("/api/kefu/message/getConversation", Server.host_jwt("998877"))
    assert as_text.json()["data"]["id"] == as_number.json()["data"]["id"]


def test_a_host_user_whose_name_is_taken_still_signs_in(server):
    """``host-<sub>`` may already be a local account's name, or a longer sub's cut to 150
    characters: the host user gets a name of its own (it was a 500 on every attempt)."""
    server.create_user("host-77")
    for sub in ("77", "s" * 150, "s" * 149 + "t"):
        conv = server.get("/api/kefu/message/getConversation", Server.host_jwt(sub))
        assert conv.status_code == 200, (sub[:8], conv.text)
        again = server.get("/api/kefu/message/getConversation", Server.host_jwt(sub))
        assert again.json()["data"]["id"] == conv.json()["data"]["id"]
    too_long = server.get("/api/kefu/message/getConversation", Server.host_jwt("s" * 151))
    assert too_long.json() == {
        "code": 401,
        "message": "Invalid token: sub must be at most 150 characters",
    }
    assert "Traceback" not in server.log()


def test_socket_survives_a_burst_of_garbage(server, setup):
    ws = server.ws()
    for n in range(200):
        ws.send(f"{{broken {n}")
    replies = [ws.recv() for _ in range(200)]
    assert all(r == {"success": False, "message": "Invalid JSON", "op_id": None} for r in replies)
    started = time.monotonic()
    assert ws.request({"action": "ping", "op_id": "after"})["op_id"] == "after"
    assert time.monotonic() - started < 5
    ws.close()


def test_numbers_may_be_digit_strings_everywhere(server, setup):
    """Ids took "1" (the guide sends kefu_id so); the other numbers refused it."""
    cid = str(setup["cid"])
    data = {"conversation_id": cid, "content": "quoted", "message_type": "1", "sender_type": "1"}
    sent = setup["ws"].request({"action": "kefu_message_send", "data": data})
    assert sent["success"] is True, sent
    pushed = setup["agent_ws"].recv_until(lambda f: f.get("action") == "kefu_message")
    assert pushed["message_id"] == sent["data"]["message_id"]
    read = {"conversation_id": cid, "message_ids": [str(sent["data"]["message_id"])]}
    read["sender_type"] = "1"  # whose messages: the customer's
    marked = setup["agent_ws"].request({"action": "kefu_message_read", "data": read})
    assert marked["success"] is True and marked["data"] == {"updated_count": 1}, marked
