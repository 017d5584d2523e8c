"""The waiter protocol's frame handlers: one table per role (user, waiter).

A handler validates its payload, calls a service, sends its reply (echoing ``op_id``)
and returns the domain events; waiter.py publishes them after the reply is queued.
"""

from dataclasses import dataclass

from kefu import auth
from kefu.errors import Conflict, Forbidden, Invalid, KefuError, Unauthorized
from kefu.models import IMAGE, TEXT
from kefu.protocols import waiter_codec as codec
from kefu.protocols.fields import Fields
from kefu.protocols.waiter_codec import USER, WAITER, frame
from kefu.realtime.events import WaiterSignedIn, user_key
from kefu.services import accounts, conversations, history, message_rules, messages, routing
from kefu.services.snapshots import conversation_ref

NOT_YOURS = "This user is not connected to you"
NOT_CONNECTED = "Not connected to a waiter; send connect first"


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


def _op(req: Request) -> str | None:
    """The op_id as messages.send stores it (unique per sender: a resend is a no-op)."""
    return None if req.op_id is None else str(req.op_id)


def _authenticate(conn, req: Request, live, role: str):
    principal = auth.authenticate(req.data.text("token", required=True))
    if conn.principal is not None and conn.principal.user_id != principal.user_id:
        raise Unauthorized("This connection is already authenticated as another account")
    if role == WAITER and not principal.is_agent:
        raise Forbidden("This account is not a waiter")
    if role == USER and principal.is_agent:
        raise Forbidden("Waiter accounts sign in on /v1/ws/connect/waiter")
    first = conn.principal is None
    if first:
        # Sign-in may refuse (too many sockets); the users it may hand an agent are
        # dispatched in a greenlet of their own, so they follow this reply.
        live.sign_in(conn, principal)
    conn.send(frame("auth_success", principal.person.profile(), req.op_id, None, principal.person))
    return principal, first


def _body(data: Fields, kind: str):
    """(content, message_type, file_url) of a message_text / message_image payload."""
    if kind == "message_text":
        text = data.text("text", required=True)
        if not text.strip():
            raise Invalid("text is required")
        limit = message_rules.LIMITS["content_chars"]
        if len(text) > limit:
            raise Invalid(f"text is too long (max {limit} characters)")
        return text, TEXT, None
    image = data.text("image", required=True, max_len=message_rules.FILE_URL_MAX)
    message_rules.check_file_url(image, "image")
    return "", IMAGE, image


def _page(data: Fields):
    return data.id("before", required=False), data.integer("limit")


def _history_page(data: Fields):
    """(before, limit, after_id): page backwards with ``before``, or resync with
    ``after_id`` (the last message id the client has)."""
    return (*_page(data), data.id("after_id", required=False))


# -- user frames ----------------------------------------------------------------


def user_auth(conn, req, live):
    _authenticate(conn, req, live, USER)
    return []


def user_connect(conn, req, live):
    """Open (or resume) the user's conversation: its agent, or its place in the queue."""
    who = _signed_in(conn)
    conv, events = conversations.open_for_user(who)
    ref = conversation_ref(conv)
    place = None if ref.agent else history.queue_place(ref.id)
    if ref.agent is None and place is None:  # served or ended in between: look again
        conv = conversations.current_for_user(who.user_id)
        if conv is None:
            raise NotConnected(NOT_CONNECTED)
        ref = conversation_ref(conv)
        place = None if ref.agent else (history.queue_place(ref.id) or 1)
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
    conn.send(frame("disconnected", None, req.op_id, ref.agent, ref.customer))
    return events


def _send_with_receipt(conn, req, kind, who, ref, body, sender, receiver):
    """Store the message (idempotent by op_id), answer ``<kind>_success`` with its id."""
    msg, events, _ = messages.send(who, ref.id, *body, _op(req))
    payload = codec.message_payload(msg, msg.conversation_id)
    conn.send(frame(f"{kind}_success", payload, req.op_id, sender, receiver))
    return events


def user_send(kind: str):
    def handler(conn, req, live):
        who = _signed_in(conn)
        content, message_type, file_url = _body(req.data, kind)
        ref = _current(who)  # a waiting conversation takes messages too (spec README)
        body = (content, message_type, file_url)
        return _send_with_receipt(conn, req, kind, who, ref, body, ref.customer, ref.agent)

    return handler


def _send_history(conn, req, who, user_id: int) -> list:
    entries = history.user_messages(user_id, *_history_page(req.data))
    items = [codec.history_item(e) for e in entries]
    conn.send(frame("message_history", items, req.op_id, None, who.person))
    return []


def user_history(conn, req, live):
    who = _signed_in(conn)
    return _send_history(conn, req, who, who.user_id)


def user_rate(conn, req, live):
    """``{"rate": 1..5, "conversation_id"?}``: rates the given (or the latest) ended
    conversation of this user."""
    who = _signed_in(conn)
    score = req.data.data.get("rate")
    if score is None:
        raise Invalid("rate is required")
    if isinstance(score, bool) or not isinstance(score, int) or not 1 <= score <= 5:
        raise Invalid("rate must be an integer from 1 to 5")
    conversation_id = req.data.id("conversation_id", required=False)
    conversation_id = conversation_id or history.latest_ended(who.user_id)
    if conversation_id is None:
        raise Conflict("There is no ended conversation to rate")
    conversations.rate(conversation_id, who, score)
    payload = {"conversation_id": conversation_id, "rate": score}
    conn.send(frame("rate_success", payload, req.op_id, None, who.person))
    return []


# -- waiter frames --------------------------------------------------------------


def waiter_auth(conn, req, live):
    """Sign in; older waiter sockets of this agent are kicked out (its conversations
    belong to the agent, not to a socket, so none move or drop); this socket is told
    about every user the agent is serving. The kickout is a published event, so it
    reaches older sockets on every worker (``kick_older_waiters``)."""
    who, first = _authenticate(conn, req, live, WAITER)
    conn.state["accepting"] = accounts.agent_profile(who.kefu_id).accepting
    for ref in history.open_for_agent(who.kefu_id):
        codec.announce_user(conn, ref, req.op_id)
    if not first:
        return []
    return [WaiterSignedIn(who.user_id, live.worker_id, conn.id, conn.signed_in_at)]


def kick_older_waiters(live, event: WaiterSignedIn) -> None:
    """In every worker: the agent's waiter sockets that signed in before ``event`` get
    ``kickout`` and are closed; the new socket (and any newer one) stays."""
    for other in live.hub.connections(user_key(event.user_id)):
        if not _is_waiter_socket(other) or other.closed:
            continue
        if event.worker_id == live.worker_id and other.id == event.connection_id:
            continue
        if (getattr(other, "signed_in_at", None) or event.at) > event.at:
            continue
        other.send(frame("kickout", None, None, None, other.principal.person))
        other.close(4000, "Signed in on another connection")


def _is_waiter_socket(conn) -> bool:
    return isinstance(conn.codec, codec.WaiterCodec) and conn.codec.role == WAITER


def waiter_switch(accepting: bool):
    def handler(conn, req, live):
        who = _signed_in(conn)
        events = routing.set_accepting(who.kefu_id, accepting)
        conn.state["accepting"] = accepting
        conn.send(frame("ready" if accepting else "unready", None, req.op_id, None, who.person))
        return events

    return handler


def _own_user(who, uuid) -> object:
    if not isinstance(uuid, str) or not uuid:
        raise Invalid("the user's uuid is required")
    ref = history.open_with(who.kefu_id, uuid)
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
        return _send_with_receipt(conn, req, kind, who, ref, body, ref.agent, ref.customer)

    return handler


def waiter_disconnect(conn, req, live):
    """End one of this waiter's conversations; its other users stay, and the freed
    place is refilled from the queue in the same transaction."""
    who = _signed_in(conn)
    ref = _own_user(who, req.data.text("uuid", required=True, max_len=36))
    events = conversations.end(ref.id, who)
    conn.state.setdefault("announced", set()).discard(ref.id)
    conn.send(frame("disconnected", None, req.op_id, ref.customer, ref.agent))
    return events


def waiter_history(conn, req, live):
    who = _signed_in(conn)
    ref = req.data.data.get("user_id")
    if ref is None or ref == "":
        raise Invalid("user_id is required")
    if isinstance(ref, bool) or not isinstance(ref, str | int):
        raise Invalid("user_id must be a user's id or uuid")
    user_id = history.find_user(ref)
    # One answer for "no such user" and "not yours": a waiter learns nothing it may not.
    if user_id is None or not history.has_served(who.kefu_id, user_id):
        raise Forbidden("You have not served this user")
    return _send_history(conn, req, who, user_id)


def waiter_sessions(conn, req, live):
    who = _signed_in(conn)
    sessions = history.agent_sessions(who.kefu_id, *_page(req.data))
    items = [codec.session_item(s) for s in sessions]
    conn.send(frame("session_history", items, req.op_id, None, who.person))
    return []


USER_TYPES = {
    "auth": user_auth,
    "connect": user_connect,
    "disconnect": user_disconnect,
    "message_text": user_send("message_text"),
    "message_image": user_send("message_image"),
    "get_history": user_history,
    "rate": user_rate,
}
WAITER_TYPES = {
    "auth": waiter_auth,
    "ready": waiter_switch(True),
    "unready": waiter_switch(False),
    "disconnect": waiter_disconnect,
    "message_text": waiter_send("message_text"),
    "message_image": waiter_send("message_image"),
    "get_history": waiter_history,
    "get_history_session": waiter_sessions,
}
