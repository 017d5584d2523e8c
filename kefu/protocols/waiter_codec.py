"""The waiter protocol's wire shapes: frames out, and domain events rendered as frames.

Every outgoing frame is ``{op_id, from, to, type, payload}``; ``from`` / ``to`` are the
stable uuids of people (spec README), never socket ids. A frame caused by a request of
this very socket echoes that request's ``op_id``; the queue's later ``connect_queue`` /
``connect_success`` pushes echo the op_id of the socket's last ``connect``.

A visitor (ds/kefu's anonymous widget) has no uuid; a waiter addresses it as
``visitor:<visitor_id>`` (``VisitorPeer``), so its conversations work here like a user's.

Per-connection memory (``conn.state``) keeps pushes from repeating what a socket was
already told: the last queue place sent, the conversation announced as served, the
conversations a waiter was told about.
"""

import time
from dataclasses import dataclass

from kefu import clock
from kefu.models import IMAGE, SENDER_USER
from kefu.protocols import compact_json
from kefu.realtime.events import (
    AgentChanged,
    ConversationAssigned,
    ConversationEnded,
    ConversationRequeued,
    MessageCreated,
    QueueChanged,
)

USER, WAITER = "user", "waiter"
# User uuids are uuid4 strings (hex digits and dashes), so none starts with this, while a
# bare visitor_id could be anything a visitor chooses, another user's uuid included.
VISITOR_PREFIX = "visitor:"


@dataclass(frozen=True)
class VisitorPeer:
    """A visitor where a frame names a person: ``from`` / ``to`` and profiles."""

    visitor_id: str

    @property
    def uuid(self) -> str:
        return VISITOR_PREFIX + self.visitor_id

    def profile(self) -> dict:
        # The address is both its id and its uuid: get_history's user_id takes either.
        address, name = self.uuid, self.visitor_id
        return {
            "id": address,
            "uuid": address,
            "username": name,
            "nickname": name,
            "avatar": "",
            "visitor_id": name,
        }


def visitor_id_of(address) -> str | None:
    """The visitor_id a waiter's address names, or None (a user's uuid or id)."""
    if isinstance(address, str) and address.startswith(VISITOR_PREFIX):
        return address[len(VISITOR_PREFIX) :] or None
    return None


def customer_of(conv):
    """A conversation's customer as frames name it: the user, or the visitor."""
    return conv.customer if conv.customer is not None else VisitorPeer(conv.visitor_id)


def frame(type_: str, payload=None, op_id=None, sender=None, to=None) -> str:
    """One outgoing frame; ``sender`` and ``to`` are people (anything with ``uuid``)."""
    body = {
        "op_id": op_id,
        "from": sender.uuid if sender else None,
        "to": to.uuid if to else None,
        "type": type_,
        "payload": payload,
    }
    return compact_json(body)


def error(message: str, op_id=None, to=None) -> str:
    return frame("error", {"message": message}, op_id, None, to)


def message_type_name(msg) -> str:
    """Images are ``message_image``; text and ds/kefu file messages (no waiter type of
    their own) are ``message_text``, a file carrying its ``file_url``."""
    return "message_image" if msg.message_type == IMAGE else "message_text"


def message_payload(msg, conversation_id: int) -> dict:
    if msg.message_type == IMAGE:
        payload = {"image": msg.file_url}
        if msg.content:  # a caption (ds/kefu and the pages send one): an extra field
            payload["text"] = msg.content
    else:
        payload = {"text": msg.text}
        if msg.file_url:
            payload["file_url"] = msg.file_url
    payload.update(
        message_id=msg.id,
        conversation_id=conversation_id,
        created_at=clock.wire(msg.created_at),
    )
    return payload


def _request_op(conn, origin):
    return conn.state.get("request_op") if origin == conn.id else None


def _mine_as_customer(conn, conv) -> bool:
    return conv.customer is not None and conv.customer.user_id == conn.principal.user_id


def _mine_as_agent(conn, conv) -> bool:
    return conv.agent is not None and conv.agent.user_id == conn.principal.user_id


class WaiterCodec:
    """Renders domain events for one user or waiter socket of this protocol."""

    def __init__(self, role: str):
        self.role = role

    def render(self, event, conn, origin):
        if conn.principal is None:
            return
        table = _USER_RENDERERS if self.role == USER else _WAITER_RENDERERS
        renderer = table.get(type(event))
        if renderer is not None:
            yield from renderer(event, conn, origin)


# -- the user's socket ----------------------------------------------------------


def forget_conversation(conn) -> None:
    conn.state.pop("served", None)
    conn.state.pop("location", None)


def _user_message(event: MessageCreated, conn, origin):
    conv, msg = event.conversation, event.message
    if origin == conn.id or not _mine_as_customer(conn, conv):
        return  # the sending socket got its receipt already
    # The user's own message came from another tab of theirs.
    yield _as_seen(msg, conv, msg.sender_type == SENDER_USER, conv.customer, conv.agent)


def _as_seen(msg, conv, own: bool, me, other) -> str:
    """A message as one side's socket shows it: ``<type>_success`` if that side wrote it
    (elsewhere: another tab, the dashboard), else ``<type>`` from the other side."""
    name, payload = message_type_name(msg), message_payload(msg, conv.id)
    if own:
        return frame(f"{name}_success", payload, None, me, other)
    return frame(name, payload, None, other, me)


def _user_assigned(event: ConversationAssigned, conn, origin):
    conv = event.conversation
    if not _mine_as_customer(conn, conv) or conn.state.get("served") == (conv.id, conv.kefu_id):
        return
    conn.state["served"] = (conv.id, conv.kefu_id)
    conn.state.pop("location", None)
    op_id = conn.state.get("connect_op")
    yield frame("connect_success", conv.agent.profile(), op_id, conv.agent, conv.customer)


def _user_ended(event: ConversationEnded, conn, origin):
    conv = event.conversation
    if not _mine_as_customer(conn, conv):
        return
    forget_conversation(conn)
    if origin != conn.id:  # the socket that asked got ``disconnected`` as its reply
        yield frame("disconnected", None, None, conv.agent, conv.customer)


def _user_requeued(event: ConversationRequeued, conn, origin):
    # The agent stayed away: the next QueueChanged / ConversationAssigned tells the user
    # its new place or its new agent, so only forget what was said before.
    if _mine_as_customer(conn, event.conversation):
        forget_conversation(conn)
    return ()


def _user_queue(event: QueueChanged, conn, origin):
    who = conn.principal
    if who is None or who.is_agent or "connect_op" not in conn.state:
        return  # places go only to sockets whose ``connect`` has been answered
    conversation_id = event.waiting_conversation_of(who.user_id)
    if conversation_id is not None and conn.state.get("served", (None,))[0] == conversation_id:
        return  # a snapshot older than the connect_success already sent (until requeued)
    place = event.position_of(conversation_id) if conversation_id else None
    if place is not None and conn.state.get("location") != place:
        conn.state["location"] = place
        payload = {"location": place}
        yield frame("connect_queue", payload, conn.state.get("connect_op"), None, who.person)


# -- the waiter's socket --------------------------------------------------------


def _waiter_message(event: MessageCreated, conn, origin):
    conv, msg = event.conversation, event.message
    if origin == conn.id or not _mine_as_agent(conn, conv):
        return
    if conv.id not in conn.state.get("announced", ()):
        # Not told of this user yet: a sign-in reading its users while the database
        # driver yields (PostgreSQL, MySQL). The message follows the new_connection.
        conn.state.setdefault("early", {}).setdefault(conv.id, []).append(msg)
        return
    if msg.id not in conn.state.get("told", {}).get(conv.id, ()):  # not announced with it
        yield _to_waiter(msg, conv)


def _to_waiter(msg, conv) -> str:
    return _as_seen(msg, conv, msg.sender_type != SENDER_USER, conv.agent, customer_of(conv))


def announcement(conn, conv, op_id, pending=()):
    """``new_connection`` for a conversation this socket has not been told about yet,
    then the customer's messages the agent side has not seen, as if they came now, with
    any pushed before it; a push of one of them after it is not sent again."""
    announced = conn.state.setdefault("announced", {})  # id -> when (waiter_replay)
    if conv.id in announced:
        return
    announced[conv.id] = time.time()
    customer = customer_of(conv)
    yield frame("new_connection", customer.profile(), op_id, customer, conv.agent)
    early = conn.state.get("early", {}).pop(conv.id, ())
    backlog = sorted({m.id: m for m in (*pending, *early)}.values(), key=lambda m: m.seq)
    for msg in backlog:
        yield _to_waiter(msg, conv)
    if backlog:  # by id: one the agent wrote elsewhere meanwhile may still come
        conn.state.setdefault("told", {})[conv.id] = frozenset(m.id for m in backlog)


def forget_announced(conn, conversation_id: int) -> None:
    """The conversation is no longer this waiter socket's (ended, or requeued)."""
    for key in ("announced", "told", "early"):
        conn.state.get(key, {}).pop(conversation_id, None)


def _waiter_assigned(event: ConversationAssigned, conn, origin):
    conv = event.conversation
    if _mine_as_agent(conn, conv):
        yield from announcement(conn, conv, _request_op(conn, origin), _unheard(conn, event))


def _unheard(conn, event: ConversationAssigned):
    """The assignment's unread customer messages, less those this agent's last waiter
    socket is known to have heard: a conversation requeued from the agent while it was
    away comes back to it with only what was written since (``waiter_replay``)."""
    since, heard = conn.state.get("heard_until", (None, ()))
    if event.conversation.id not in heard:
        return event.pending
    return tuple(m for m in event.pending if m.created_at >= since)


def _waiter_ended(event: ConversationEnded, conn, origin):
    conv = event.conversation
    if not _mine_as_agent(conn, conv):
        return
    forget_announced(conn, conv.id)
    if origin != conn.id:
        yield frame("disconnected", None, None, customer_of(conv), conv.agent)


def _waiter_requeued(event: ConversationRequeued, conn, origin):
    if event.previous_agent.user_id != conn.principal.user_id:
        return
    told = event.conversation.id in conn.state.get("announced", ())
    forget_announced(conn, event.conversation.id)
    if told:
        # Told about this user by a sign-in as the grace ran out, on another worker or
        # while the requeue committed: the user is not this agent's any more.
        yield frame("disconnected", None, None, event.conversation.customer, event.previous_agent)


def _waiter_switch(event: AgentChanged, conn, origin):
    # Ready/unready switched elsewhere (the dashboard) is pushed; a limit change, or this
    # socket's own request (acknowledged by its reply), is not.
    if event.agent.user_id != conn.principal.user_id:
        return
    known = conn.state.get("accepting")
    if known != event.accepting:
        conn.state["accepting"] = event.accepting
        if known is not None and origin != conn.id:
            yield frame("ready" if event.accepting else "unready", None, None, None, event.agent)


_USER_RENDERERS = {
    MessageCreated: _user_message,
    ConversationAssigned: _user_assigned,
    ConversationEnded: _user_ended,
    ConversationRequeued: _user_requeued,
    QueueChanged: _user_queue,
}
_WAITER_RENDERERS = {
    MessageCreated: _waiter_message,
    ConversationAssigned: _waiter_assigned,
    ConversationEnded: _waiter_ended,
    ConversationRequeued: _waiter_requeued,
    AgentChanged: _waiter_switch,
}
