"""The waiter protocol: ``/v1/ws/connect/user`` and ``/v1/ws/connect/waiter``.

Two tables of frame types, one per role. A handler validates its payload, calls a
service, sends its reply (echoing ``op_id``) and returns the domain events, which are
published to every connection of the people concerned, each in its own protocol.
Frames are handled one at a time per socket; a bad frame costs one ``error`` reply and
never the socket. docs/protocol-waiter.md describes every frame and error.
"""

import logging
from dataclasses import dataclass

from flask import Blueprint, current_app

from kefu import auth
from kefu.errors import Conflict, Forbidden, Invalid, KefuError, Unauthorized
from kefu.models import IMAGE, TEXT
from kefu.protocols import waiter_codec as codec
from kefu.protocols.fields import Fields, FrameError, op_id_of, parse_frame
from kefu.protocols.waiter_codec import USER, WAITER, frame
from kefu.realtime.connection import Connection
from kefu.realtime.transport import sock
from kefu.services import accounts, conversations, history, messages, routing
from kefu.services.snapshots import conversation_ref

log = logging.getLogger(__name__)
bp = Blueprint("waiter", __name__)

NOT_YOURS = "This user is not connected to you"
NOT_CONNECTED = "Not connected to a waiter; send connect first"
WAITER_TICK = 5.0  # how often a waiter socket's loop notices it was kicked out
_GONE = object()


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
    # The reply goes out before sign-in: signing an agent in may hand it users at once.
    conn.send(frame("auth_success", principal.person.profile(), req.op_id, None, principal.person))
    first = conn.principal is None
    if first:
        live.sign_in(conn, principal)
    return principal, first


def _body(data: Fields, kind: str):
    """(content, message_type, file_url) of a message_text / message_image payload."""
    if kind == "message_text":
        text = data.text("text", required=True)
        if not text.strip():
            raise Invalid("text is required")
        limit = messages.LIMITS["content_chars"]
        if len(text) > limit:
            raise Invalid(f"text is too long (max {limit} characters)")
        return text, TEXT, None
    image = data.text("image", required=True, max_len=1000)
    if not image.startswith(messages.SAFE_URL_PREFIXES) or image.startswith("//"):
        raise Invalid("image must be an http(s) URL or a path on this server")
    return "", IMAGE, image


def _page(data: Fields):
    return data.id("before", required=False), data.integer("limit")


# -- user frames ----------------------------------------------------------------


def user_auth(conn, req, live):
    _authenticate(conn, req, live, USER)
    return []


def user_connect(conn, req, live):
    """Open (or resume) the user's conversation: its agent, or its place in the queue."""
    who = _signed_in(conn)
    conv, events = conversations.open_for_user(who)
    conn.state["connect_op"] = req.op_id
    ref = conversation_ref(conv)
    place = None if ref.agent else history.queue_place(ref.id)
    if ref.agent is None and place is None:  # served or ended in between: look again
        conv = conversations.current_for_user(who.user_id)
        if conv is None:
            raise NotConnected(NOT_CONNECTED)
        ref = conversation_ref(conv)
    if ref.agent is not None:
        conn.state["served"] = (ref.id, ref.kefu_id)
        conn.state.pop("location", None)
        conn.send(frame("connect_success", ref.agent.profile(), req.op_id, ref.agent, ref.customer))
    else:
        conn.state["location"] = place
        conn.send(frame("connect_queue", {"location": place}, req.op_id, None, ref.customer))
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


def user_send(kind: str):
    def handler(conn, req, live):
        who = _signed_in(conn)
        content, message_type, file_url = _body(req.data, kind)
        ref = _current(who)  # a waiting conversation takes messages too (spec README)
        msg, events, _ = messages.send(who, ref.id, content, message_type, file_url, _op(req))
        payload = codec.message_payload(msg, msg.conversation_id)
        conn.send(frame(f"{kind}_success", payload, req.op_id, ref.customer, ref.agent))
        return events

    return handler


def user_history(conn, req, live):
    who = _signed_in(conn)
    entries = history.user_messages(who.user_id, *_page(req.data))
    items = [codec.history_item(e) for e in entries]
    conn.send(frame("message_history", items, req.op_id, None, who.person))
    return []


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
    about every user the agent is serving."""
    who, first = _authenticate(conn, req, live, WAITER)
    conn.state["accepting"] = accounts.agent_profile(who.kefu_id).accepting
    if first:
        for other in live.hub.connections(who.key):
            if other is not conn and getattr(other.codec, "role", None) == WAITER:
                other.send(frame("kickout", None, None, None, who.person))
                other.close(4000, "Signed in on another connection")
    for ref in history.open_for_agent(who.kefu_id):
        codec.announce_user(conn, ref, req.op_id)
    return []


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
        msg, events, _ = messages.send(who, ref.id, content, message_type, file_url, _op(req))
        payload = codec.message_payload(msg, msg.conversation_id)
        conn.send(frame(f"{kind}_success", payload, req.op_id, ref.agent, ref.customer))
        return events

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
    entries = history.user_messages(user_id, *_page(req.data))
    items = [codec.history_item(e) for e in entries]
    conn.send(frame("message_history", items, req.op_id, None, who.person))
    return []


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


def handle(conn, raw, live, max_bytes: int, table: dict) -> None:
    """One frame in: its reply (or an error) out, then its events to everyone concerned."""
    op_id = None
    try:
        parsed = parse_frame(raw, max_bytes)
        op_id = _echoable(parsed.get("op_id"))
        op_id = op_id_of(parsed)
        kind = parsed.get("type")
        if not isinstance(kind, str) or not kind:
            raise FrameError("type is required")
        handler = table.get(kind)
        if handler is None:
            raise FrameError(f"Unknown type: {kind}")
        to = parsed.get("to")
        if to is not None and not isinstance(to, str):
            raise Invalid("to must be a string")
        request = Request(op_id, to, Fields(parsed.get("payload"), "payload"))
        conn.state["request_op"] = op_id  # pushes this request causes here echo it
        events = handler(conn, request, live)
        live.publish(events, origin=conn.id)
    except NotConnected as exc:
        conn.send(frame("not_connect", {"message": exc.message}, op_id, None, _person(conn)))
    except KefuError as exc:
        conn.send(codec.error(exc.message, op_id, _person(conn)))
    except Exception:  # a bug must cost one reply, not the socket
        log.exception("waiter-protocol frame failed")
        conn.send(codec.error("Internal server error", op_id, _person(conn)))
    finally:
        conn.state.pop("request_op", None)


def _person(conn):
    return conn.principal.person if conn.principal else None


def _echoable(op_id):
    return op_id if isinstance(op_id, str | int) and not isinstance(op_id, bool) else None


def _idle_out(conn, live) -> None:
    """The grace after ``idle`` passed in silence: close the socket, and end the user's
    conversation unless another socket of the user is still live (freeing the agent)."""
    who = conn.principal
    try:
        if who is not None and not (live.hub.connections(who.key) - {conn}):
            conv = conversations.current_for_user(who.user_id)
            if conv is not None:
                ref = conversation_ref(conv)
                events = conversations.end(ref.id, who)
                codec.forget_conversation(conn)
                conn.send(frame("disconnected", None, None, ref.agent, ref.customer))
                live.publish(events, origin=conn.id)
    except Exception:
        log.exception("ending an idle user's conversation failed")
    conn.close(1000, "Idle")


def _serve(ws, role: str) -> None:
    config = current_app.config
    live = current_app.extensions["kefu.live"]
    conn = Connection(ws, codec.WaiterCodec(role), config["WS_OUTBOX_LIMIT"])
    live.open(conn)
    table = USER_TYPES if role == USER else WAITER_TYPES
    idle = config["USER_IDLE_SECONDS"] if role == USER else None
    grace = config["USER_IDLE_GRACE_SECONDS"]
    warned = False
    try:
        while not conn.closed:
            timeout = WAITER_TICK if idle is None else (grace if warned else idle)
            raw = next(conn.frames(timeout=timeout), _GONE)
            if raw is _GONE:
                break
            if raw is None:
                if idle is None:
                    continue
                if warned:
                    _idle_out(conn, live)
                    break
                warned = True
                message = f"Idle for {idle:g} seconds; disconnecting in {grace:g} seconds"
                conn.send(frame("idle", {"message": message}, None, None, _person(conn)))
                continue
            warned = False
            handle(conn, raw, live, config["MAX_FRAME_BYTES"], table)
    finally:
        live.close(conn)
        conn.finish()


@sock.route("/v1/ws/connect/user", bp=bp)
def serve_user(ws) -> None:
    _serve(ws, USER)


@sock.route("/v1/ws/connect/waiter", bp=bp)
def serve_waiter(ws) -> None:
    _serve(ws, WAITER)
