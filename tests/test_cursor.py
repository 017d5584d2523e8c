"""Resync cursors: message/list ``after_id`` and the waiter ``get_history`` ``after_id``."""

from tests.support import Server
from tests.test_queue import login, open_conversation
from tests.test_waiter_support import agent, user, waiter


def test_message_list_after_id(server):
    server.create_agent("cursor-agent")
    token = Server.host_jwt("cursor-user")
    cid = open_conversation(server, token)["id"]
    ws = login(server, token)
    ids = []
    for n in range(12):
        ws.send(
            {"action": "kefu_message_send", "data": {"conversation_id": cid, "content": f"c{n}"}}
        )
        ids.append(ws.recv_until(lambda f: "success" in f)["data"]["message_id"])

    def after(after_id, size=100):
        reply = server.get(
            f"/api/kefu/message/list?conversation_id={cid}&after_id={after_id}&page_size={size}",
            token,
        )
        return reply

    assert [m["content"] for m in after(0).json()["data"]] == [f"c{n}" for n in range(12)]
    assert [m["id"] for m in after(ids[4]).json()["data"]] == ids[5:]
    assert [m["id"] for m in after(ids[4], size=3).json()["data"]] == ids[5:8]  # oldest first
    assert after(ids[-1]).json()["data"] == []
    foreign = after(10**9)
    assert (foreign.status_code, foreign.json()["message"]) == (
        422,
        "after_id is not a message of this conversation",
    )
    stranger = server.get(
        f"/api/kefu/message/list?conversation_id={cid}&after_id=0",
        Server.host_jwt("cursor-stranger"),
    )
    assert stranger.status_code == 404
    # Leave no one queued for the next test: its ready waiter would be taking this
    # customer as its user connects (on MySQL that connect is told its place first).
    end = {"action": "kefu_message_end", "data": {"conversation_id": cid}}
    assert ws.request(end)["success"]
    ws.close()


def test_waiter_history_after_id_spans_conversations(server):
    served_by = agent(server)
    w = waiter(server, served_by)
    w.request("ready")
    u = user(server)
    assert u.request("connect")["type"] == "connect_success"
    sent = [
        u.request("message_text", {"text": f"first-{n}"})["payload"]["message_id"] for n in range(3)
    ]
    assert u.request("disconnect")["type"] == "disconnected"
    assert u.request("connect")["type"] == "connect_success"
    sent += [
        u.request("message_text", {"text": f"second-{n}"})["payload"]["message_id"]
        for n in range(2)
    ]

    history = u.request("get_history", {"after_id": sent[1]}, op_id="resync")
    assert history["type"] == "message_history" and history["op_id"] == "resync"
    assert [item["payload"]["message_id"] for item in history["payload"]] == sent[2:]
    refused = u.request("get_history", {"after_id": 10**9})
    assert refused["type"] == "error"
    assert refused["payload"] == {"message": "after_id is not one of this user's messages"}
    for peer in (u, w):
        peer.close()
