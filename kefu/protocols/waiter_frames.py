"""The waiter protocol's frame handlers (waiter.py's tables, one per role, name them).

A handler validates its payload, calls a service, sends its reply (echoing ``op_id``)
and returns the domain events; waiter.py publishes them after the reply is queued.
"""

from dataclasses import dataclass

from kefu import clock
from kefu.errors import (
    Conflict,
    Forbidden,
    Invalid,
    KefuError,
    Unauthorized,
    digits_as_int,
    refuse_nul,
)
from kefu.models import IMAGE, SENDER_USER, TEXT
from kefu.protocols import waiter_codec as codec
from kefu.protocols.fields import Fields, op_key
from kefu.protocols.waiter_codec import frame
from kefu.services import (
    conversations,
    customer_sends,
    history,
    message_rules,
    messages,
    routing,
)
from kefu.services.snapshots import conversation_ref
from kefu.services.visitors import VISITOR_ID_MAX

NOT_YOURS = "This user is not connected to you"
NOT_SERVED = "You have not served this user"
NOT_CONNECTED = "Not connected to a waiter; send connect first"
ADDRESS_MAX = len(codec.VISITOR_PREFIX) + VISITOR_ID_MAX  # a visitor's; a user uuid has 36


class NotConnected(KefuError):
    """A user frame that needs a conversation came without one: ``not_connect``."""


@dataclass(frozen=True)
class Request:
    op_id: object
    to: str | None
    data: Fields


def _signed_in(conn):
    if conn.principal is None:
        raise Unauthorized("Please auth first")
    return conn.principal


def _body(data: Fields, kind: str):
    """(content, message_type, file_url) of a message_text / message_image payload."""
    if kind == "message_text":
        text = data.text("text", required=True)
        return message_rules.check_body(text, TEXT, None, names=("text", "image"))
    image = data.text("image", required=True, max_len=message_rules.FILE_URL_MAX)
    return message_rules.check_body("", IMAGE, image, names=("text", "image"))


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
        "type": codec.message_type_name(msg),
        "payload": codec.message_payload(msg, msg.conversation_id),
    }


def _visitor_history_item(msg, visitor_id: str, agent) -> dict:
    """A message of a visitor's conversation with ``agent``, the only one who writes there."""
    visitor = codec.VisitorPeer(visitor_id)
    if msg.sender_type == SENDER_USER:
        return _history_item(msg, visitor, agent)
    return _history_item(msg, agent, visitor)


def _session_item(session) -> dict:
    conv = session.conversation
    return {
        "conversation_id": conv.id,
        "user": codec.customer_of(conv).profile(),
        "status": conv.status,
        "rating": session.rating,
        "created_at": clock.wire(session.created_at),
        "ended_at": clock.wire(session.ended_at),
        "last_message_at": clock.wire(session.last_message_at),
    }


# -- user frames ----------------------------------------------------------------


def user_connect(conn, req, live):
    """Open (or resume) the user's conversation: its agent, or its place in the queue."""
    who = _signed_in(conn)
    conv, place, events = conversations.connect(who)
    ref = conversation_ref(conv)
    if ref.agent is None and conn.state.get("served", (None,))[0] == ref.id:
        # Assigned while we looked (drivers that yield): the push said connect_success,
        # so the reply must not say the queue. Read the conversation once more.
        ref = conversation_ref(conversations.current_for_user(who.user_id) or conv)
    if ref.agent is not None:
        conn.state["served"] = (ref.id, ref.kefu_id)
        conn.state.pop("location", None)
        conn.send(frame("connect_success", ref.agent.profile(), req.op_id, ref.agent, ref.customer))
    else:
        conn.state["location"] = place
        conn.send(frame("connect_queue", {"location": place}, req.op_id, None, ref.customer))
    # Only now may queue pushes follow: the reply is queued first even where the database
    # driver yields (PostgreSQL, MySQL) and a coalesced queue update runs in between.
    conn.state["connect_op"] = req.op_id
    return events


def _current(who):
    conv = conversations.current_for_user(who.user_id)
    if conv is None:
        raise NotConnected(NOT_CONNECTED)
    return conversation_ref(conv)


def user_disconnect(conn, req, live):
    who = _signed_in(conn)
    ref = _current(who)
    events = conversations.end(ref.id, who)
    codec.forget_conversation(conn)
    if not events:  # the agent ended it meanwhile: its "disconnected" push came already
        raise NotConnected(NOT_CONNECTED)
    conn.send(frame("disconnected", None, req.op_id, ref.agent, ref.customer))
    return events


def _send_with_receipt(conn, req, kind, who, ref, body, sender, receiver):
    """Store the message (idempotent by op_id), answer ``<kind>_success`` with its id."""
    msg, events, _ = messages.send(who, ref.id, *body, op_key(req.op_id))
    payload = codec.message_payload(msg, msg.conversation_id)
    conn.send(frame(f"{kind}_success", payload, req.op_id, sender, receiver))
    return events


def user_send(kind: str):
    def handler(conn, req, live):
        who = _signed_in(conn)
        body = _body(req.data, kind)
        try:
            ref = _current(who)  # a waiting conversation takes messages too (spec README)
            return _send_with_receipt(conn, req, kind, who, ref, body, ref.customer, ref.agent)
        except (NotConnected, message_rules.OpIdReused):
            # A resend after its conversation ended (the receipt lost with the link): the
            # stored message's receipt, as on ds/kefu. Refused, the client could not learn
            # it was stored, and sent it again under a new op_id: twice for the agent.
            stored = customer_sends.resent(who, *body, op_key(req.op_id))
            if stored is None:
                raise
        first, ref = stored
        payload = codec.message_payload(first, first.conversation_id)
        conn.send(frame(f"{kind}_success", payload, req.op_id, ref.customer, ref.agent))
        return []

    return handler


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
    who = _signed_in(conn)
    return _send_history(conn, req, who, who.user_id)


def user_rate(conn, req, live):
    """``{"rate": 1..5, "conversation_id"?}``: rates the given (or the latest) ended
    conversation of this user."""
    who = _signed_in(conn)
    score = digits_as_int(req.data.data.get("rate"))  # "5" as every other number
    if score is None:
        raise Invalid("rate is required")
    conversations.check_score(score)
    conversation_id = req.data.id("conversation_id", required=False)
    conversation_id = conversation_id or history.latest_ended(who.user_id)
    if conversation_id is None:
        raise Conflict("There is no ended conversation to rate")
    events = conversations.rate(conversation_id, who, score)
    payload = {"conversation_id": conversation_id, "rate": score}
    conn.send(frame("rate_success", payload, req.op_id, None, who.person))
    return events


# -- waiter frames --------------------------------------------------------------


def waiter_switch(accepting: bool):
    def handler(conn, req, live):
        who = _signed_in(conn)
        events = routing.set_accepting(who.kefu_id, accepting)
        conn.state["accepting"] = accepting
        conn.send(frame("ready" if accepting else "unready", None, req.op_id, None, who.person))
        return events

    return handler


def _own_user(who, address) -> object:
    """The open conversation of this waiter with the user (uuid) or visitor (address)."""
    if not isinstance(address, str) or not address:
        raise Invalid("the user's uuid is required")
    visitor_id = codec.visitor_id_of(address)
    if visitor_id is not None:
        ref = history.open_with_visitor(who.kefu_id, visitor_id)
    else:
        ref = history.open_with(who.kefu_id, address)
    if ref is None:
        raise Forbidden(NOT_YOURS)
    return ref


def waiter_send(kind: str):
    def handler(conn, req, live):
        who = _signed_in(conn)
        content, message_type, file_url = _body(req.data, kind)
        if req.to is None:
            raise Invalid("to is required: the uuid of one of your users")
        ref = _own_user(who, req.to)
        body = (content, message_type, file_url)
        customer = codec.customer_of(ref)
        return _send_with_receipt(conn, req, kind, who, ref, body, ref.agent, customer)

    return handler


def waiter_disconnect(conn, req, live):
    """End one of this waiter's conversations; its other users stay, and the freed
    place is refilled from the queue in the same transaction."""
    who = _signed_in(conn)
    ref = _own_user(who, req.data.text("uuid", required=True, max_len=ADDRESS_MAX))
    events = conversations.end(ref.id, who)
    conn.state.setdefault("announced", {}).pop(ref.id, None)
    conn.send(frame("disconnected", None, req.op_id, codec.customer_of(ref), ref.agent))
    return events


def waiter_history(conn, req, live):
    who = _signed_in(conn)
    ref = req.data.data.get("user_id")
    if ref is None or ref == "":
        raise Invalid("user_id is required")
    if isinstance(ref, bool) or not isinstance(ref, str | int):
        raise Invalid("user_id must be a user's id or uuid")
    visitor_id = codec.visitor_id_of(ref)
    if visitor_id is not None:
        refuse_nul("user_id", ref)  # as find_user: PostgreSQL refuses the lookup
        return _send_visitor_history(conn, req, who, visitor_id)
    user_id = history.find_user(ref)
    # One answer for "no such user" and "not yours": a waiter learns nothing it may not.
    if user_id is None or not history.has_served(who.kefu_id, user_id):
        raise Forbidden(NOT_SERVED)
    return _send_history(conn, req, who, user_id)


def waiter_sessions(conn, req, live):
    who = _signed_in(conn)
    sessions = history.agent_sessions(who.kefu_id, *_page(req.data))
    items = [_session_item(s) for s in sessions]
    conn.send(frame("session_history", items, req.op_id, None, who.person))
    return []
