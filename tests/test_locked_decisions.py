"""Decisions a job takes on a conversation's row (who may act, whether it is open, what
it counts) hold until it writes. On SQLite the writer lock sees to that; on PostgreSQL
and MySQL a plain read did not, and each test here failed on both (a reviewer's
reproductions). The technique of tests/test_send_race.py: another connection changes
the row inside a transaction held open until the server waits for that row's lock."""

import threading
import time
from datetime import UTC, datetime

import pytest

from tests.support import held, wait_for_a_lock_wait
from tests.support import run_sql as sql
from tests.test_pages_security import user_session
from tests.test_send_race import visitor_send


def read_frame(cid, message_ids, op_id) -> dict:
    """An agent's ds/kefu read mark of its customer's messages."""
    data = {"conversation_id": cid, "message_ids": message_ids, "sender_type": 1}
    return {"action": "kefu_message_read", "data": data, "op_id": op_id}


def reply_to(ws, op_id):
    return ws.recv_until(lambda f: f.get("op_id") == op_id and "success" in f)


def insert_customer_message(db, cid, content, op_id=None, sender_key=None, sender_id=None):
    """What a concurrent send does: lock and bump the conversation, store the message."""
    sql(
        db,
        "UPDATE conversation SET last_seq = last_seq + 1, "
        "kefu_unread_count = kefu_unread_count + 1 WHERE id = ?",
        cid,
    )
    ((seq, user_id),) = sql(db, "SELECT last_seq, user_id FROM conversation WHERE id = ?", cid)
    sender_id = user_id if sender_id is None else sender_id
    sender_key = f"u:{user_id}" if sender_key is None else sender_key
    sql(
        db,
        "INSERT INTO message (conversation_id, seq, sender_type, sender_id, sender_key, "
        "content, message_type, is_read, op_id, created_at, updated_at) "
        "VALUES (?, ?, 1, ?, ?, ?, 1, 0, ?, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)",
        cid,
        seq,
        sender_id,
        sender_key,
        content,
        op_id,
    )
    ((mid,),) = sql(db, "SELECT id FROM message WHERE conversation_id = ? AND seq = ?", cid, seq)
    return mid


def user_sends(user_ws, cid, text, op_id):
    reply = user_ws.request(
        {
            "action": "kefu_message_send",
            "data": {"conversation_id": cid, "content": text, "sender_type": 1},
            "op_id": op_id,
        }
    )
    assert reply["success"], reply
    return reply["data"]["message_id"]


# 1. conversations._mark_read_locked: the unread counter is a COUNT taken on a plain read,
#    written over the counter after the row lock is had.
def test_mark_read_racing_a_customer_message_keeps_the_unread_counter(make_server):
    srv = make_server()
    _, cid, user_ws, agent_ws = srv.conversation("mr-agent", "mr-user")
    m1 = user_sends(user_ws, cid, "m1", "s1")
    with held(srv) as other:
        insert_customer_message(other, cid, "m2")
        agent_ws.send(read_frame(cid, [m1], "r1"))
        wait_for_a_lock_wait(srv)
    reply = reply_to(agent_ws, "r1")
    assert reply["success"], reply
    unread = srv.sql(
        "SELECT count(*) FROM message WHERE conversation_id = ? AND sender_type = 1 "
        "AND is_read = 0",
        cid,
    )[0][0]
    counter = srv.sql("SELECT kefu_unread_count FROM conversation WHERE id = ?", cid)[0][0]
    assert unread == 1
    assert counter == unread, f"kefu_unread_count {counter}, unread messages {unread}"


def reassign(other, cid, from_id, to_id):
    """What a requeue followed by an assignment to another agent commits."""
    sql(other, "UPDATE conversation SET kefu_id = ? WHERE id = ?", to_id, cid)
    sql(other, "UPDATE agent SET current_concurrent = current_concurrent - 1 WHERE id = ?", from_id)
    sql(other, "UPDATE agent SET current_concurrent = current_concurrent + 1 WHERE id = ?", to_id)


# 2. conversations._end_locked: is_party decided on load() (plain); the UPDATE re-checks
#    the status only.
def test_an_agent_whose_conversation_went_to_another_cannot_end_it(make_server):
    srv = make_server()
    _, cid, _, a_ws = srv.conversation("end-a", "end-user")
    ((a_id,),) = srv.sql("SELECT kefu_id FROM conversation WHERE id = ?", cid)
    b = srv.create_agent("end-b")
    with held(srv) as other:
        reassign(other, cid, a_id, b["kefu_id"])
        a_ws.send({"action": "kefu_message_end", "data": {"conversation_id": cid}, "op_id": "e1"})
        wait_for_a_lock_wait(srv)
    reply = reply_to(a_ws, "e1")
    state = srv.sql("SELECT status, kefu_id FROM conversation WHERE id = ?", cid)
    assert not reply["success"], (reply, state)
    assert state == [(1, b["kefu_id"])]


# 2b. conversations._mark_read_locked: the same authorisation on a plain read.
def test_an_agent_whose_conversation_went_to_another_cannot_mark_it_read(make_server):
    srv = make_server()
    _, cid, user_ws, a_ws = srv.conversation("mra-a", "mra-user")
    m1 = user_sends(user_ws, cid, "m1", "s1")
    ((a_id,),) = srv.sql("SELECT kefu_id FROM conversation WHERE id = ?", cid)
    b = srv.create_agent("mra-b")
    with held(srv) as other:
        reassign(other, cid, a_id, b["kefu_id"])
        a_ws.send(read_frame(cid, [m1], "r1"))
        wait_for_a_lock_wait(srv)
    reply = reply_to(a_ws, "r1")
    marked = srv.sql("SELECT is_read FROM message WHERE id = ?", m1)
    assert not reply["success"], (reply, marked)
    assert marked == [(0,)]


# 3. visitors._send_locked: "is it a resend" decided on a plain read (_first_sent); a
#    resend committed meanwhile made append_locked raise DuplicateOp, which nothing in
#    the visitor's path caught (a 500). With the first send's conversation ended as well,
#    the resend opened a new one, found the op_id taken there and was refused as "op_id
#    was already used" (a reviewer's case).
@pytest.mark.parametrize("and_ended", [False, True], ids=["open", "ended"])
def test_a_visitors_resend_racing_its_first_send_is_answered_with_the_first(make_server, and_ended):
    srv = make_server()
    agent = srv.create_agent("vr-agent")
    visitor = srv.ws()
    assert visitor.request(visitor_send(agent, "v1", "first", "vr-visitor"))["success"]
    ((cid, vid),) = srv.sql("SELECT id, visitor_id FROM conversation")
    with held(srv) as other:
        first = insert_customer_message(
            other, cid, "second", op_id="v2", sender_key=f"v:{vid}", sender_id=vid
        )
        if and_ended:
            sql(other, "UPDATE conversation SET status = 2, open_key = NULL WHERE id = ?", cid)
        visitor.send(visitor_send(agent, "v2", "second", "vr-visitor"))
        wait_for_a_lock_wait(srv)
    reply = visitor.recv()
    assert reply == {
        "success": True,
        "message": "Visitor message sent successfully",
        "data": {"message_id": first},
        "op_id": "v2",
    }, srv.log()[-1500:]
    assert "Traceback" not in srv.log()
    # Nothing of an undone attempt is kept: no conversation opened without a message.
    assert srv.sql("SELECT count(*) FROM conversation") == [(1,)]


# 4. customer_sends._send_opening_locked (/chat): the open conversation found on a plain
#    read; it ends meanwhile and the send is refused (SentAfterEnd) instead of opening a
#    new one, as visitors._send_locked now does.
def test_a_chat_page_send_as_its_conversation_ends_opens_a_new_one(make_server):
    srv = make_server()
    srv.create_agent("chat-agent")
    s = user_session(srv, "chat-user")
    r = s.post(srv.url("/chat/send"), data={"content": "first", "csrf_token": s.csrf})
    assert r.status_code < 300, r.text
    ((cid, agent_id),) = srv.sql("SELECT id, kefu_id FROM conversation")
    result = {}

    def post():
        result["r"] = s.post(
            srv.url("/chat/send"),
            data={"content": "second", "csrf_token": s.csrf, "conversation_id": cid},
        )

    with held(srv) as other:
        sql(
            other,
            "UPDATE conversation SET status = 2, open_key = NULL WHERE id = ?",
            cid,
        )
        if agent_id is not None:
            sql(
                other,
                "UPDATE agent SET current_concurrent = current_concurrent - 1 WHERE id = ?",
                agent_id,
            )
        t = threading.Thread(target=post)
        t.start()
        wait_for_a_lock_wait(srv)
    t.join(10)
    r = result["r"]
    stored = srv.sql("SELECT conversation_id, content FROM message ORDER BY id")
    assert r.status_code < 300, (r.status_code, r.text[:300], stored)
    assert stored[-1][1] == "second" and stored[-1][0] != cid


# 5. inactivity._end_if_quiet_locked: "no message since the cutoff" decided on load()
#    (plain); end_locked's UPDATE re-checks only the status.
def test_a_message_written_as_the_inactivity_sweep_ends_it_keeps_it_open(make_server):
    # Quiet for 8 s ends it; the message comes at 5 s, so the sweep that finds the
    # conversation quiet (from 8 s, every 2 s) waits for it, and a lawful end is not
    # due before 13 s: the wait must come by 12.5 s (later, a sweep may end it lawfully).
    srv = make_server(inactive_end_seconds=8)
    agent = srv.create_agent("quiet-agent")
    agent_ws = srv.ws()
    assert agent_ws.request({"action": "login", "data": {"token": agent["token"]}})["success"]
    token = srv.host_jwt("quiet-user")  # no socket: the customer is not present
    cid = srv.get("/api/kefu/message/getConversation", token).json()["data"]["id"]
    time.sleep(5)
    with held(srv) as other:
        now = datetime.now(UTC).replace(tzinfo=None)
        sql(
            other,
            "UPDATE conversation SET last_seq = last_seq + 1, unread_count = unread_count + 1, "
            "last_message_at = ?, updated_at = ? WHERE id = ?",
            now,
            now,
            cid,
        )
        ((seq,),) = sql(other, "SELECT last_seq FROM conversation WHERE id = ?", cid)
        sql(
            other,
            "INSERT INTO message (conversation_id, seq, sender_type, sender_id, sender_key, "
            "content, message_type, is_read, created_at, updated_at) "
            "VALUES (?, ?, 2, ?, ?, ?, 1, 0, ?, ?)",
            cid,
            seq,
            agent["kefu_id"],
            f"a:{agent['kefu_id']}",
            "still there",
            now,
            now,
        )
        wait_for_a_lock_wait(srv, 7.5)  # the sweep, past its cutoff, waits for the row
    time.sleep(0.5)
    state = srv.sql("SELECT status FROM conversation WHERE id = ?", cid)
    assert state == [(1,)], "ended by the inactivity sweep 3-8 s after a message"


# 6. conversations._mark_read_locked: which ids are still unread is read plainly, and the
#    UPDATE marks them again without re-checking is_read: a mark racing another (two tabs)
#    reports and announces messages it did not mark.
def test_marking_read_what_another_mark_just_marked_announces_nothing(make_server):
    srv = make_server()
    _, cid, user_ws, agent_ws = srv.conversation("dm-agent", "dm-user")
    m1 = user_sends(user_ws, cid, "m1", "s1")
    with held(srv) as other:
        sql(other, "UPDATE message SET is_read = 1, read_at = CURRENT_TIMESTAMP WHERE id = ?", m1)
        sql(other, "UPDATE conversation SET kefu_unread_count = 0 WHERE id = ?", cid)
        agent_ws.send(read_frame(cid, [m1], "r1"))
        wait_for_a_lock_wait(srv)
    reply = reply_to(agent_ws, "r1")
    assert reply["data"] == {"updated_count": 0}, reply
