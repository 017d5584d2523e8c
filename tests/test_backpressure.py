"""Pushes to a socket whose reader has stopped: frames queue up, are written whole and
in order once it reads again, and nobody else waits for it meanwhile."""

import socket

import pytest

from tests.support import INT

pytestmark = pytest.mark.wire_only  # runs in the SQLite pass only (tests/passes.py)

BIG = "字" * 4990  # near the longest text a message may have: 15 KB of UTF-8
COUNT = 400  # 6 MB: more than a loopback socket buffers (tcp_wmem allows 4 MB)


def test_stalled_reader_gets_every_frame_whole_and_in_order(server):
    agent = server.create_agent("bp-agent")
    token = server.host_jwt("bp-user")
    # A receive buffer of a few KB: the server's writes back up after the first frames.
    stalled = server.ws(sockopt=((socket.SOL_SOCKET, socket.SO_RCVBUF, 4096),), timeout=20)
    assert stalled.request({"action": "login", "data": {"token": agent["token"]}})["success"]
    watcher = server.ws()  # the same agent on a socket that keeps reading
    assert watcher.request({"action": "login", "data": {"token": agent["token"]}})["success"]
    cid = server.get("/api/kefu/message/getConversation", token).json()["data"]["id"]
    assert watcher.recv()["action"] == "kefu_conversation_assigned"
    user = server.ws()
    assert user.request({"action": "login", "data": {"token": token}})["success"]

    sent = []
    for i in range(COUNT):
        reply = user.request(
            {
                "action": "kefu_message_send",
                "data": {"conversation_id": cid, "content": f"{i}:{BIG}"},
            }
        )
        assert reply["success"], reply
        sent.append(reply["data"]["message_id"])
        # The healthy socket is served at once, whatever the stalled one has pending.
        push = watcher.recv(5)
        assert (push["action"], push["message_id"]) == ("kefu_message", sent[-1])

    assert stalled.recv()["action"] == "kefu_conversation_assigned"
    pushes = [stalled.recv() for _ in range(COUNT)]
    assert [p["message_id"] for p in pushes] == sent
    assert [p["content"] for p in pushes] == [f"{i}:{BIG}" for i in range(COUNT)]
    assert all(p == {**p, "action": "kefu_message", "message_id": INT} for p in pushes)
    assert stalled.silent()
    # Still a working socket afterwards.
    assert stalled.request({"action": "ping"})["message"] == "pong"
    for ws in (stalled, watcher, user):
        ws.close()
