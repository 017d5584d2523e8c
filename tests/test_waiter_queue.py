"""The live queue, capacity refills, kickout, agent drops and idle users, end to end.

Each test names the fault of the original protocol it guards against.
"""

import time

from tests.test_waiter_support import (
    WAITER_PATH,
    Peer,
    agent,
    closed,
    frame,
    rows,
    user,
    waiter,
)


def connect(u, op_id="c"):
    return u.request("connect", op_id=op_id)


def test_queue_serves_head_first_and_resends_places(make_server):
    """The original dropped the head of the queue and served the tail twice."""
    srv = make_server()
    w = waiter(srv, agent(srv, max_concurrent=1))
    first = user(srv)
    assert connect(first)["type"] == "connect_success"
    w.expect("new_connection")
    queued = [user(srv) for _ in range(3)]
    for place, u in enumerate(queued, start=1):
        assert connect(u, f"c{place}") == frame(
            "connect_queue", {"location": place}, f"c{place}", None, u
        )
    for u in queued:
        assert u.silent(0.2)  # joining behind someone does not move anyone

    # The served user leaves: the head is served, everyone behind moves up by one.
    first.request("disconnect")
    assert w.expect("disconnected")["from"] == first.uuid
    assert w.expect("new_connection") == frame("new_connection", queued[0].me, None, queued[0], w)
    assert queued[0].recv() == frame("connect_success", w.me, "c1", w, queued[0])
    assert queued[1].recv() == frame("connect_queue", {"location": 1}, "c2", None, queued[1])
    assert queued[2].recv() == frame("connect_queue", {"location": 2}, "c3", None, queued[2])

    # Someone waiting gives up: only those behind move.
    assert queued[1].request("disconnect", op_id="bye")["type"] == "disconnected"
    assert queued[2].recv() == frame("connect_queue", {"location": 1}, "c3", None, queued[2])
    assert w.silent(0.3) and queued[0].silent(0.1)

    # The waiter frees its place: the last one is served, exactly once.
    w.request("disconnect", {"uuid": queued[0].uuid})
    assert w.expect("new_connection")["from"] == queued[2].uuid
    assert queued[2].recv()["type"] == "connect_success"
    assert w.silent(0.3)
    served = rows(srv, "SELECT user_id FROM conversation WHERE kefu_id IS NOT NULL ORDER BY id")
    assert served == [(int(u.me["id"]),) for u in (first, queued[0], queued[2])]


def test_waiter_disconnect_keeps_its_other_users(make_server):
    """The original's explicit disconnect orphaned the waiter's other users."""
    srv = make_server()
    w = waiter(srv, agent(srv, max_concurrent=3))
    users = [user(srv) for _ in range(3)]
    for u in users:
        assert connect(u)["type"] == "connect_success"
        w.expect("new_connection")
    assert w.request("disconnect", {"uuid": users[1].uuid}, op_id="d")["type"] == "disconnected"
    assert users[1].recv()["type"] == "disconnected"
    for u in (users[0], users[2]):
        assert u.silent(0.1)
        u.request("message_text", {"text": f"still here {u.uuid}"})
        assert w.expect("message_text")["from"] == u.uuid
        reply = w.request("message_text", {"text": "yes"}, to=u.uuid)
        assert reply["type"] == "message_text_success"
        assert u.recv()["payload"]["text"] == "yes"
    assert rows(srv, "SELECT status, kefu_id IS NOT NULL FROM conversation ORDER BY id") == [
        (1, 1),
        (2, 1),
        (1, 1),
    ]
    assert rows(srv, "SELECT current_concurrent FROM agent") == [(2,)]


def test_capacity_refilled_on_user_end_and_on_ready(make_server):
    """The original left freed capacity idle until something unrelated happened."""
    srv = make_server()
    w = waiter(srv, agent(srv, max_concurrent=2))
    assert w.request("unready", op_id="u") == frame("unready", None, "u", None, w)
    users = [user(srv) for _ in range(3)]
    for place, u in enumerate(users, start=1):
        assert connect(u)["payload"] == {"location": place}
    assert w.silent(0.3)  # unready: nobody is handed over

    assert w.request("ready", op_id="r") == frame("ready", None, "r", None, w)
    assert w.recv() == frame("new_connection", users[0].me, "r", users[0], w)
    assert w.recv() == frame("new_connection", users[1].me, "r", users[1], w)
    assert users[0].recv()["type"] == users[1].recv()["type"] == "connect_success"
    assert users[2].recv() == frame("connect_queue", {"location": 1}, "c", None, users[2])

    # Unready keeps current users; their end frees a place that is not refilled…
    w.request("unready")
    users[0].request("disconnect")
    assert w.expect("disconnected")["from"] == users[0].uuid
    assert w.silent(0.3)
    # …until the waiter is ready again; then an end refills at once.
    w.request("ready")
    assert w.expect("new_connection")["from"] == users[2].uuid
    late = user(srv)
    assert connect(late)["payload"] == {"location": 1}
    users[1].request("disconnect")
    assert w.expect("new_connection")["from"] == late.uuid
    assert late.recv()["type"] == "connect_success"


def test_a_waiter_signing_in_while_unready_is_told(make_server):
    """The switch outlives the socket: an agent back from a drop (or switched off on the
    dashboard) was not told it would get no users until it sent ready."""
    srv = make_server()
    a = agent(srv)
    w = waiter(srv, a)
    assert w.silent(0.3)  # a new agent is ready: nothing to tell
    w.request("unready")
    w.close()
    again = Peer(srv, WAITER_PATH, a["token"], op_id="back")
    assert again.recv() == frame("unready", None, None, None, again)
    assert again.silent(0.3)
    assert again.request("ready", op_id="r") == frame("ready", None, "r", None, again)
    again.close()
    assert waiter(srv, a).silent(0.3)  # ready again: nothing to tell


def test_kickout_keeps_the_agents_users(make_server):
    srv = make_server()
    a = agent(srv, max_concurrent=2)
    old = waiter(srv, a)
    users = [user(srv) for _ in range(2)]
    for u in users:
        connect(u)
        old.expect("new_connection")
    new = Peer(srv, WAITER_PATH, a["token"], op_id="again")
    assert old.recv() == frame("kickout", None, None, None, old)
    assert closed(old)
    # The new socket is told about every user the agent serves, for its auth request.
    assert [new.recv() for _ in users] == [
        frame("new_connection", u.me, "again", u, new) for u in users
    ]
    for u in users:
        assert u.silent(0.1)  # nobody was dropped or told anything
        u.request("message_text", {"text": "hello new tab"})
        assert new.expect("message_text")["from"] == u.uuid
        assert (
            new.request("message_text", {"text": "hi"}, to=u.uuid)["type"] == "message_text_success"
        )
    assert rows(srv, "SELECT status, kefu_id FROM conversation") == [(1, a["kefu_id"])] * 2


def test_agent_back_within_grace_keeps_everything(make_server):
    srv = make_server(agent_grace_seconds=1)
    a = agent(srv)
    w = waiter(srv, a)
    u = user(srv)
    connect(u)
    w.expect("new_connection")
    w.close()
    back = waiter(srv, a)
    assert back.recv() == frame("new_connection", u.me, "auth-1", u, back)
    assert u.silent(1.5)  # the grace passes: the user is not re-queued
    assert (
        back.request("message_text", {"text": "sorry"}, to=u.uuid)["type"] == "message_text_success"
    )
    assert u.recv()["payload"]["text"] == "sorry"


def test_agent_gone_past_grace_requeues_users_at_the_head(make_server):
    srv = make_server(agent_grace_seconds=1)
    a = agent(srv, max_concurrent=2)
    w = waiter(srv, a)
    served = [user(srv) for _ in range(2)]
    for u in served:
        connect(u, "c")
        w.expect("new_connection")
    waiting = user(srv)
    assert connect(waiting, "cw")["payload"] == {"location": 1}
    w.close()
    # After the grace the agent's users go back to the head, in their order.
    assert served[0].recv(4) == frame("connect_queue", {"location": 1}, "c", None, served[0])
    assert served[1].recv(4) == frame("connect_queue", {"location": 2}, "c", None, served[1])
    assert waiting.recv(4) == frame("connect_queue", {"location": 3}, "cw", None, waiting)
    assert rows(srv, "SELECT count(*) FROM conversation WHERE kefu_id IS NULL AND status = 1") == [
        (3,)
    ]
    # The agent comes back: the head of the queue is served first.
    back = waiter(srv, a)
    got = [back.expect("new_connection")["from"] for _ in served]
    assert got == [u.uuid for u in served]
    for u in served:
        assert u.recv() == frame("connect_success", back.me, "c", back, u)
    assert waiting.recv() == frame("connect_queue", {"location": 1}, "cw", None, waiting)
    assert back.silent(0.3)


def test_idle_user_is_warned_then_disconnected(make_server):
    srv = make_server(user_idle_seconds=1, user_idle_grace_seconds=1)
    w = waiter(srv, agent(srv))
    u = user(srv)
    connect(u)
    w.expect("new_connection")
    started = time.monotonic()
    assert u.recv(3) == frame(
        "idle", {"message": "Idle for 1 seconds; disconnecting in 1 seconds"}, None, None, u
    )
    assert u.recv(3) == frame("disconnected", None, None, w, u)
    assert closed(u)
    assert time.monotonic() - started >= 1.5
    assert w.recv(3) == frame("disconnected", None, None, u, w)
    assert rows(srv, "SELECT status FROM conversation") == [(2,)]


def test_a_frame_during_the_grace_keeps_the_user(make_server):
    srv = make_server(user_idle_seconds=1, user_idle_grace_seconds=1)
    w = waiter(srv, agent(srv))
    u = user(srv)
    connect(u)
    w.expect("new_connection")
    assert u.recv(3)["type"] == "idle"
    u.request("message_text", {"text": "still here"})
    assert w.expect("message_text")["payload"]["text"] == "still here"
    assert u.recv(3)["type"] == "idle"  # silent again: warned again, not cut
    assert rows(srv, "SELECT status FROM conversation") == [(1,)]


def test_idle_socket_of_a_user_with_another_live_socket_keeps_the_conversation(make_server):
    srv = make_server(user_idle_seconds=1, user_idle_grace_seconds=1)
    w = waiter(srv, agent(srv))
    idle_tab = user(srv)
    connect(idle_tab)
    w.expect("new_connection")
    other = srv.ws("/ws")  # the same person on ds/kefu stays
    assert other.request({"action": "login", "data": {"token": idle_tab.token}})["success"]
    assert idle_tab.recv(3)["type"] == "idle"
    assert closed(idle_tab)
    assert w.silent(0.3)
    assert rows(srv, "SELECT status FROM conversation") == [(1,)]


def test_messages_written_while_queued_reach_the_agent_who_takes_it(make_server):
    """The spec README: messages sent into a waiting conversation are kept and shown to
    the agent who takes it. A waiter got only new_connection: an empty chat."""
    srv = make_server()
    w = waiter(srv, agent(srv, max_concurrent=1))
    first = user(srv)
    connect(first)
    w.expect("new_connection")
    waiting = user(srv)
    assert connect(waiting, "cw")["payload"] == {"location": 1}
    sent = [
        waiting.request("message_text", {"text": "anyone?"})["payload"],
        waiting.request("message_image", {"image": "https://example.com/q.png"})["payload"],
        waiting.request("message_text", {"text": "hello??"})["payload"],
    ]
    assert w.silent(0.2)
    first.request("disconnect")
    assert w.expect("disconnected")["from"] == first.uuid
    assert w.recv() == frame("new_connection", waiting.me, None, waiting, w)
    kinds = ["message_text", "message_image", "message_text"]
    assert [w.recv() for _ in sent] == [
        frame(kind, payload, None, waiting, w) for kind, payload in zip(kinds, sent, strict=True)
    ]
    assert w.silent(0.3)
    assert waiting.recv() == frame("connect_success", w.me, "cw", w, waiting)
    # From now on, live as usual.
    live = waiting.request("message_text", {"text": "thanks"})["payload"]
    assert w.recv() == frame("message_text", live, None, waiting, w)


def test_messages_written_during_the_grace_reach_the_next_agent(make_server):
    """After a requeue the next agent gets what the agent side has not read: the first
    agent (on ds/kefu) read "before"; "during" came while it was away."""
    srv = make_server(agent_grace_seconds=1)
    first = agent(srv)
    desk = srv.ws("/ws")
    assert desk.request({"action": "login", "data": {"token": first["token"]}})["success"]
    u = user(srv)
    assert connect(u)["from"] == first["uuid"]
    receipt = u.request("message_text", {"text": "before"})["payload"]
    cid, before = receipt["conversation_id"], receipt["message_id"]
    desk.recv_until(lambda f: f.get("action") == "kefu_message")
    read = desk.request(
        {
            "action": "kefu_message_read",
            "data": {"conversation_id": cid, "message_ids": [before], "sender_type": 1},
        }
    )
    assert read["data"] == {"updated_count": 1}
    second = waiter(srv, agent(srv))  # online, ready, idle: it takes the requeued user
    desk.close()
    during = u.request("message_text", {"text": "during"})["payload"]
    assert second.recv(5) == frame("new_connection", u.me, None, u, second)
    assert second.recv() == frame("message_text", during, None, u, second)
    assert second.silent(0.3)
    assert u.recv() == frame("connect_success", second.me, "c", second, u)
