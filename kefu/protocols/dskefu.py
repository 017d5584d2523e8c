"""The ds/kefu WebSocket ``/ws``: a table of actions, each a service call and a reply.

Frames are handled one at a time per socket, in order. Every reply echoes ``op_id``;
errors are ``{"success": false, "message": …}`` and never close the socket.
"""

import logging

from flask import Blueprint, current_app, request

from kefu import auth, clock
from kefu.errors import Busy, Invalid, KefuError, NotFound, TooManyRequests, Unauthorized
from kefu.failures import log_failure
from kefu.models import SENDER_AGENT, SENDER_USER, TEXT
from kefu.protocols import dskefu_codec as codec
from kefu.protocols.fields import (
    Fields,
    FrameError,
    echoable_op_id,
    op_id_of,
    op_key,
    parse_counted,
)
from kefu.realtime.connection import Connection
from kefu.realtime.transport import sock
from kefu.services import conversations, history, messages, visitors

log = logging.getLogger(__name__)
bp = Blueprint("dskefu", __name__)
END_FAILED = "Failed to end conversation. Conversation not found or no permission."


def _signed_in(conn):
    if conn.principal is None:
        raise Unauthorized("Please login first")
    return conn.principal


def on_login(conn, data: Fields, op_id, live):
    principal = auth.authenticate(data.text("token", required=True))
    if conn.principal is not None and conn.principal.user_id != principal.user_id:
        raise Unauthorized("This connection is already logged in as another user")
    if conn.principal is None:
        live.sign_in(conn, principal)
        if principal.is_agent:
            conn.state["list_after_reply"] = principal.kefu_id  # see _list_conversations
    return "Login successful", {"user_id": principal.user_id, "kefu_id": principal.kefu_id}, []


def on_ping(conn, data, op_id, live):
    return "pong", None, []


def on_send(conn, data: Fields, op_id, live):
    who = conn.principal  # _signed_in's lines, without its call (every message)
    if who is None:
        raise Unauthorized("Please login first")
    sender_type = data.integer("sender_type", choices=(SENDER_USER, SENDER_AGENT))
    if sender_type == SENDER_AGENT and not who.is_agent:
        raise Unauthorized("Only agents can send messages with sender_type 2")
    if sender_type == SENDER_USER and who.is_agent:
        raise Unauthorized("Agents send with sender_type 2")
    conversation_id = data.id("conversation_id")
    message_type = data.integer("message_type", default=TEXT)
    msg, events, _ = messages.send(
        who,
        conversation_id,
        data.text("content"),
        message_type,
        data.text("file_url"),
        op_id if type(op_id) is str else op_key(op_id),  # a string is its own key
    )
    return (
        "Message sent successfully",
        {"message_id": msg.id, "created_at": clock.wire(msg.created_at)},
        events,
    )


def on_read(conn, data: Fields, op_id, live):
    who = _signed_in(conn)
    conversation_id = data.id("conversation_id")
    message_ids = data.id_list("message_ids")
    sender_type = data.integer("sender_type", choices=(SENDER_USER, SENDER_AGENT))
    if sender_type is None:
        raise Invalid("sender_type is required")
    count, events = conversations.mark_read(conversation_id, who, message_ids, sender_type)
    return "Messages marked as read", {"updated_count": count}, events


def on_end(conn, data: Fields, op_id, live):
    who = _signed_in(conn)
    conversation_id = data.id("conversation_id")
    try:
        events = conversations.end(conversation_id, who)
    except NotFound:  # not theirs, or no such conversation: the guide's own text
        raise KefuError(END_FAILED) from None
    return "Conversation ended successfully", {"conversation_id": conversation_id}, events


def on_visitor_bind(conn, data: Fields, op_id, live):
    bind_key = data.text("bind_key", required=True, max_len=visitors.VISITOR_ID_MAX)
    visitor_id = visitors.check_visitor_id(bind_key, "bind_key")
    live.bind_visitor(conn, visitor_id, conn.state.get("address"))
    return "Bind key successfully", None, []


def on_visitor_send(conn, data: Fields, op_id, live):
    visitor_id = data.text("visitor_id", required=True, max_len=visitors.VISITOR_ID_MAX)
    kefu_id = data.id("kefu_id")
    content = data.text("content", required=True)
    if data.integer("message_type", default=TEXT) != TEXT or data.text("file_url"):
        raise Invalid("Visitors send text only (message_type 1, no file_url)")
    key = op_key(op_id)
    checked, _ = visitors.check_message(visitor_id, content, key)  # spends no budget
    conn.identified = True  # an unbound visitor may send; it is not an idle anonymous socket
    try:
        live.admit_visitor_message(visitor_id, conn.state.get("address"))
    except TooManyRequests:
        first = visitors.first_reply_of_resend(visitor_id, kefu_id, checked, key)
        if first is None:
            raise
        return "Visitor message sent successfully", {"message_id": first.id}, []
    msg, events, _ = visitors.send(visitor_id, kefu_id, content, key)
    return "Visitor message sent successfully", {"message_id": msg.id}, events


def on_visitor_end(conn, data: Fields, op_id, live):
    visitor_id = data.text("visitor_id", required=True, max_len=visitors.VISITOR_ID_MAX)
    kefu_id = data.id("kefu_id")
    events = visitors.end(visitor_id, kefu_id)
    return "Visitor conversation ended successfully", {}, events


ACTIONS = {
    "login": on_login,
    "ping": on_ping,
    "kefu_message_send": on_send,
    "kefu_message_read": on_read,
    "kefu_message_end": on_end,
    "kefu_message_visitor_bind_fd": on_visitor_bind,
    "kefu_message_visitor_send": on_visitor_send,
    "kefu_message_visitor_end": on_visitor_end,
}


def handle(conn, raw, live, max_bytes: int) -> None:
    """One frame in, one reply out (plus pushes to others)."""
    op_id = action = None
    try:
        frame = parse_counted(raw, max_bytes, live, conn)
        op_id = frame.get("op_id")
        live.admit_frame(conn)
        op_id = op_id_of(frame)
        action = frame.get("action")
        if action is None or action == "":
            raise FrameError("action is required")
        if not isinstance(action, str):
            raise FrameError("action must be a string")
        handler = ACTIONS.get(action)
        if handler is None:
            raise FrameError(f"Unknown action: {action}")
        message, data, events = handler(conn, Fields(frame.get("data")), op_id, live)
    except KefuError as exc:
        op_id = getattr(exc, "op_id", None) if op_id is None else op_id  # a FrameError's
        conn.send(codec.fail(exc.message, echoable_op_id(op_id)))
        return
    except Exception as exc:  # a bug (or a full disk) must cost one reply, not the socket
        known = isinstance(action, str) and action in ACTIONS
        log_failure(log, f"ds/kefu {action if known else 'frame'} failed", exc)
        conn.send(codec.fail("Internal server error", echoable_op_id(op_id)))
        return
    conn.send(codec.ok(message, data, op_id))
    if "list_after_reply" in conn.state:
        _list_conversations(conn, conn.state.pop("list_after_reply"))
    live.publish(events, conn.id)


def _list_conversations(conn, kefu_id: int) -> None:
    """After an agent's login reply: its open conversations, as the waiter's auth lists
    them. One a visitor opened while the agent was offline was announced to nobody, and
    ds/kefu gives an agent no other way to learn its id. Read after the reply, so that
    a failed read cannot undo a login that happened; the socket stays signed in."""
    try:
        refs = history.open_for_agent(kefu_id)
    except Busy:
        log.warning("listing agent %s's conversations skipped: no connection free", kefu_id)
        return
    for ref in refs:
        conn.send(codec.assigned_push(ref))


@sock.route("/ws", bp=bp)
def serve(ws) -> None:
    config = current_app.config  # looked up once: the proxy costs a lookup per use
    live = current_app.extensions["kefu.live"]
    max_bytes = config["MAX_FRAME_BYTES"]
    conn = Connection(ws, codec.DsKefuCodec(), config["WS_OUTBOX_LIMIT"])
    conn.state["address"] = request.remote_addr  # the client's, behind KEFU_PROXY_COUNT
    live.open(conn)
    try:
        for raw in conn.frames():
            if raw is not None:
                handle(conn, raw, live, max_bytes)
    finally:
        live.close(conn)
        conn.finish()
