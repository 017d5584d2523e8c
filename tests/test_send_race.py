"""Sends that race the end of their conversation.

A waiter-protocol user and a visitor name no conversation: the server finds the open
one, then stores the message after reading that row again under its lock. The end comes
from another connection (as from another worker or the CLI), made to land between the
two reads by holding its transaction open until the send waits for it.
"""

from tests.support import held, run_sql, wait_for_a_lock_wait
from tests.test_waiter_support import frame, rows, serving

NOT_CONNECTED = {"message": "Not connected to a waiter; send connect first"}


def test_a_send_into_a_conversation_ending_as_it_is_sent_is_not_connect(make_server):
    """The user hears what it hears when the conversation had ended before. On MySQL the
    message used to be stored into the ended conversation: its row was read unlocked."""
    srv = make_server()
    _, w, u = serving(srv, "before")
    (conversation_id,) = rows(srv, "SELECT id FROM conversation")[0]
    # The handler's read still sees the conversation open; the store waits.
    with held(srv) as other:
        run_sql(other, "UPDATE conversation SET status = 2 WHERE id = ?", conversation_id)
        u.send("message_text", {"text": "late"}, op_id="m2")
        wait_for_a_lock_wait(srv)
    reply = u.ws.recv()

    assert reply == frame("not_connect", NOT_CONNECTED, "m2", None, u)
    assert rows(srv, "SELECT content FROM message ORDER BY id") == [("before",)]
    assert w.silent(0.3)  # nothing reached the agent either
    # The socket is still in use: the user is told the same again, and may connect.
    assert u.request("message_text", {"text": "again"}, op_id="m3")["type"] == "not_connect"


def test_a_visitors_message_as_its_conversation_ends_opens_a_new_one(make_server):
    """A visitor names its agent: the message goes into a new conversation with it, as
    if sent a moment later. It used to go into the ended one (PostgreSQL, MySQL)."""
    srv = make_server()
    agent = srv.create_agent("race-agent")
    visitor = srv.ws()
    assert visitor.request(visitor_send(agent, "v1", "first"))["success"]
    (ended,) = rows(srv, "SELECT id FROM conversation")[0]
    with held(srv) as other:
        end = "UPDATE conversation SET status = 2, open_key = NULL WHERE id = ?"
        run_sql(other, end, ended)
        visitor.send(visitor_send(agent, "v2", "second"))
        wait_for_a_lock_wait(srv)
    reply = visitor.recv()

    assert reply["success"] is True, reply
    stored = rows(srv, "SELECT conversation_id, content FROM message ORDER BY id")
    assert stored[0] == (ended, "first")
    assert stored[1][1] == "second" and stored[1][0] != ended
    assert rows(srv, "SELECT status FROM conversation WHERE id = ?", stored[1][0]) == [(1,)]


def visitor_send(agent: dict, op_id: str, content: str, visitor_id="visitor-racing") -> dict:
    data = {"visitor_id": visitor_id, "kefu_id": str(agent["kefu_id"]), "content": content}
    return {"action": "kefu_message_visitor_send", "op_id": op_id, "data": data}
