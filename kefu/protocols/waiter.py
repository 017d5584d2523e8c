"""The waiter protocol: ``/v1/ws/connect/user`` and ``/v1/ws/connect/waiter``.

Frames are handled one at a time per socket, in order, by the tables in waiter_frames.py;
a bad frame costs one ``error`` reply and never the socket. A handler's events are
published after its reply, to every connection of the people concerned, each rendered
in its own protocol. A user socket silent for ``USER_IDLE_SECONDS`` gets ``idle`` and,
after ``USER_IDLE_GRACE_SECONDS`` more, is disconnected. docs/protocol-waiter.md
describes every frame and error.
"""

import logging

from flask import Blueprint, current_app

from kefu.errors import Invalid, KefuError, refuse_nul
from kefu.protocols import waiter_codec as codec
from kefu.protocols.fields import Fields, FrameError, op_id_of, parse_frame
from kefu.protocols.waiter_codec import USER, WAITER, frame
from kefu.protocols.waiter_frames import (
    USER_TYPES,
    WAITER_TYPES,
    NotConnected,
    Request,
    kick_older_waiters,
)
from kefu.realtime.connection import Connection
from kefu.realtime.events import WaiterSignedIn
from kefu.realtime.transport import sock
from kefu.services import conversations
from kefu.services.snapshots import conversation_ref

log = logging.getLogger(__name__)
bp = Blueprint("waiter", __name__)


@bp.record_once
def _install(state) -> None:
    """A waiter's new sign-in kicks its older sockets on every worker (a published event)."""
    state.app.extensions["kefu.live"].on(WaiterSignedIn, kick_older_waiters)


WAITER_TICK = 5.0  # how often a waiter socket's loop notices it was kicked out
_GONE = object()


def handle(conn, raw, live, max_bytes: int, table: dict) -> None:
    """One frame in: its reply (or an error) out, then its events to everyone concerned."""
    op_id = None
    try:
        parsed = parse_frame(raw, max_bytes)
        op_id = _echoable(parsed.get("op_id"))
        live.admit_frame(conn)
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
        refuse_nul("to", to)  # PostgreSQL refused the uuid lookup: an internal error
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
        live.close(conn)
        conn.finish()


@sock.route("/v1/ws/connect/user", bp=bp)
def serve_user(ws) -> None:
    _serve(ws, USER)


@sock.route("/v1/ws/connect/waiter", bp=bp)
def serve_waiter(ws) -> None:
    _serve(ws, WAITER)
