"""The ds/kefu guide end to end: REST + /ws + pushes, whole JSON objects compared."""

import json

import pytest

from tests.support import INT, TIME, WIRE_TIME


@pytest.fixture(scope="module")
def desk(server):
    """One agent (online on /ws) and one user with an assigned conversation."""
    agent = server.create_agent("flow-agent", max_concurrent=5)
    user = server.create_user("flow-user")
    agent_ws = server.ws()
    assert agent_ws.request({"action": "login", "data": {"token": agent["token"]}})["success"]
    user_ws = server.ws()
    login = user_ws.request(
        {"action": "login", "data": {"token": f"Bearer {user['token']}"}, "op_id": "login-1"}
    )
    assert login == {
        "success": True,
        "message": "Login successful",
        "data": {"user_id": user["id"], "kefu_id": None},
        "op_id": "login-1",
    }
    yield {"agent": agent, "user": user, "agent_ws": agent_ws, "user_ws": user_ws}
    agent_ws.close()
    user_ws.close()


def test_get_conversation_assigns_and_pushes(server, desk):
    agent, user = desk["agent"], desk["user"]
    reply = server.get("/api/kefu/message/getConversation", user["token"])
    assert reply.status_code == 200
    body = reply.json()
    assert body == {
        "code": 200,
        "data": {
            "id": INT,
            "kefu_id": agent["kefu_id"],
            "user_id": user["id"],
            "status": 1,
            "last_message_at": None,
            "unread_count": 0,
            "kefu_unread_count": 0,
            "created_at": TIME,
            "updated_at": TIME,
        },
    }
    assert list(body["data"]) == [
        "id",
        "kefu_id",
        "user_id",
        "status",
        "last_message_at",
        "unread_count",
        "kefu_unread_count",
        "created_at",
        "updated_at",
    ]
    conversation_id = body["data"]["id"]
    assigned = {
        "type": "push_message",
        "action": "kefu_conversation_assigned",
        "conversation_id": conversation_id,
        "kefu_id": agent["kefu_id"],
        "user_id": user["id"],
        "timestamp": INT,
    }
    assert desk["agent_ws"].recv() == assigned
    assert desk["user_ws"].recv() == assigned
    # Asking again reuses the open conversation and announces nothing.
    again = server.get("/api/kefu/message/getConversation", user["token"]).json()
    assert again["data"]["id"] == conversation_id
    assert desk["agent_ws"].silent()
    desk["conversation_id"] = conversation_id


def test_user_message_reaches_agent(server, desk):
    cid, user, agent = desk["conversation_id"], desk["user"], desk["agent"]
    reply = desk["user_ws"].request(
        {
            "action": "kefu_message_send",
            "data": {
                "conversation_id": cid,
                "content": "你好",
                "message_type": 1,
                "file_url": None,
            },
            "op_id": "send-1",
        }
    )
    assert reply == {
        "success": True,
        "message": "Message sent successfully",
        "data": {"message_id": INT, "created_at": TIME},
        "op_id": "send-1",
    }
    push = desk["agent_ws"].recv()
    assert push == {
        "type": "push_message",
        "action": "kefu_message",
        "conversation_id": cid,
        "message_id": reply["data"]["message_id"],
        "sender_id": user["id"],
        "sender_type": 1,
        "from_uid": user["id"],
        "to_uid": agent["kefu_id"],
        "content": "你好",
        "message_type": 1,
        "file_url": None,
        "created_at": reply["data"]["created_at"],
        "timestamp": INT,
    }
    assert desk["user_ws"].silent()  # the sender has its response, not an echo


def test_agent_reply_reaches_user_and_lists_in_order(server, desk):
    cid, user, agent = desk["conversation_id"], desk["user"], desk["agent"]
    reply = desk["agent_ws"].request(
        {
            "action": "kefu_message_send",
            "data": {
                "conversation_id": cid,
                "content": "您好，有什么可以帮您的吗？",
                "sender_type": 2,
            },
            "op_id": "agent-1",
        }
    )
    assert reply["success"] is True
    push = desk["user_ws"].recv()
    assert push["action"] == "kefu_message"
    assert (push["sender_id"], push["sender_type"], push["from_uid"], push["to_uid"]) == (
        agent["kefu_id"],
        2,
        agent["kefu_id"],
        user["id"],
    )

    listing = server.get(
        f"/api/kefu/message/list?conversation_id={cid}&page=1&page_size=20", user["token"]
    ).json()
    assert listing["code"] == 200
    assert [m["content"] for m in listing["data"]] == ["你好", "您好，有什么可以帮您的吗？"]
    assert listing["data"][1] == {
        "id": reply["data"]["message_id"],
        "conversation_id": cid,
        "sender_id": agent["kefu_id"],
        "sender_type": 2,
        "content": "您好，有什么可以帮您的吗？",
        "message_type": 1,
        "file_url": None,
        "is_read": 0,
        "read_at": None,
        "created_at": TIME,
        "updated_at": TIME,
    }
    conv = server.get("/api/kefu/message/getConversation", user["token"]).json()["data"]
    assert (conv["unread_count"], conv["kefu_unread_count"]) == (1, 1)
    assert conv["last_message_at"] == reply["data"]["created_at"]


def test_read_marks_update_counters(server, desk):
    cid, user = desk["conversation_id"], desk["user"]
    messages = server.get(f"/api/kefu/message/list?conversation_id={cid}", user["token"]).json()
    agent_ids = [m["id"] for m in messages["data"] if m["sender_type"] == 2]
    user_ids = [m["id"] for m in messages["data"] if m["sender_type"] == 1]

    reply = desk["user_ws"].request(
        {
            "action": "kefu_message_read",
            "data": {"conversation_id": cid, "message_ids": agent_ids + user_ids, "sender_type": 2},
            "op_id": "read-1",
        }
    )
    assert reply == {
        "success": True,
        "message": "Messages marked as read",
        "data": {"updated_count": len(agent_ids)},
        "op_id": "read-1",
    }
    conv = server.get("/api/kefu/message/getConversation", user["token"]).json()["data"]
    assert (conv["unread_count"], conv["kefu_unread_count"]) == (0, 1)

    agent_read = desk["agent_ws"].request(
        {
            "action": "kefu_message_read",
            "data": {"conversation_id": cid, "message_ids": user_ids, "sender_type": 1},
        }
    )
    assert agent_read["data"] == {"updated_count": len(user_ids)}
    listing = server.get(f"/api/kefu/message/list?conversation_id={cid}", user["token"]).json()
    assert all(m["is_read"] == 1 and WIRE_TIME.match(m["read_at"]) for m in listing["data"])
    conv = server.get("/api/kefu/message/getConversation", user["token"]).json()["data"]
    assert (conv["unread_count"], conv["kefu_unread_count"]) == (0, 0)
    # Marking again changes nothing.
    again = desk["user_ws"].request(
        {
            "action": "kefu_message_read",
            "data": {"conversation_id": cid, "message_ids": agent_ids, "sender_type": 2},
        }
    )
    assert again["data"] == {"updated_count": 0}


def test_ping_gets_pong(desk):
    assert desk["user_ws"].request({"action": "ping", "op_id": 7}) == {
        "success": True,
        "message": "pong",
        "data": None,
        "op_id": 7,
    }


def test_end_pushes_to_both_and_is_idempotent(server, desk):
    cid, user, agent = desk["conversation_id"], desk["user"], desk["agent"]
    reply = desk["user_ws"].request(
        {"action": "kefu_message_end", "data": {"conversation_id": cid}, "op_id": "end-1"}
    )
    assert reply == {
        "success": True,
        "message": "Conversation ended successfully",
        "data": {"conversation_id": cid},
        "op_id": "end-1",
    }
    expected = {
        "type": "push_message",
        "action": "kefu_message_end",
        "conversation_id": cid,
        "operator_id": user["id"],
        "operator_type": 1,
        "from_uid": user["id"],
        "to_uid": [user["id"], agent["kefu_id"]],
        "timestamp": INT,
    }
    assert desk["user_ws"].recv() == expected
    assert desk["agent_ws"].recv() == expected
    # Ending an ended conversation succeeds quietly.
    again = desk["user_ws"].request(
        {"action": "kefu_message_end", "data": {"conversation_id": cid}}
    )
    assert again["success"] is True
    assert desk["agent_ws"].silent()
    # Sending into it is refused, and the next getConversation opens a new one.
    refused = desk["user_ws"].request(
        {"action": "kefu_message_send", "data": {"conversation_id": cid, "content": "late"}}
    )
    assert refused == {"success": False, "message": "Conversation has ended", "op_id": None}
    fresh = server.get("/api/kefu/message/getConversation", user["token"]).json()["data"]
    assert fresh["id"] != cid and fresh["status"] == 1


def test_paging_newest_page_first_oldest_first_inside(server):
    token, cid, user_ws, agent_ws = server.conversation("paging-agent", "paging-user")
    for n in range(1, 26):
        sent = user_ws.request(
            {"action": "kefu_message_send", "data": {"conversation_id": cid, "content": f"m{n}"}}
        )
        assert sent["success"], sent

    def contents(page, size):
        reply = server.get(
            f"/api/kefu/message/list?conversation_id={cid}&page={page}&page_size={size}", token
        )
        return [m["content"] for m in reply.json()["data"]]

    assert contents(1, 10) == [f"m{n}" for n in range(16, 26)]
    assert contents(2, 10) == [f"m{n}" for n in range(6, 16)]
    assert contents(3, 10) == [f"m{n}" for n in range(1, 6)]
    assert contents(4, 10) == []
    assert (
        server.get(f"/api/kefu/message/list?conversation_id={cid}", token).json()["data"][-1][
            "content"
        ]
        == "m25"
    )  # default page_size 10, newest last
    assert len(contents(1, 101)) == 25  # capped at 100, not refused (the spec's README)
    assert contents(1, 10**9) == contents(1, 100)
    assert contents(1, 10**20) == contents(1, 100)  # past 64 bits too: it was a 422
    too_small = server.get(f"/api/kefu/message/list?conversation_id={cid}&page_size=0", token)
    assert too_small.status_code == 422
    assert too_small.json() == {"code": 422, "message": "page_size must be 1 or more"}
    agent_ws.close()
    user_ws.close()


def test_multi_device_delivery(server):
    agent = server.create_agent("multi-agent")
    token = server.host_jwt("multi-user")
    agent_tabs = [server.ws() for _ in range(2)]
    for tab in agent_tabs:
        tab.request({"action": "login", "data": {"token": agent["token"]}})
    cid = server.get("/api/kefu/message/getConversation", token).json()["data"]["id"]
    for tab in agent_tabs:
        assert tab.recv()["action"] == "kefu_conversation_assigned"
    user_tabs = [server.ws() for _ in range(3)]
    for tab in user_tabs:
        tab.request({"action": "login", "data": {"token": token}})

    sent = user_tabs[0].request(
        {"action": "kefu_message_send", "data": {"conversation_id": cid, "content": "from tab 0"}}
    )
    message_id = sent["data"]["message_id"]
    for tab in agent_tabs + user_tabs[1:]:  # the agent everywhere, the user's other tabs too
        push = tab.recv()
        assert (push["action"], push["message_id"]) == ("kefu_message", message_id)
    assert user_tabs[0].silent()

    reply = agent_tabs[1].request(
        {
            "action": "kefu_message_send",
            "data": {"conversation_id": cid, "content": "to all tabs", "sender_type": 2},
        }
    )
    for tab in user_tabs + agent_tabs[:1]:
        assert tab.recv()["message_id"] == reply["data"]["message_id"]
    for tab in agent_tabs + user_tabs:
        tab.close()


def test_idempotent_send_by_op_id(server):
    server.create_agent("idem-agent")
    token = server.host_jwt("idem-user")
    cid = server.get("/api/kefu/message/getConversation", token).json()["data"]["id"]
    ws = server.ws()
    ws.request({"action": "login", "data": {"token": token}})
    frame = {
        "action": "kefu_message_send",
        "data": {"conversation_id": cid, "content": "once"},
        "op_id": "retry-me",
    }
    first = ws.request(frame)
    ws.close()
    ws = server.ws()  # the retry arrives on a new socket after a reconnect
    ws.request({"action": "login", "data": {"token": token}})
    second = ws.request(frame)
    assert second == first
    listing = server.get(f"/api/kefu/message/list?conversation_id={cid}", token).json()["data"]
    assert [m["content"] for m in listing] == ["once"]
    ws.close()


def test_an_op_id_may_be_any_json_number_and_is_echoed_as_sent(server):
    """The guide makes op_id optional and "returned as is"; a client that used
    Math.random() for it could not even log in (only strings and integers were taken)."""
    server.create_agent("float-agent")
    token = server.host_jwt("float-user")
    cid = server.get("/api/kefu/message/getConversation", token).json()["data"]["id"]
    ws = server.ws()
    login = ws.request({"action": "login", "data": {"token": token}, "op_id": 0.8364})
    assert login["success"] and login["op_id"] == 0.8364
    send = {"action": "kefu_message_send", "op_id": 1.5e-7}
    send["data"] = {"conversation_id": cid, "content": "random op_id"}
    first = ws.request(send)
    assert first["success"] and first["op_id"] == 1.5e-7
    assert ws.request(send) == first  # a key like any other: the resend stores nothing
    # One number is one key however it is spelled, as JavaScript reads it (and the
    # string of its digits too); each reply echoes the op_id as it was sent.
    data = json.dumps({"conversation_id": cid, "content": "seven"})
    spellings = ["7", "7.0", "7e0", '"7"']
    replies = [
        ws.request(f'{{"action": "kefu_message_send", "op_id": {n}, "data": {data}}}')
        for n in spellings
    ]
    assert all(r["success"] for r in replies), replies
    assert len({r["data"]["message_id"] for r in replies}) == 1
    assert [r["op_id"] for r in replies] == [7, 7.0, 7.0, "7"]
    # Integers stay exact: 64-bit ids one apart are two messages.
    big = [
        ws.request(f'{{"action": "kefu_message_send", "op_id": {2**60 + n}, "data": {data}}}')
        for n in (1, 2)
    ]
    assert big[0]["data"]["message_id"] != big[1]["data"]["message_id"], big
    for bad in (True, {"seq": 1}, [1]):
        refused = ws.request({"action": "ping", "op_id": bad})
        assert refused == {
            "success": False,
            "message": "op_id must be a string or a number",
            "op_id": None,
        }
    listing = server.get(f"/api/kefu/message/list?conversation_id={cid}", token).json()["data"]
    assert [m["content"] for m in listing] == ["random op_id", "seven", "seven", "seven"]
    ws.close()


def test_an_op_id_reused_for_another_message_gets_an_error_not_a_false_success(server):
    """The guide's examples all say "unique_op_id": a client copying them must learn
    that its second message was not sent, not be told it was."""
    server.create_agent("reuse-agent")
    token = server.host_jwt("reuse-user")
    cid = server.get("/api/kefu/message/getConversation", token).json()["data"]["id"]
    ws = server.ws()
    ws.request({"action": "login", "data": {"token": token}})

    def send(content):
        data = {"conversation_id": cid, "content": content}
        return ws.request({"action": "kefu_message_send", "data": data, "op_id": "unique_op_id"})

    assert send("first")["success"] is True
    assert send("second") == {
        "success": False,
        "message": "op_id was already used for another message; send each message with a new op_id",
        "op_id": "unique_op_id",
    }
    assert ws.request({"action": "ping", "op_id": "p"})["message"] == "pong"  # still usable
    listing = server.get(f"/api/kefu/message/list?conversation_id={cid}", token).json()["data"]
    assert [m["content"] for m in listing] == ["first"]
    ws.close()
