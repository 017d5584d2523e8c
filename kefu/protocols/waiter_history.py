"""The waiter protocol's history frames: a user's own messages, a waiter's messages with
a user or visitor it has served, and a waiter's past sessions (waiter.py's tables name
them, as waiter_frames' handlers)."""

from kefu import clock
from kefu.errors import Forbidden, Invalid, refuse_nul
from kefu.models import SENDER_USER
from kefu.protocols import waiter_wire as wire
from kefu.protocols.fields import Fields
from kefu.protocols.waiter_frames import signed_in
from kefu.protocols.waiter_wire import frame
from kefu.services import history

NOT_SERVED = "You have not served this user"


def _page(data: Fields):
    return data.id("before", required=False), data.integer("limit")


def _history_page(data: Fields):
    """(before, limit, after_id): page backwards with ``before``, or resync with
    ``after_id`` (the last message id the client has)."""
    return (*_page(data), data.id("after_id", required=False))


def _history_item(msg, sender, recipient) -> dict:
    """One stored message as a history list shows it: the live frame's fields."""
    return {
        "from": sender.uuid if sender else None,
        "to": recipient.uuid if recipient else None,
        "type": wire.message_type_name(msg),
        "payload": wire.message_payload(msg, msg.conversation_id),
    }


def _visitor_history_item(msg, visitor_id: str, agent) -> dict:
    """A message of a visitor's conversation with ``agent``, the only one who writes there."""
    visitor = wire.VisitorPeer(visitor_id)
    if msg.sender_type == SENDER_USER:
        return _history_item(msg, visitor, agent)
    return _history_item(msg, agent, visitor)


def _session_item(session) -> dict:
    conv = session.conversation
    return {
        "conversation_id": conv.id,
        "user": wire.customer_of(conv).profile(),
        "status": conv.status,
        "rating": session.rating,
        "created_at": clock.wire(session.created_at),
        "ended_at": clock.wire(session.ended_at),
        "last_message_at": clock.wire(session.last_message_at),
    }


def _send_history(conn, req, who, user_id: int) -> list:
    entries = history.user_messages(user_id, *_history_page(req.data))
    items = [_history_item(e.message, e.sender, e.recipient) for e in entries]
    conn.send(frame("message_history", items, req.op_id, None, who.person))
    return []


def _send_visitor_history(conn, req, who, visitor_id: str) -> list:
    """A visitor's messages with this waiter (visitors talk to the agent they name)."""
    found = history.visitor_messages(who.kefu_id, visitor_id, *_history_page(req.data))
    if found is None:
        raise Forbidden(NOT_SERVED)
    items = [_visitor_history_item(m, visitor_id, who.person) for m in found]
    conn.send(frame("message_history", items, req.op_id, None, who.person))
    return []


def user_history(conn, req, live):
    who = signed_in(conn)
    return _send_history(conn, req, who, who.user_id)


def waiter_history(conn, req, live):
    who = signed_in(conn)
    ref = req.data.data.get("user_id")
    if ref is None or ref == "":
        raise Invalid("user_id is required")
    if isinstance(ref, bool) or not isinstance(ref, str | int):
        raise Invalid("user_id must be a user's id or uuid")
    visitor_id = wire.visitor_id_of(ref)
    if visitor_id is not None:
        refuse_nul("user_id", ref)  # as find_user: PostgreSQL refuses the lookup
        return _send_visitor_history(conn, req, who, visitor_id)
    user_id = history.find_user(ref)
    # One answer for "no such user" and "not yours": a waiter learns nothing it may not.
    if user_id is None or not history.has_served(who.kefu_id, user_id):
        raise Forbidden(NOT_SERVED)
    return _send_history(conn, req, who, user_id)


def waiter_sessions(conn, req, live):
    who = signed_in(conn)
    sessions = history.agent_sessions(who.kefu_id, *_page(req.data))
    items = [_session_item(s) for s in sessions]
    conn.send(frame("session_history", items, req.op_id, None, who.person))
    return []
