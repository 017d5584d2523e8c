"""ds/kefu visitors served on the waiter protocol: a visitor is addressed as
``visitor:<visitor_id>`` and its conversation works like a user's (new_connection,
messages both ways, disconnect, session_history, get_history).

The fault this guards against: a waiter-only agent got no frame for a visitor's
conversation, which held its only place until the visitor left, while a user queued."""

import pytest

from tests.support import INT, TIME, Server, drop_database, own_postgres_database
from tests.test_waiter_support import agent, frame, rows, text_payload, user, waiter


@pytest.fixture
def srv(make_server):
    return make_server()


def address(visitor_id: str) -> str:
    return f"visitor:{visitor_id}"


def profile(visitor_id: str) -> dict:
    return {
        "id": address(visitor_id),
        "uuid": address(visitor_id),
        "username": visitor_id,
        "nickname": visitor_id,
        "avatar": "",
        "visitor_id": visitor_id,
    }


class Visitor:
    """A ds/kefu visitor socket bound to its visitor_id."""

    def __init__(self, server, visitor_id: str):
        self.ws, self.visitor_id = server.ws(), visitor_id
        bound = self.ws.request(
            {"action": "kefu_message_visitor_bind_fd", "data": {"bind_key": visitor_id}}
        )
        assert bound["success"], bound

    def say(self, kefu_id, content: str) -> int:
        data = {"visitor_id": self.visitor_id, "kefu_id": str(kefu_id), "content": content}
        sent = self.ws.request({"action": "kefu_message_visitor_send", "data": data})
        assert sent["success"], sent
        return sent["data"]["message_id"]

    def push(self, action: str) -> dict:
        return self.ws.recv_until(lambda f: f.get("action") == action)


def test_a_waiter_only_agent_serves_a_visitor(srv):
    a = agent(srv, max_concurrent=1)
    w = waiter(srv, a)
    assert w.request("ready")["type"] == "ready"
    v = Visitor(srv, "vis-w1")
    first = v.say(a["kefu_id"], "hello from the widget")
    to_me = address("vis-w1")
    assert w.recv() == frame("new_connection", profile("vis-w1"), None, to_me, w)
    got = w.recv()
    cid = got["payload"]["conversation_id"]
    assert got == frame(
        "message_text", text_payload("hello from the widget", INT, first), None, to_me, w
    )

    # The waiter answers with the visitor's address; the visitor gets the ds/kefu push.
    reply = w.request("message_text", {"text": "how can I help?"}, op_id="r1", to=to_me)
    assert reply == frame(
        "message_text_success", text_payload("how can I help?", cid), "r1", w, to_me
    )
    pushed = v.push("kefu_visitor_message")
    assert (pushed["content"], pushed["sender_type"], pushed["message_id"]) == (
        "how can I help?",
        2,
        reply["payload"]["message_id"],
    )
    image = w.request("message_image", {"image": "https://example.com/v.png"}, to=to_me)
    assert image["type"] == "message_image_success"
    assert v.push("kefu_visitor_message")["content"] == "https://example.com/v.png"

    # The agent is visibly busy: a user queues behind the visitor.
    u = user(srv)
    assert u.request("connect", op_id="c")["payload"] == {"location": 1}
    session = {
        "conversation_id": cid,
        "user": profile("vis-w1"),
        "status": 1,
        "rating": None,
        "created_at": TIME,
        "ended_at": None,
        "last_message_at": TIME,
    }
    assert w.request("get_history_session", op_id="s")["payload"] == [session]
    expected = [
        ("message_text", to_me, w.uuid, "hello from the widget"),
        ("message_text", w.uuid, to_me, "how can I help?"),
        ("message_image", w.uuid, to_me, None),
    ]
    history = w.request("get_history", {"user_id": to_me}, op_id="h")  # its id and uuid
    assert history["type"] == "message_history"
    found = [(i["type"], i["from"], i["to"], i["payload"].get("text")) for i in history["payload"]]
    assert found == expected

    # The waiter ends it: the visitor is told, the freed place goes to the queued user.
    assert w.request("disconnect", {"uuid": to_me}, op_id="d") == frame(
        "disconnected", None, "d", to_me, w
    )
    end = v.push("kefu_visitor_conversation_end")
    assert (end["conversation_id"], end["sender_type"]) == (cid, 2)
    assert w.recv() == frame("new_connection", u.me, "d", u, w)  # caused by the request
    assert u.recv() == frame("connect_success", w.me, "c", w, u)
    assert rows(srv, "SELECT status FROM conversation WHERE id = ?", cid) == [(2,)]
    assert w.request("get_history", {"user_id": to_me})["type"] == "message_history"


def test_a_visitor_is_told_apart_from_a_user_and_other_agents_visitors(srv):
    """The prefix: a visitor may pick any visitor_id, a user's uuid included."""
    mine, theirs = agent(srv, max_concurrent=3), agent(srv)
    w, other = waiter(srv, mine), waiter(srv, theirs)
    u = user(srv)
    assert u.request("connect")["from"] == w.uuid
    w.expect("new_connection")
    v = Visitor(srv, u.uuid)  # named like the user
    v.say(mine["kefu_id"], "it's me")
    assert w.expect("new_connection")["from"] == address(u.uuid)
    assert w.expect("message_text")["from"] == address(u.uuid)

    w.request("message_text", {"text": "to the user"}, to=u.uuid)
    assert u.recv()["payload"]["text"] == "to the user"
    assert v.ws.silent(0.3)
    w.request("message_text", {"text": "to the visitor"}, to=address(u.uuid))
    assert v.push("kefu_visitor_message")["content"] == "to the visitor"
    assert u.silent(0.3)

    # Another agent can neither write to, end, nor read a visitor it does not serve.
    not_yours, not_served = "This user is not connected to you", "You have not served this user"
    for raw, message in [
        ({"type": "message_text", "to": address(u.uuid), "payload": {"text": "x"}}, not_yours),
        ({"type": "disconnect", "payload": {"uuid": address(u.uuid)}}, not_yours),
        ({"type": "get_history", "payload": {"user_id": address(u.uuid)}}, not_served),
        ({"type": "get_history", "payload": {"user_id": address("nobody")}}, not_served),
        (
            {"type": "disconnect", "payload": {"uuid": address("v" * 129)}},
            "uuid is too long (max 136 characters)",
        ),
    ]:
        other.ws.send({**raw, "op_id": "x"})
        assert other.recv() == frame("error", {"message": message}, "x", None, other)
    assert other.silent(0.2) and v.ws.silent(0.1)


def test_a_waiter_signing_in_is_told_of_its_visitors_and_of_their_end(srv):
    a = agent(srv)
    v = Visitor(srv, "vis-w3")
    v.say(a["kefu_id"], "anyone there?")  # the agent is offline: its /ws is not open
    w = waiter(srv, a)
    assert w.recv() == frame("new_connection", profile("vis-w3"), "auth-1", address("vis-w3"), w)
    # What it wrote while the agent was offline follows: no waiter socket heard it.
    missed = w.recv()
    assert (missed["type"], missed["from"]) == ("message_text", address("vis-w3"))
    assert missed["payload"]["text"] == "anyone there?"
    assert w.request("message_text", {"text": "yes"}, to=address("vis-w3"))["type"] == (
        "message_text_success"
    )
    assert v.push("kefu_visitor_message")["content"] == "yes"
    ended = v.ws.request(
        {
            "action": "kefu_message_visitor_end",
            "data": {"visitor_id": "vis-w3", "kefu_id": str(a["kefu_id"])},
        }
    )
    assert ended["success"], ended
    assert w.recv() == frame("disconnected", None, None, address("vis-w3"), w)
    assert w.request("message_text", {"text": "late"}, to=address("vis-w3"))["payload"] == {
        "message": "This user is not connected to you"
    }


@pytest.mark.ignores_test_database
def test_visitors_and_waiting_messages_cross_workers(tmp_path):
    """The visitor and the queued user on one server, the waiter on another (KEFU_BROKER
    =postgres): the assignment's waiting messages travel in the event."""
    url = own_postgres_database("two workers share it")
    servers = [
        Server(tmp_path / name, database_url=url, broker="postgres").start() for name in "ab"
    ]
    try:
        here, there = servers
        a = agent(here, max_concurrent=2)
        w = waiter(there, a)
        assert w.request("unready")["type"] == "unready"
        u = user(here)
        assert u.request("connect")["payload"] == {"location": 1}
        sent = [u.request("message_text", {"text": f"waiting {i}"})["payload"] for i in range(2)]
        w.request("ready", op_id="r")
        assert w.expect("new_connection")["from"] == u.uuid
        assert [w.recv() for _ in sent] == [frame("message_text", p, None, u, w) for p in sent]
        v = Visitor(here, "vis-w4")
        v.say(a["kefu_id"], "from another worker")
        assert w.recv(10) == frame("new_connection", profile("vis-w4"), None, address("vis-w4"), w)
        assert w.recv()["payload"]["text"] == "from another worker"
        w.request("message_text", {"text": "back"}, to=address("vis-w4"))
        assert v.push("kefu_visitor_message")["content"] == "back"
    finally:
        for srv in servers:
            srv.stop()
        drop_database(url)
