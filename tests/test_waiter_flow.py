"""The waiter protocol's user and waiter flows end to end, whole frames compared."""

import re
import time

import pytest

from tests.test_waiter_support import (
    INT,
    TIME,
    USER_PATH,
    WAITER_PATH,
    Any,
    Peer,
    agent,
    frame,
    rows,
    serving,
    text_payload,
    user,
    waiter,
)


@pytest.fixture
def srv(make_server):
    return make_server()


@pytest.fixture
def served(srv):
    """A ready waiter and a user it serves."""
    a = agent(srv)
    w = waiter(srv, a)
    assert w.request("ready") == frame("ready", to=w)
    u = user(srv)
    assert u.request("connect")["type"] == "connect_success"
    assert w.expect("new_connection")["from"] == u.uuid
    return w, u


def test_auth_success_carries_own_profile(srv):
    a = agent(srv)
    w = waiter(srv, a)
    assert w.me == {
        "id": str(a["id"]),
        "uuid": a["uuid"],
        "username": a["username"],
        "nickname": a["username"],
        "avatar": "",
    }
    ws = srv.ws(USER_PATH)
    token = srv.host_jwt("flow-sub", name="Ada")
    reply = ws.request({"op_id": "a1", "type": "auth", "payload": {"token": f"Bearer {token}"}})
    assert reply == frame(
        "auth_success",
        {
            "id": Any(str, re.compile(r"^\d+$")),
            "uuid": reply["to"],
            "username": "host-flow-sub",
            "nickname": "Ada",
            "avatar": "",
        },
        "a1",
        None,
        reply["to"],
    )


def test_full_user_and_waiter_flow(srv):
    a = agent(srv)
    w = waiter(srv, a)
    assert w.request("ready", op_id="r1") == frame("ready", None, "r1", None, w)
    u = user(srv)
    agent_profile = w.me
    assert u.request("connect", op_id="c1") == frame("connect_success", agent_profile, "c1", w, u)
    assert w.recv() == frame("new_connection", u.me, None, u, w)

    receipt = u.request("message_text", {"text": "你好，这是一条信息!"}, op_id="m1")
    assert receipt == frame("message_text_success", text_payload("你好，这是一条信息!"), "m1", u, w)
    conversation_id = receipt["payload"]["conversation_id"]
    stored = receipt["payload"]["message_id"]
    assert w.recv() == frame(
        "message_text", text_payload("你好，这是一条信息!", conversation_id, stored), None, u, w
    )

    reply = w.request("message_text", {"text": "hello"}, op_id="m2", to=u.uuid)
    assert reply == frame(
        "message_text_success", text_payload("hello", conversation_id), "m2", w, u
    )
    assert u.recv() == frame("message_text", reply["payload"], None, w, u)

    image = {
        "image": "https://example.com/demo.png",
        "message_id": INT,
        "conversation_id": conversation_id,
        "created_at": TIME,
    }
    got = u.request("message_image", {"image": "https://example.com/demo.png"}, op_id="i1")
    assert got == frame("message_image_success", image, "i1", u, w)
    assert w.recv() == frame("message_image", got["payload"], None, u, w)
    got = w.request("message_image", {"image": "/uploads/x.png"}, op_id="i2", to=u.uuid)
    assert got["type"] == "message_image_success" and got["payload"]["image"] == "/uploads/x.png"
    assert u.recv() == frame("message_image", got["payload"], None, w, u)

    history = u.request("get_history", op_id="h1")
    assert history["type"] == "message_history" and history["op_id"] == "h1"
    assert [(i["type"], i["from"], i["to"]) for i in history["payload"]] == [
        ("message_text", u.uuid, w.uuid),
        ("message_text", w.uuid, u.uuid),
        ("message_image", u.uuid, w.uuid),
        ("message_image", w.uuid, u.uuid),
    ]
    assert history["payload"][0]["payload"] == text_payload(
        "你好，这是一条信息!", conversation_id, stored
    )

    # The waiter ends it: the user is told, the waiter gets its reply.
    assert w.request("disconnect", {"uuid": u.uuid}, op_id="d1") == frame(
        "disconnected", None, "d1", u, w
    )
    assert u.recv() == frame("disconnected", None, None, w, u)
    assert u.request("message_text", {"text": "late"}, op_id="m9") == frame(
        "not_connect", {"message": "Not connected to a waiter; send connect first"}, "m9", None, u
    )

    assert u.request("rate", {"rate": 5}, op_id="rt") == frame(
        "rate_success", {"conversation_id": conversation_id, "rate": 5}, "rt", None, u
    )
    sessions = w.request("get_history_session", op_id="s1")
    assert sessions == frame(
        "session_history",
        [
            {
                "conversation_id": conversation_id,
                "user": u.me,
                "status": 2,
                "rating": 5,
                "created_at": TIME,
                "ended_at": TIME,
                "last_message_at": TIME,
            }
        ],
        "s1",
        None,
        w,
    )


def test_user_disconnect_tells_both_sides_and_ends_it(srv, served):
    w, u = served
    assert u.request("disconnect", op_id="bye") == frame("disconnected", None, "bye", w, u)
    assert w.recv() == frame("disconnected", None, None, u, w)
    assert rows(srv, "SELECT status FROM conversation") == [(2,)]
    assert u.request("disconnect", op_id="again")["type"] == "not_connect"


def test_reconnect_resumes_the_same_conversation(srv, served):
    """Sessions belong to people, not sockets: a new socket resumes, nothing is lost."""
    w, u = served
    sent = u.request("message_text", {"text": "before"})["payload"]
    w.expect("message_text")
    u.close()
    again = Peer(srv, USER_PATH, u.token)
    assert again.uuid == u.uuid
    resumed = again.request("connect", op_id="c2")
    assert resumed == frame("connect_success", w.me, "c2", w, u)
    assert w.silent(0.3)  # no second new_connection: the waiter still serves the same user
    reply = w.request("message_text", {"text": "after"}, to=u.uuid)
    assert reply["payload"]["conversation_id"] == sent["conversation_id"]
    assert again.recv()["payload"]["text"] == "after"
    assert again.request("connect", op_id="c3") == frame("connect_success", w.me, "c3", w, u)
    assert rows(srv, "SELECT count(*) FROM conversation") == [(1,)]


def test_every_tab_of_a_person_gets_the_message(srv, served):
    w, u = served
    tab = Peer(srv, USER_PATH, u.token)
    reply = w.request("message_text", {"text": "to both tabs"}, to=u.uuid)
    assert u.recv() == frame("message_text", reply["payload"], None, w, u)
    assert tab.recv() == frame("message_text", reply["payload"], None, w, u)
    sent = tab.request("message_text", {"text": "from tab"}, op_id="t1")
    # The user's other tab sees its own message as a receipt without op_id.
    assert u.recv() == frame("message_text_success", sent["payload"], None, u, w)


def test_resent_op_id_stores_one_message(srv, served):
    w, u = served
    first = u.request("message_text", {"text": "once"}, op_id="same")
    again = u.request("message_text", {"text": "once"}, op_id="same")
    assert again == first
    assert w.expect("message_text")["payload"] == first["payload"]
    assert w.silent(0.3)
    assert rows(srv, "SELECT count(*) FROM message") == [(1,)]
    # The op_id is per sender: the waiter may reuse it.
    assert w.request("message_text", {"text": "x"}, op_id="same", to=u.uuid)["type"] == (
        "message_text_success"
    )


def test_a_resend_after_the_conversation_ended_gets_the_first_receipt(srv, served):
    """The receipt lost with the link, the agent ends the chat, the user comes back and
    resends: it was told "not connected", and after ``connect`` (a new conversation)
    that the op_id was used for another message, so it never learned that its message
    was stored, and a client sending it again under a new op_id showed it twice."""
    w, u = served
    first = u.request("message_text", {"text": "hello"}, op_id="lost-1")
    w.expect("message_text")
    assert w.request("disconnect", {"uuid": u.uuid})["type"] == "disconnected"
    assert u.expect("disconnected")
    back = Peer(srv, USER_PATH, u.token)
    assert back.request("message_text", {"text": "hello"}, op_id="lost-1") == first
    # Other words under the op_id: no resend, and not connected is what it is told.
    other = back.request("message_text", {"text": "other"}, op_id="lost-1")
    assert other["type"] == "not_connect"
    # In a new conversation the same op_id and words may be a new message (a counter
    # restarted by a reload): refused, as ever, not answered with the old receipt.
    assert back.request("connect")["type"] in ("connect_success", "connect_queue")
    again = back.request("message_text", {"text": "hello"}, op_id="lost-1")
    assert again["type"] == "error" and "op_id was already used" in again["payload"]["message"]
    new = back.request("message_text", {"text": "hello"}, op_id="new-1")
    assert new["payload"]["conversation_id"] != first["payload"]["conversation_id"]
    assert rows(srv, "SELECT count(*) FROM message WHERE content = 'hello'") == [(2,)]


def test_a_waiters_resend_after_the_user_left_gets_the_first_receipt(srv, served):
    """The same for the agent's side: the user ended the chat before the resend. It was
    told "This user is not connected to you" about a message that was stored."""
    w, u = served
    first = w.request("message_text", {"text": "answer"}, op_id="w-1", to=u.uuid)
    u.expect("message_text")
    assert u.request("disconnect")["type"] == "disconnected"
    w.expect("disconnected")
    assert w.request("message_text", {"text": "answer"}, op_id="w-1", to=u.uuid) == first
    # Not to another user, nor another body: those are refused as before.
    other = user(srv)
    assert w.request("message_text", {"text": "answer"}, op_id="w-1", to=other.uuid)["type"] == (
        "error"
    )
    changed = w.request("message_text", {"text": "changed"}, op_id="w-1", to=u.uuid)
    assert changed["payload"]["message"] == "This user is not connected to you"
    # Back with this agent, the same op_id and words are refused, not answered.
    assert u.request("connect")["type"] == "connect_success"
    w.expect("new_connection")
    same = w.request("message_text", {"text": "answer"}, op_id="w-1", to=u.uuid)
    assert "op_id was already used" in same["payload"]["message"]
    assert rows(srv, "SELECT count(*) FROM message") == [(1,)]


def test_wrong_account_on_each_endpoint_is_refused(srv):
    a = agent(srv)
    ws = srv.ws(WAITER_PATH)
    token = srv.host_jwt("not-an-agent")
    assert ws.request({"op_id": 1, "type": "auth", "payload": {"token": token}}) == frame(
        "error", {"message": "This account is not a waiter"}, 1
    )
    ws2 = srv.ws(USER_PATH)
    assert ws2.request({"type": "auth", "payload": {"token": a["token"]}}) == frame(
        "error", {"message": "Waiter accounts sign in on /v1/ws/connect/waiter"}
    )
    assert ws.request({"type": "ready"}) == frame("error", {"message": "Please auth first"})


def test_history_pages_backwards(srv, served):
    _, u = served
    ids = [u.request("message_text", {"text": f"m{i}"})["payload"]["message_id"] for i in range(5)]
    latest = u.request("get_history", {"limit": 2})["payload"]
    assert [i["payload"]["message_id"] for i in latest] == ids[3:]
    older = u.request("get_history", {"limit": 2, "before": ids[3]})["payload"]
    assert [i["payload"]["message_id"] for i in older] == ids[1:3]
    everything = u.request("get_history")["payload"]
    assert [i["payload"]["text"] for i in everything] == [f"m{i}" for i in range(5)]


def test_a_waiter_back_from_a_dropped_connection_gets_what_was_written_meanwhile(server):
    """No socket of the agent heard it; signing in again within the grace replays it after
    new_connection (what the agent's earlier socket heard live is not repeated)."""
    a, w, u = serving(server, "before")
    time.sleep(1.1)  # heard longer ago than a message may lag its stamp (waiter_replay)
    w.close()
    time.sleep(0.5)  # the server has seen the socket go
    sent = u.request("message_text", {"text": "while you were away"}, op_id="away")
    assert sent["type"] == "message_text_success", sent

    back = waiter(server, a)
    assert back.expect("new_connection")["from"] == u.uuid
    missed = back.recv()
    assert missed == frame("message_text", text_payload("while you were away"), None, u, back)
    assert back.silent()  # "before" is not repeated


def test_a_user_requeued_while_the_waiter_was_away_comes_back_without_repeats(make_server):
    """Past the grace the agent's user is requeued; the agent coming back takes the user
    again and gets what was written since its socket went, not what that socket heard
    live (the waiter protocol marks nothing read: every such return sent all of it)."""
    server = make_server(agent_grace_seconds=1)
    a, w, u = serving(server, "heard live")
    time.sleep(1.1)  # heard longer ago than a message may lag its stamp (waiter_replay)
    w.close()
    assert u.recv(5)["type"] == "connect_queue"  # the grace ran out
    queued = u.request("message_text", {"text": "while queued"}, op_id="q")["payload"]
    back = waiter(server, a)
    assert back.expect("new_connection")["from"] == u.uuid
    assert back.recv() == frame("message_text", queued, None, u, back)
    assert back.silent()  # "heard live" is not repeated


def test_a_waiter_whose_link_died_unnoticed_gets_what_was_pushed_into_it(make_server):
    """A connection can die without a word: the server learns of it only when a ping
    goes unanswered. What was pushed into it meanwhile counted as heard, and a user
    handed back to the agent came without it. Only what a pong proves is heard now."""
    server = make_server(agent_grace_seconds=1, ws_ping_seconds=1)
    a, _, u = serving(server, "before the link died")  # the waiter reads no more: no pongs
    dead = u.request("message_text", {"text": "into the dead link"}, op_id="d")["payload"]
    assert u.recv(10)["type"] == "connect_queue"  # w was dropped, then the grace ran out
    queued = u.request("message_text", {"text": "while queued"}, op_id="q")["payload"]
    back = waiter(server, a)
    assert back.expect("new_connection")["from"] == u.uuid
    replayed = [back.recv() for _ in range(3)]
    assert replayed[1:] == [
        frame("message_text", dead, None, u, back),
        frame("message_text", queued, None, u, back),
    ]
    assert replayed[0]["payload"]["text"] == "before the link died"  # never proven heard
    assert back.silent()


def test_a_waiter_back_before_its_dead_link_was_noticed_gets_what_went_into_it(make_server):
    """The usual reconnect of a phone: the new socket signs in while the server still
    holds the old one, dead without a word. The new socket got no replay ("the old one
    heard it all"); it gets what the old one is not known to have heard."""
    server = make_server(ws_ping_seconds=5)  # the old socket is not found dead meanwhile
    a, _, u = serving(server, "before the link died")  # the old socket reads no more
    u.request("message_text", {"text": "into the dead link"}, op_id="d")
    back = waiter(server, a)
    assert back.expect("new_connection")["from"] == u.uuid
    replayed = [back.recv()["payload"]["text"] for _ in range(2)]
    assert replayed == ["before the link died", "into the dead link"]  # neither proven heard
    assert back.silent()
