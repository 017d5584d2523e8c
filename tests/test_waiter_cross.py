"""One domain behind both protocols: waiter-protocol users served by /ws agents and the
other way round; history ownership; many concurrent writers to one socket."""

import json
import threading

import pytest

from tests.test_waiter_support import INT, agent, frame, user, waiter


@pytest.fixture
def srv(make_server):
    return make_server()


def ds_login(srv, token):
    ws = srv.ws("/ws")
    assert ws.request({"action": "login", "data": {"token": token}})["success"]
    return ws


def is_push(action):
    return lambda f: f.get("action") == action


def test_waiter_protocol_user_served_by_a_ds_kefu_agent(srv):
    a = agent(srv)
    desk = ds_login(srv, a["token"])
    u = user(srv)
    reply = u.request("connect", op_id="c")
    assert reply["type"] == "connect_success" and reply["from"] == a["uuid"]
    assert reply["payload"] == {
        "id": str(a["id"]),
        "uuid": a["uuid"],
        "username": a["username"],
        "nickname": a["username"],
        "avatar": "",
    }
    assigned = desk.recv_until(is_push("kefu_conversation_assigned"))
    cid = assigned["conversation_id"]
    assert assigned["kefu_id"] == a["kefu_id"] and assigned["user_id"] == int(u.me["id"])

    sent = u.request("message_text", {"text": "from the waiter protocol"})
    push = desk.recv_until(is_push("kefu_message"))
    assert push["message_id"] == sent["payload"]["message_id"]
    assert (push["content"], push["sender_type"], push["to_uid"]) == (
        "from the waiter protocol",
        1,
        a["kefu_id"],
    )

    answer = desk.request(
        {
            "action": "kefu_message_send",
            "op_id": "s1",
            "data": {
                "conversation_id": cid,
                "content": "from /ws",
                "sender_type": 2,
                "message_type": 1,
            },
        }
    )
    assert answer["success"], answer
    assert u.recv() == frame(
        "message_text",
        {
            "text": "from /ws",
            "message_id": answer["data"]["message_id"],
            "conversation_id": cid,
            "created_at": answer["data"]["created_at"],
        },
        None,
        a["uuid"],
        u,
    )

    ended = desk.request({"action": "kefu_message_end", "data": {"conversation_id": cid}})
    assert ended["success"]
    assert u.recv() == frame("disconnected", None, None, a["uuid"], u)


def test_ds_kefu_user_served_by_a_waiter(srv):
    a = agent(srv)
    w = waiter(srv, a)
    member = srv.create_user("ds-member")
    conv = srv.get("/api/kefu/message/getConversation", member["token"]).json()["data"]
    assert conv["kefu_id"] == a["kefu_id"]
    assert w.recv() == frame(
        "new_connection",
        {
            "id": str(member["id"]),
            "uuid": member["uuid"],
            "username": "ds-member",
            "nickname": "ds-member",
            "avatar": "",
        },
        None,
        member["uuid"],
        w,
    )

    ws = ds_login(srv, member["token"])
    sent = ws.request(
        {
            "action": "kefu_message_send",
            "data": {"conversation_id": conv["id"], "content": "hello from /ws", "sender_type": 1},
        }
    )
    assert sent["success"], sent
    got = w.recv()
    assert got == frame(
        "message_text",
        {
            "text": "hello from /ws",
            "message_id": sent["data"]["message_id"],
            "conversation_id": conv["id"],
            "created_at": sent["data"]["created_at"],
        },
        None,
        member["uuid"],
        w,
    )

    reply = w.request("message_image", {"image": "https://example.com/a.png"}, to=member["uuid"])
    push = ws.recv_until(is_push("kefu_message"))
    assert (push["message_id"], push["message_type"], push["file_url"], push["from_uid"]) == (
        reply["payload"]["message_id"],
        2,
        "https://example.com/a.png",
        a["kefu_id"],
    )
    w.request("disconnect", {"uuid": member["uuid"]})
    end = ws.recv_until(is_push("kefu_message_end"))
    assert (end["conversation_id"], end["operator_type"]) == (conv["id"], 2)


def test_history_only_for_users_the_waiter_served(srv):
    mine, theirs = agent(srv, max_concurrent=1), agent(srv, max_concurrent=1)
    w_mine = waiter(srv, mine)
    alice = user(srv)
    assert alice.request("connect")["from"] == mine["uuid"]
    alice.request("message_text", {"text": "for mine"})
    w_mine.expect("message_text")
    w_theirs = waiter(srv, theirs)
    bob = user(srv)
    assert bob.request("connect")["from"] == theirs["uuid"]
    w_theirs.expect("new_connection")

    for ref in (alice.me["id"], int(alice.me["id"]), alice.uuid):
        got = w_mine.request("get_history", {"user_id": ref}, op_id="h")
        assert got["type"] == "message_history"
        assert [i["payload"]["text"] for i in got["payload"]] == ["for mine"]
    refused = w_theirs.request("get_history", {"user_id": alice.me["id"]}, op_id="h")
    assert refused == frame(
        "error", {"message": "You have not served this user"}, "h", None, w_theirs
    )
    # Still allowed once the conversation has ended: the waiter did serve her.
    alice.request("disconnect")
    w_mine.expect("disconnected")
    assert w_mine.request("get_history", {"user_id": alice.uuid})["type"] == "message_history"
    # And a waiter cannot end someone else's user.
    assert w_mine.request("disconnect", {"uuid": bob.uuid})["payload"] == {
        "message": "This user is not connected to you"
    }
    assert bob.silent(0.2)


def _collect(peer, count, into):
    """Read ``count`` raw frames; each must parse as one JSON object."""
    for _ in range(count):
        into.append(json.loads(peer.ws.sock.recv()))


def test_many_concurrent_writers_to_one_socket_give_whole_frames(srv):
    """The original wrote to one connection from several sockets at once."""
    a = agent(srv, max_concurrent=10)
    w = waiter(srv, a)
    users = [user(srv) for _ in range(6)]
    for u in users:
        u.request("connect")
    for _ in users:
        w.expect("new_connection")
    target = users[0]
    desks = [ds_login(srv, a["token"]) for _ in range(2)]  # the agent's other sockets
    cid = target.request("message_text", {"text": "start"})["payload"]["conversation_id"]
    w.expect("message_text")
    big = "字" * 3000
    per_sender = 20

    def users_send(u):
        for i in range(per_sender):
            u.send("message_text", {"text": f"{big}{i}"}, op_id=f"{u.uuid}-{i}")

    def waiter_sends():
        for i in range(per_sender):
            w.send("message_text", {"text": f"{big}w{i}"}, to=target.uuid)

    def desk_sends(desk, n):
        for i in range(per_sender):
            desk.send(
                {
                    "action": "kefu_message_send",
                    "data": {"conversation_id": cid, "content": f"{big}d{n}-{i}", "sender_type": 2},
                }
            )

    threads = [threading.Thread(target=users_send, args=(u,)) for u in users[1:]]
    threads += [threading.Thread(target=waiter_sends)]
    threads += [threading.Thread(target=desk_sends, args=(d, n)) for n, d in enumerate(desks)]
    received = []
    reader = threading.Thread(target=_collect, args=(target, 3 * per_sender, received))
    reader.start()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    reader.join(30)
    # The one user got every agent message, each a whole frame, from 3 agent sockets.
    assert len(received) == 3 * per_sender
    assert all(f["type"] == "message_text" and f["from"] == a["uuid"] for f in received)
    assert {f["payload"]["text"] for f in received} == (
        {f"{big}w{i}" for i in range(per_sender)}
        | {f"{big}d{n}-{i}" for n in range(2) for i in range(per_sender)}
    )
    # The waiter socket: every user's message, and receipts for what the agent sent here
    # and on its two /ws sockets, each a whole frame.
    frames = [w.recv(10) for _ in range(per_sender * (len(users) - 1) + 3 * per_sender)]
    kinds = {f["type"] for f in frames}
    assert kinds <= {"message_text", "message_text_success"}
    assert sum(f["type"] == "message_text" for f in frames) == per_sender * (len(users) - 1)
    assert all(f["payload"]["message_id"] == INT for f in frames)
    assert w.silent(0.3)


def test_an_image_caption_reaches_a_waiter_protocol_user(srv):
    """A ds/kefu image may carry a caption (its content); the waiter user got the image
    alone, live and in history. It comes as an extra ``text`` beside ``image``."""
    a = agent(srv)
    desk = ds_login(srv, a["token"])
    u = user(srv)
    assert u.request("connect")["type"] == "connect_success"
    cid = desk.recv_until(is_push("kefu_conversation_assigned"))["conversation_id"]
    sent = desk.request(
        {
            "action": "kefu_message_send",
            "data": {
                "conversation_id": cid,
                "content": "our new shop",
                "sender_type": 2,
                "message_type": 2,
                "file_url": "https://example.com/shop.png",
            },
        }
    )
    assert sent["success"], sent
    payload = {
        "image": "https://example.com/shop.png",
        "text": "our new shop",
        "message_id": sent["data"]["message_id"],
        "conversation_id": cid,
        "created_at": sent["data"]["created_at"],
    }
    assert u.recv() == frame("message_image", payload, None, a["uuid"], u)
    history = u.request("get_history")["payload"]
    item = {"from": a["uuid"], "to": u.uuid, "type": "message_image", "payload": payload}
    assert history == [item]


def test_a_waiter_gets_what_no_waiter_socket_heard_whatever_else_the_agent_kept(srv):
    """A waiter's replay came only when the agent came back within the grace with no
    socket at all. A user's messages from the queue, taken by the agent's /ws, and a
    message written while only the agent's waiter socket was down, reached no waiter
    socket: its auth now sends what was written since the agent last had one here."""
    a = agent(srv)
    u = user(srv)
    assert u.request("connect", op_id="c")["type"] == "connect_queue"  # nobody online
    for text in ("waiting 1", "waiting 2"):
        assert u.request("message_text", {"text": text})["type"] == "message_text_success"
    desk = ds_login(srv, a["token"])  # the agent comes online on ds/kefu, takes it
    desk.recv_until(is_push("kefu_conversation_assigned"))
    assert u.expect("connect_success")["type"] == "connect_success"
    w = waiter(srv, a)
    assert w.recv()["type"] == "new_connection"
    assert [w.recv()["payload"]["text"] for _ in range(2)] == ["waiting 1", "waiting 2"]
    assert w.silent(1.1)  # heard longer ago than a message may lag its stamp
    w.close()
    assert u.request("message_text", {"text": "while the waiter was down"})["type"] == (
        "message_text_success"
    )
    back = waiter(srv, a)  # /ws stayed: the agent was online all along
    assert back.recv()["type"] == "new_connection"
    assert back.recv()["payload"]["text"] == "while the waiter was down"
    assert back.silent()  # not what the earlier waiter socket heard
    desk.close()
