"""The agent's pages: sign-in/out and the dashboard (``/agent``).

Every action is a small POST answered with a partial; the rest of the page follows
through the live channel, which renders the same partials.
"""

import re

from flask import Blueprint, current_app, redirect, render_template, request, url_for

from kefu.errors import Invalid, KefuError, TooManyRequests
from kefu.models import OPEN, SENDER_AGENT, SENDER_USER, TEXT, USERNAME_MAX
from kefu.params import BOUND_MAX, number, optional_number
from kefu.realtime.live import publish
from kefu.services import accounts, conversations, desk, messages, routing
from kefu.web import session as web
from kefu.web.render import HOMES, error_response, older_part, partial

bp = Blueprint("agent", __name__, url_prefix="/agent")
PAGE = 30


# A local path: "/" then printable ASCII with no space or backslash, and not a second
# "/" (a scheme-relative "//host"). Browsers drop tabs and newlines from a URL and read
# a backslash as "/", so "/<tab>/evil.example" and "/\evil.example" would leave the site.
LOCAL_PATH = re.compile(r"/(?!/)[\x21-\x5b\x5d-\x7e]*")


def _safe_next(target: str | None) -> str:
    """Only a local path: never an open redirect to another site."""
    if target and LOCAL_PATH.fullmatch(target):
        return target
    return url_for("agent.dashboard")


@bp.get("/sign-in")
def sign_in_form():
    return render_template(
        "agent/sign_in.html", csrf=web.csrf_token(), next=request.args.get("next", ""), error=None
    )


def _admit_attempt(username: str) -> None:
    """TooManyRequests past the username's or the address's budget. A browser the agent
    signed in from before counts apart (``web.known_devices``): guesses from elsewhere
    cannot lock the agent out of it."""
    # No username is longer than the column (150): a longer one is keyed by its start,
    # or each made-up megabyte of a name stayed in the per-username table.
    name = web.username_key(username[:USERNAME_MAX])
    key = f"{name}\x00known" if name in web.known_devices() else name
    # The client's address: the forwarded one behind KEFU_PROXY_COUNT.
    current_app.extensions["kefu.live"].admit_sign_in(key, request.remote_addr)


def _sign_in_page(error: str, status: int):
    page = render_template(
        "agent/sign_in.html",
        csrf=web.csrf_token(),
        next=request.form.get("next", ""),
        error=error,
    )
    return page, status


@bp.post("/sign-in")
def sign_in():
    web.check_csrf()
    username = request.form.get("username", "").strip()
    try:
        _admit_attempt(username)
    except TooManyRequests as exc:
        web.sign_out(web.AGENT)  # as any failed sign-in: the browser's session ends
        return _sign_in_page(exc.message, exc.status)
    user = accounts.verify_password(username, request.form.get("password", ""))
    who = None
    if user is not None:
        web.sign_in(web.AGENT, user.id)
        who = web.current_agent()
    if who is None:
        web.sign_out(web.AGENT)
        return _sign_in_page("Wrong username or password, or not an agent account.", 401)
    response = redirect(_safe_next(request.form.get("next")))
    web.remember_device(response, username)
    return response


@bp.post("/sign-out")
def sign_out():
    web.check_csrf()
    web.sign_out(web.AGENT)  # this browser's dashboards close too, on every worker
    return redirect(url_for("agent.sign_in_form"))


def _conversation_context(who, conversation_id: int) -> dict:
    conv, rating = desk.thread(who, conversation_id)
    # Opening it is reading it; a HEAD (a link checker, a prefetch) opens nothing.
    if conv.status == OPEN and conv.kefu_unread_count and request.method == "GET":
        _, events = conversations.mark_read(
            conv.id, who, desk.unread_ids(conv.id, SENDER_USER), SENDER_USER
        )
        publish(events)
        conv, rating = desk.thread(who, conversation_id)
    msgs = desk.before(who, conv.id, None, PAGE)
    return {
        "c": conv,
        "msgs": msgs,
        "more": bool(msgs) and msgs[0].seq > 1,
        "side": SENDER_AGENT,
        "csrf": web.csrf_token(),
        "rating": rating,
    }


def _dashboard(who, conversation_id: int | None):
    open_rows, ended_rows = desk.agent_desk(who.kefu_id)
    context = _conversation_context(who, conversation_id) if conversation_id else {}
    if request.headers.get("HX-Request") and conversation_id:
        return render_template("parts/conversation.html", **context)
    with_agent = desk.agent_settings(who.kefu_id)
    context.update(
        me=who,
        open_rows=open_rows,
        ended_rows=ended_rows,
        csrf=web.csrf_token(),
        queue_length=routing.queue_length(),
        accepting=with_agent.accepting,
    )
    return render_template("agent/dashboard.html", **context)


@bp.get("")
@web.agent_required
def dashboard(who):
    return _dashboard(who, None)


@bp.get("/c/<row_id:conversation_id>")
@web.agent_required
def conversation(who, conversation_id):
    return _dashboard(who, conversation_id)


@bp.get("/c/<row_id:conversation_id>/older")
@web.agent_required
def older(who, conversation_id):
    before_seq = optional_number(request.args, "before", high=BOUND_MAX, low=1)  # none: newest
    msgs = desk.before(who, conversation_id, before_seq, PAGE)
    return older_part(msgs, conversation_id, SENDER_AGENT, "/agent")


@bp.post("/c/<row_id:conversation_id>/send")
@web.agent_required
def send(who, conversation_id):
    web.admit_send(who)
    message_type = number(request.form, "message_type", TEXT)
    msg, events, _ = messages.send(
        who,
        conversation_id,
        request.form.get("content", ""),
        message_type,
        request.form.get("file_url") or None,
        request.form.get("op_id"),  # empty: none (message_rules.idempotency_key)
    )
    publish(events)
    return partial("parts/message.html", m=msg, side=SENDER_AGENT)


@bp.post("/c/<row_id:conversation_id>/read")
@web.agent_required
def read(who, conversation_id):
    ids = desk.unread_ids(conversation_id, SENDER_USER)
    _, events = conversations.mark_read(conversation_id, who, ids, SENDER_USER)
    publish(events)
    return "", 204


@bp.post("/c/<row_id:conversation_id>/end")
@web.agent_required
def end(who, conversation_id):
    publish(conversations.end(conversation_id, who))
    conv, rating = desk.thread(who, conversation_id)
    return partial(
        "parts/agent_footer.html",
        c=conv,
        rating=rating,
        csrf=web.csrf_token(),
        ended_by=SENDER_AGENT,  # "You ended this conversation", as the push says
    )


@bp.post("/ready")
@web.agent_required
def ready(who):
    accepting = request.form.get("accepting")
    if accepting not in ("0", "1"):
        raise Invalid("accepting must be 0 or 1")
    accepting = accepting == "1"
    publish(routing.set_accepting(who.kefu_id, accepting))
    return partial("parts/ready.html", accepting=accepting, csrf=web.csrf_token())


@bp.errorhandler(KefuError)
def domain_error(exc: KefuError):
    return error_response(exc.message, exc.status, *HOMES["/agent"])
