"""The waiter protocol's pushes: domain events rendered as frames (``waiter_wire``'s).

Every outgoing frame is ``{op_id, from, to, type, payload}``; ``from`` / ``to`` are the
stable uuids of people (spec README), never socket ids. A frame caused by a request of
this very socket echoes that request's ``op_id``; the queue's later ``connect_queue`` /
``connect_success`` pushes echo the op_id of the socket's last ``connect``.

Per-connection memory (``conn.state``) keeps pushes from repeating what a socket was
already told: the last queue place sent, the conversation announced as served, the
conversations a waiter was told about and the messages told with them; the messages
of users it has not been told about yet wait in ``waiter_holds``.
"""

import time

from kefu.models import SENDER_USER
from kefu.protocols.queue_entries import stale_requeue, took_from_queue
from kefu.protocols.waiter_holds import held_for, hold_unannounced, release_held
from kefu.protocols.waiter_wire import as_seen, customer_of, frame, to_waiter
from kefu.realtime.events import (
    AgentChanged,
    ConversationAssigned,
    ConversationEnded,
    ConversationRequeued,
    MessageCreated,
    QueueChanged,
)

USER, WAITER = "user", "waiter"
KNOWN_MAX = 10_000  # conversations remembered as told about, per socket; then forgotten


def note_request(conn, op_id, events) -> None:
    """Remember which request of this socket caused each assignment among ``events``:
    its ``new_connection`` here echoes that op_id. Kept by conversation, not as "the
    request running now": through the PostgreSQL broker the push comes back later,
    and echoed the op_id of whatever request the socket ran by then (a chaos tester's
    case)."""
    if op_id is None or conn.principal is None:
        return
    for event in events:
        if type(event) is ConversationAssigned and _mine_as_agent(conn, event.conversation):
            caused = conn.state.setdefault("caused_by", {})
            if len(caused) >= KNOWN_MAX:  # assignments whose push never came here
                caused.clear()
            caused[event.conversation.id] = op_id


def _request_op(conn, origin, conversation_id):
    if origin != conn.id:
        return None
    return conn.state.get("caused_by", {}).pop(conversation_id, None)


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
    for key in ("served", "location", "taken"):
        conn.state.pop(key, None)


def _user_message(event: MessageCreated, conn, origin):
    conv, msg = event.conversation, event.message
    if origin == conn.id or not _mine_as_customer(conn, conv):
        return  # the sending socket got its receipt already
    # The user's own message came from another tab of theirs.
    yield as_seen(msg, conv, msg.sender_type == SENDER_USER, conv.customer, conv.agent)


def _user_assigned(event: ConversationAssigned, conn, origin):
    conv = event.conversation
    if not _mine_as_customer(conn, conv):
        return
    took_from_queue(conn, event)  # even if served already: by the same agent, given back
    if conn.state.get("served") == (conv.id, conv.kefu_id):
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
    if _mine_as_customer(conn, event.conversation) and not stale_requeue(conn, event):
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
        early = conn.state.get("early")
        if early is not None:
            # Signing in, not told of this user yet (its users are read after the socket
            # takes pushes; PostgreSQL and MySQL yield meanwhile): after its new_connection.
            early.setdefault(conv.id, []).append((msg, conv))
            return
        # Told about once and ended since: a late push (stored before the end, carried
        # by another worker's broker after it) goes at once; no new_connection will come.
        if conv.id not in conn.state.get("known", ()):
            hold_unannounced(conn, msg, conv)
            return
    if msg.id not in conn.state.get("told", {}).get(conv.id, ()):  # not announced with it
        yield to_waiter(msg, conv)


def announcement(conn, conv, op_id, pending=()):
    """``new_connection`` for a conversation this socket has not been told about yet,
    then the customer's messages the agent side has not seen, as if they came now, with
    any pushed before it; a push of one of them after it is not sent again."""
    announced = conn.state.setdefault("announced", {})  # id -> when (waiter_replay)
    if conv.id in announced:
        return
    announced[conv.id] = time.time()
    known = conn.state.setdefault("known", set())
    if len(known) >= KNOWN_MAX:
        known.clear()
    known.add(conv.id)
    customer = customer_of(conv)
    yield frame("new_connection", customer.profile(), op_id, customer, conv.agent)
    early = [msg for msg, _ in held_for(conn, conv.id)]
    backlog = sorted({m.id: m for m in (*pending, *early)}.values(), key=lambda m: m.seq)
    for msg in backlog:
        yield to_waiter(msg, conv)
    if backlog:  # by id: one the agent wrote elsewhere meanwhile may still come
        conn.state.setdefault("told", {})[conv.id] = frozenset(m.id for m in backlog)


def forget_announced(conn, conversation_id: int) -> None:
    """The conversation is no longer this waiter socket's (ended, or requeued). What
    still waits for its announcement is left to go as it would (``waiter_holds.release_held``).
    It stays "known" (``_waiter_message``); a requeue forgets that too."""
    for key in ("announced", "told", "taken"):
        conn.state.get(key, {}).pop(conversation_id, None)


def _waiter_assigned(event: ConversationAssigned, conn, origin):
    conv = event.conversation
    if _mine_as_agent(conn, conv):
        took_from_queue(conn, event)
        op_id = _request_op(conn, origin, conv.id)
        yield from announcement(conn, conv, op_id, _unheard(conn, event))


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
    yield from release_held(conn, conv.id)
    forget_announced(conn, conv.id)
    if origin != conn.id:
        yield frame("disconnected", None, None, customer_of(conv), conv.agent)


def _waiter_requeued(event: ConversationRequeued, conn, origin):
    if event.previous_agent.user_id != conn.principal.user_id or stale_requeue(conn, event):
        return  # stale: the hand-back of this entry to this agent was rendered already
    told = event.conversation.id in conn.state.get("announced", ())
    yield from release_held(conn, event.conversation.id)
    forget_announced(conn, event.conversation.id)
    # Unlike an ended conversation, it may come back to this agent: a message of it is
    # then held for its new_connection, which another worker's news may bring late.
    conn.state.get("known", set()).discard(event.conversation.id)
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
