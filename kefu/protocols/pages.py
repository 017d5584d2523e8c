"""The pages' live channel ``/pages/ws``: the third adapter, next to ds/kefu and waiter.

The socket is authenticated by the page's session cookie, so a cross-site page must
not be able to open it (cross-site WebSocket hijacking): the Origin must be this host.
A socket closed by the server with 1008 (account disabled, credentials changed, too
slow) makes the page reload, which re-checks the session; one closed with 1013 (no
database connection free) reconnects after a pause. The page speaks one frame,
``{"type": "hello", "conversation_id", "after_seq"}``, sent on every (re)connect; the
reply re-renders what a dropped socket may have missed.
"""

import json
import logging
from urllib.parse import urlsplit

from flask import Blueprint, abort, current_app, g, request

from kefu.errors import Busy, KefuError, NotFound, TooManyRequests
from kefu.models import SENDER_AGENT, SENDER_USER
from kefu.protocols.pages_codec import PagesCodec, oob, user_header
from kefu.protocols.queue_entries import shown_taken
from kefu.realtime.admission import TooManyConnections
from kefu.realtime.connection import Connection
from kefu.realtime.transport import sock
from kefu.services import conversations, desk, message_pages, routing
from kefu.services.snapshots import conversation_ref
from kefu.web import session as web_session
from kefu.web.render import partial

log = logging.getLogger(__name__)
bp = Blueprint("pages_ws", __name__)


def origin_allowed() -> bool:
    """This host, or an origin on the configured allow-list (a dashboard served from
    another domain). Cookie-authenticated sockets need this: browsers send cookies with
    cross-site WebSocket handshakes."""
    origin = request.headers.get("Origin", "")
    if not origin:
        return False
    if urlsplit(origin).netloc == request.host:
        return True
    return origin.rstrip("/") in current_app.config["WS_ALLOWED_ORIGINS"]


def _principal():
    role = request.args.get("as")
    if role == "agent":
        return web_session.current_agent()
    if role == "user":
        return web_session.current_user()
    return None


def resync(conn, frame: dict) -> str:
    """Missed messages of the conversation on screen, plus the lists and counters (an
    agent) or the header of the user's open conversation, which may have started while
    the socket was down (another tab, ds/kefu)."""
    who = conn.principal
    out = []
    conversation_id = frame.get("conversation_id")
    after_seq = frame.get("after_seq")
    if isinstance(conversation_id, int) and isinstance(after_seq, int):
        side = SENDER_AGENT if who.is_agent else SENDER_USER
        try:
            missed = message_pages.after(who, conversation_id, after_seq)
        except NotFound:  # not theirs, or no such conversation: nothing to add
            missed = []
        html = "".join(partial("parts/message.html", m=m, side=side) for m in missed)
        if html:
            out.append(oob(f"#thread-{conversation_id}", html))
    if who.is_agent:
        open_rows, ended_rows = desk.agent_desk(who.kefu_id)
        for row in open_rows:  # a requeue older than these rows' hand-backs changes none
            shown_taken(conn, row.conversation.id, row.taken_entry)
        rows = "".join(partial("parts/conv_row.html", row=r) for r in open_rows)
        ended = "".join(partial("parts/conv_row.html", row=r) for r in ended_rows)
        out.append(f'<div id="open-list" hx-swap-oob="innerHTML">{rows}</div>')
        out.append(f'<div id="ended-list" hx-swap-oob="innerHTML">{ended}</div>')
        out.append(partial("parts/queue_badge.html", queue_length=routing.queue_length(), oob=True))
    elif (current := conversations.current_for_user(who.user_id)) is not None:
        shown_taken(conn, current.id, current.taken_entry)  # as for the agent's rows
        out.append(user_header(conn, conversation_ref(current)))
    return "".join(out)


def _hello(conn, raw) -> None:
    try:
        frame = json.loads(raw)
    except (TypeError, ValueError):
        return
    if isinstance(frame, dict) and frame.get("type") == "hello":
        html = resync(conn, frame)
        if html:
            conn.send(html)


@bp.before_request
def refuse_strangers():
    """Before the handshake: a refused socket gets a plain 403, never an upgrade."""
    if not origin_allowed():
        abort(403, description="Cross-origin live channel refused")
    g.pages_who = _principal()
    if g.pages_who is None:
        abort(403, description="Sign in first")


@bp.errorhandler(KefuError)
def refused(exc: KefuError):
    """Before the handshake, e.g. reading the session's account found the database pool
    drained (503): the page's socket retries by itself."""
    return exc.message, exc.status


@sock.route("/pages/ws", bp=bp)
def serve(ws) -> None:
    who = g.pages_who
    app = current_app
    live = app.extensions["kefu.live"]
    conn = Connection(ws, PagesCodec(), app.config["WS_OUTBOX_LIMIT"])
    role = web_session.AGENT if who.is_agent else web_session.USER
    # The session it was opened in: signing out there closes it (SignedOut.session).
    conn.state.update(role=role, csrf=web_session.csrf_token())
    conn.state["session"] = web_session.session_mark(role)
    live.open(conn)
    try:
        try:
            live.sign_in(conn, who)
        except TooManyConnections:
            conn.close(1013, "Too many connections")  # 1013: the page retries later
            return
        for raw in conn.frames():
            if raw is None or len(raw) > 4096:
                continue
            try:
                live.admit_frame(conn)
                _hello(conn, raw)
            except TooManyRequests:
                continue  # a page that floods gets no answers, and costs no work
            except Busy:  # no database connection free: the page reconnects, and resyncs
                conn.close(1013, "Server busy")
                return
            except Exception:  # a bad frame costs nothing but a log line
                log.exception("pages frame failed")
    finally:
        live.close(conn)
        conn.finish()
