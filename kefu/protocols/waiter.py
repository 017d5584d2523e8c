"""The waiter protocol: ``/v1/ws/connect/user`` and ``/v1/ws/connect/waiter``.

Frames are handled one at a time per socket, in order, by the tables below (signing in
is here, with the kickout it causes; the other handlers are in waiter_frames.py); a bad
frame costs one ``error`` reply and never the socket. A handler's events are
published after its reply, to every connection of the people concerned, each rendered
in its own protocol. A user socket silent for ``USER_IDLE_SECONDS`` gets ``idle`` and,
after ``USER_IDLE_GRACE_SECONDS`` more, is disconnected. docs/protocol-waiter.md
describes every frame and error.
"""

import logging

from flask import Blueprint, current_app

from kefu import auth
from kefu.errors import Forbidden, Invalid, KefuError, Unauthorized, refuse_nul
from kefu.failures import log_failure
from kefu.protocols import waiter_codec as codec
from kefu.protocols import waiter_holds as holds
from kefu.protocols import waiter_wire as wire
from kefu.protocols.fields import Fields, FrameError, echoable_op_id, op_id_of, parse_counted
from kefu.protocols.queue_entries import shown_taken
from kefu.protocols.waiter_codec import USER, WAITER
from kefu.protocols.waiter_frames import (
    NotConnected,
    Request,
    user_connect,
    user_disconnect,
    user_rate,
    user_send,
    waiter_disconnect,
    waiter_send,
    waiter_switch,
)
from kefu.protocols.waiter_history import user_history, waiter_history, waiter_sessions
from kefu.protocols.waiter_replay import WaiterAbsences, waiter_sockets
from kefu.protocols.waiter_wire import frame
from kefu.realtime.connection import Connection
from kefu.realtime.events import WaiterSignedIn
from kefu.realtime.transport import sock
from kefu.services import accounts, conversations, history
from kefu.services.snapshots import conversation_ref

log = logging.getLogger(__name__)
bp = Blueprint("waiter", __name__)


@bp.record_once
def _install(state) -> None:
    """A waiter's new sign-in kicks its older sockets on every worker (a published event)."""
    state.app.extensions["kefu.live"].on(WaiterSignedIn, kick_older_waiters)
    state.app.extensions["kefu.waiter_absences"] = WaiterAbsences()


# -- signing in ------------------------------------------------------------------


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
        if role == WAITER:  # before the sign-in's dispatch can hand it a user
            current_app.extensions["kefu.waiter_absences"].start(live, conn, principal)
        # Sign-in may refuse (too many sockets); the users it may hand an agent are
        # dispatched in a greenlet of their own, so they follow this reply.
        live.sign_in(conn, principal)
    conn.send(frame("auth_success", principal.person.profile(), req.op_id, None, principal.person))
    return principal, first


def user_auth(conn, req, live):
    _authenticate(conn, req, live, USER)
    return []


def waiter_auth(conn, req, live):
    """Sign in; older waiter sockets of this agent are kicked out (its conversations
    belong to the agent, not to a socket, so none move or drop); this socket is told
    about every user and visitor the agent is serving. The kickout is a published event, so it
    reaches older sockets on every worker (``kick_older_waiters``)."""
    holds.hold_early(conn)  # pushes may come while the users are read (they follow them)
    try:
        who, first = _authenticate(conn, req, live, WAITER)
        accepting = conn.state["accepting"] = accounts.agent_profile(who.kefu_id).accepting
        # What the customers wrote while the agent had no waiter socket here follows
        # each new_connection, as after an assignment.
        since = conn.state["heard_until"][0] if first else None  # (WaiterAbsences.start)
        tell_serving(conn, who.kefu_id, req.op_id, since)
    finally:
        for out in holds.release_early(conn):
            conn.send(out)
    if not accepting:
        # The switch is kept across sockets (``unready`` here or on the dashboard): a
        # client back from a drop is told, as of a switch elsewhere, so it knows that
        # no user will come until it sends ``ready``.
        conn.send(frame("unready", None, None, None, who.person))
    if not first:
        return []
    return [WaiterSignedIn(who.user_id, live.worker_id, conn.id, conn.signed_in_at)]


def tell_serving(conn, kefu_id: int, op_id, since) -> None:
    """A signing-in waiter socket is told of every user and visitor the agent serves,
    each with what its customer wrote since ``since`` (None: nothing), and remembers
    the queue entry each was taken from, before a read below yields to other news."""
    serving = history.open_for_agent_taken(kefu_id)  # users and visitors
    for ref, entry in serving:
        shown_taken(conn, ref.id, entry)
    for ref, _ in serving:
        missed = history.customer_messages_since(ref.id, since) if since else ()
        for out in codec.announcement(conn, ref, op_id, missed):
            conn.send(out)


def kick_older_waiters(live, event: WaiterSignedIn) -> None:
    """In every worker: the agent's waiter sockets that signed in before ``event`` get
    ``kickout`` and are closed; the new socket (and any newer one) stays."""
    for other in waiter_sockets(live, event.user_id):
        if other.closed:
            continue
        if event.worker_id == live.worker_id and other.id == event.connection_id:
            continue
        if (getattr(other, "signed_in_at", None) or event.at) > event.at:
            continue
        other.send(frame("kickout", None, None, None, other.principal.person))
        other.close(4000, "Signed in on another connection")


# -- frame type → handler, one table per role -------------------------------------

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


# -- the socket loop --------------------------------------------------------------


WAITER_TICK = 5.0  # how often a waiter socket's loop notices it was kicked out
_GONE = object()


def handle(conn, raw, live, max_bytes: int, table: dict) -> None:
    """One frame in: its reply (or an error) out, then its events to everyone concerned."""
    op_id = kind = None
    try:
        parsed = parse_counted(raw, max_bytes, live, conn)
        op_id = echoable_op_id(parsed.get("op_id"))
        live.admit_frame(conn)
        op_id = op_id_of(parsed)
        kind = parsed.get("type")
        if kind is None or kind == "":
            raise FrameError("type is required")
        if not isinstance(kind, str):
            raise FrameError("type must be a string")
        handler = table.get(kind)
        if handler is None:
            raise FrameError(f"Unknown type: {kind}")
        to = parsed.get("to")
        if to is not None and not isinstance(to, str):
            raise Invalid("to must be a string")
        refuse_nul("to", to)  # PostgreSQL refused the uuid lookup: an internal error
        request = Request(op_id, to, Fields(parsed.get("payload"), "payload"))
        events = handler(conn, request, live)
        codec.note_request(conn, op_id, events)  # pushes it causes here echo its op_id
        live.publish(events, origin=conn.id)
    except NotConnected as exc:
        conn.send(frame("not_connect", {"message": exc.message}, op_id, None, _person(conn)))
    except KefuError as exc:
        op_id = getattr(exc, "op_id", None) if op_id is None else op_id  # a FrameError's
        conn.send(wire.error(exc.message, op_id, _person(conn)))
    except Exception as exc:  # a bug (or a full disk) must cost one reply, not the socket
        known = isinstance(kind, str) and kind in table
        log_failure(log, f"waiter-protocol {kind if known else 'frame'} failed", exc)
        conn.send(wire.error("Internal server error", op_id, _person(conn)))


def _person(conn):
    return conn.principal.person if conn.principal else None


def _idle_out(conn, live) -> None:
    """The grace after ``idle`` passed in silence: close the socket, and end the user's
    conversation unless another socket of the user is still live (freeing the agent)."""
    who = conn.principal
    try:
        if who is not None and live.connections_anywhere(who.key) <= 1:  # only this one
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
        current_app.extensions["kefu.waiter_absences"].went(live, conn)
        live.close(conn)
        conn.finish()


@sock.route("/v1/ws/connect/user", bp=bp)
def serve_user(ws) -> None:
    _serve(ws, USER)


@sock.route("/v1/ws/connect/waiter", bp=bp)
def serve_waiter(ws) -> None:
    _serve(ws, WAITER)
