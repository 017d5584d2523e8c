"""The waiter protocol's frame handlers (waiter.py's tables, one per role, name them).

A handler validates its payload, calls a service, sends its reply (echoing ``op_id``)
and returns the domain events; waiter.py publishes them after the reply is queued.
"""

from dataclasses import dataclass

from kefu.errors import (
    Conflict,
    Forbidden,
    Invalid,
    KefuError,
    SentAfterEnd,
    Unauthorized,
    digits_as_int,
)
from kefu.models import IMAGE, TEXT
from kefu.protocols import waiter_codec as codec
from kefu.protocols import waiter_wire as wire
from kefu.protocols.fields import Fields, op_key
from kefu.protocols.queue_entries import shown_taken
from kefu.protocols.waiter_wire import frame
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
NOT_CONNECTED = "Not connected to a waiter; send connect first"
ADDRESS_MAX = len(wire.VISITOR_PREFIX) + VISITOR_ID_MAX  # a visitor's; a user uuid has 36


class NotConnected(KefuError):
    """A user frame that needs a conversation came without one: ``not_connect``."""


@dataclass(frozen=True)
class Request:
    op_id: object
    to: str | None
    data: Fields


def signed_in(conn):
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


# -- user frames ----------------------------------------------------------------


def user_connect(conn, req, live):
    """Open (or resume) the user's conversation: its agent, or its place in the queue."""
    who = signed_in(conn)
    conv, place, events = conversations.connect(who)
    ref = conversation_ref(conv)
    if ref.agent is None and conn.state.get("served", (None,))[0] == ref.id:
        # Assigned while we looked (drivers that yield): the push said connect_success,
        # so the reply must not say the queue. Read the conversation once more.
        conv = conversations.current_for_user(who.user_id) or conv
        ref = conversation_ref(conv)
    if ref.agent is not None:
        shown_taken(conn, ref.id, conv.taken_entry)  # a requeue older than it is stale
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
    who = signed_in(conn)
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
    payload = wire.message_payload(msg, msg.conversation_id)
    conn.send(frame(f"{kind}_success", payload, req.op_id, sender, receiver))
    return events


def _answer_resend(conn, req, kind, who, body, sides) -> bool:
    """A send that found no conversation to go into (its conversation ended since, the
    receipt lost with the link) may be a resend: answered with the first receipt, as
    ds/kefu does; False if it is none (the send's own refusal stands). Refused, the
    client could not learn its message was stored, and sent it again under a new op_id:
    twice for the other side. Only then: with a conversation open, the same op_id and
    words may be a new message (a counter restarted), refused as ever (OpIdReused).
    ``sides(ref)``: the receipt's (sender, receiver), or None where the stored message's
    conversation is not the one this send is for."""
    try:
        stored = customer_sends.resent(who, *body, op_key(req.op_id))
    except message_rules.OpIdReused:  # stored with other words: no resend
        return False
    people = stored and sides(stored[1])
    if not people:
        return False
    payload = wire.message_payload(stored[0], stored[0].conversation_id)
    conn.send(frame(f"{kind}_success", payload, req.op_id, *people))
    return True


def user_send(kind: str):
    def handler(conn, req, live):
        who = signed_in(conn)
        body = _body(req.data, kind)
        try:
            ref = _current(who)  # a waiting conversation takes messages too (spec README)
        except NotConnected:
            if not _answer_resend(conn, req, kind, who, body, lambda r: (r.customer, r.agent)):
                raise
            return []
        try:
            return _send_with_receipt(conn, req, kind, who, ref, body, ref.customer, ref.agent)
        except SentAfterEnd:  # ended as it was sent: as when it had ended before
            raise NotConnected(NOT_CONNECTED) from None

    return handler


def user_rate(conn, req, live):
    """``{"rate": 1..5, "conversation_id"?}``: rates the given (or the latest) ended
    conversation of this user."""
    who = signed_in(conn)
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
        who = signed_in(conn)
        events = routing.set_accepting(who.kefu_id, accepting)
        conn.state["accepting"] = accepting
        conn.send(frame("ready" if accepting else "unready", None, req.op_id, None, who.person))
        return events

    return handler


def _own_user(who, address) -> object:
    """The open conversation of this waiter with the user (uuid) or visitor (address)."""
    if not isinstance(address, str) or not address:
        raise Invalid("the user's uuid is required")
    visitor_id = wire.visitor_id_of(address)
    if visitor_id is not None:
        ref = history.open_with_visitor(who.kefu_id, visitor_id)
    else:
        ref = history.open_with(who.kefu_id, address)
    if ref is None:
        raise Forbidden(NOT_YOURS)
    return ref


def waiter_send(kind: str):
    def handler(conn, req, live):
        who = signed_in(conn)
        content, message_type, file_url = _body(req.data, kind)
        if req.to is None:
            raise Invalid("to is required: the uuid of one of your users")
        body = (content, message_type, file_url)
        try:
            ref = _own_user(who, req.to)
        except Forbidden:
            if not _answer_resend(conn, req, kind, who, body, _to_this(who, req.to)):
                raise
            return []
        customer = wire.customer_of(ref)
        return _send_with_receipt(conn, req, kind, who, ref, body, ref.agent, customer)

    return handler


def _to_this(who, address):
    """A resend's receipt people, if its message went to ``address`` from this agent."""

    def sides(ref):
        customer = wire.customer_of(ref)
        return customer.uuid == address and ref.kefu_id == who.kefu_id and (ref.agent, customer)

    return sides


def waiter_disconnect(conn, req, live):
    """End one of this waiter's conversations; its other users stay, and the freed
    place is refilled from the queue in the same transaction."""
    who = signed_in(conn)
    ref = _own_user(who, req.data.text("uuid", required=True, max_len=ADDRESS_MAX))
    events = conversations.end(ref.id, who)
    codec.forget_announced(conn, ref.id)
    conn.send(frame("disconnected", None, req.op_id, wire.customer_of(ref), ref.agent))
    return events
