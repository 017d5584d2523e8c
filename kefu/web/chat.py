"""The customer's chat page (``/chat``).

The host application sends its user here once with a token (a kefu bearer token or a
host-signed JWT): ``/chat?token=…``. The token becomes a session and the browser is
redirected to ``/chat`` at once, so the token does not stay in the address bar or the
history.
"""

from flask import Blueprint, abort, redirect, render_template, request, url_for

from kefu import auth
from kefu.errors import KefuError
from kefu.models import SENDER_AGENT, SENDER_USER, TEXT
from kefu.params import BOUND_MAX, number, optional_number
from kefu.realtime.live import publish
from kefu.services import conversations, customer_sends, desk
from kefu.services.queue_place import queue_place
from kefu.web import session as web
from kefu.web.render import HOMES, error_response, older_part, partial

bp = Blueprint("chat", __name__, url_prefix="/chat")
PAGE = 30


@bp.post("/switch")
def switch():
    """The "continue as …" of ``chat/switch.html``: this site's own form."""
    web.check_csrf()
    return _sign_in_with(request.form.get("token", ""), confirmed=True)


def _sign_in_with(token: str, confirmed: bool):
    """Exchange the host's token for a page session, and go to the chat."""
    try:
        who = auth.authenticate(token)
    except KefuError as exc:
        status = exc.status  # 401; 503 when no database connection was free
        return render_template("chat/signed_out.html", csrf="", error=exc.message), status
    if who.is_agent:
        abort(403, description="Agents use the dashboard at /agent")
    if not confirmed and _from_another_site():
        current = web.current_user()
        if current is not None and current.user_id != who.user_id:
            # Another person's link from another site: any page there could sign this
            # browser in as whoever its token names (its own account), and end the chat
            # of the person signed in here. The person at the browser decides.
            page = render_template(
                "chat/switch.html", csrf=web.csrf_token(), token=token, current=current, other=who
            )
            return page, 200
    web.sign_in(web.USER, who.user_id)  # the same person again keeps its session
    return redirect(url_for("chat.page"))


def _from_another_site() -> bool:
    """The browser says the request came from a page of another origin (a link, a
    form, a script). No header (an older browser, a script of the host's): not known."""
    return request.headers.get("Sec-Fetch-Site") not in (None, "same-origin", "none")


def _hx_refresh():
    return "", 204, {"HX-Refresh": "true"}


@bp.get("")
def page():
    token = request.args.get("token")
    if token:
        if request.headers.get("Sec-Fetch-Dest", "document") != "document":
            # An <img> or a fetch of this URL would sign the viewer's browser in as
            # whoever the token names (an image message naming this server by its full
            # address). Only a page load, as the host application's link makes, may.
            abort(403, description="Open the chat link as a page")
        return _sign_in_with(token, confirmed=False)
    who = web.current_user()
    if who is None:
        return render_template("chat/signed_out.html", csrf=""), 403
    conv = desk.latest_for_user(who.user_id)
    msgs = desk.before(who, conv.id, None, PAGE) if conv else []
    if conv is not None and conv.is_open and conv.unread_count and request.method == "GET":
        ids = desk.unread_ids(conv.id, SENDER_AGENT)  # (a HEAD reads nothing)
        publish(conversations.mark_read(conv.id, who, ids, SENDER_AGENT)[1])
    ref = conv and desk.row_for(conv.id).conversation
    position = queue_place(conv.id) if conv and conv.is_open else None
    return render_template(
        "chat/chat.html",
        me=who,
        c=ref,
        rating=conv.rating if conv else None,
        msgs=msgs,
        more=bool(msgs) and msgs[0].seq > 1,
        earlier=_earlier(who, conv.id if conv else None, msgs),
        side=SENDER_USER,
        position=position,
        csrf=web.csrf_token(),
    )


@bp.post("/sign-out")
def sign_out():
    """Off this browser (a shared computer): the session and its chat pages' sockets
    go; the person's other browsers and the host application's own connections stay."""
    web.check_csrf()
    web.sign_out(web.USER)  # its live channels close too (web.sign_out)
    return render_template("chat/signed_out.html", csrf="", signed_out=True)


@bp.post("/send")
@web.user_required
def send(who):
    web.admit_send(who)
    form = request.form
    body = (form.get("content", ""), number(form, "message_type", TEXT), form.get("file_url"))
    op_id = form.get("op_id")  # empty: none (message_rules.idempotency_key)
    msg, events = customer_sends.send_opening(who, *body, op_id)
    publish(events)
    if request.form.get("conversation_id", type=int) != msg.conversation_id:
        return _hx_refresh()  # the page showed no (or an old) conversation: show the new one
    return partial("parts/message.html", m=msg, side=SENDER_USER)


@bp.post("/new")
@web.user_required
def new(who):
    publish(conversations.open_for_user(who)[1])
    if not request.headers.get("HX-Request"):
        return redirect(url_for("chat.page"))
    # The page loads the new conversation in place (pages.js), not by a reload: the
    # push of its header starts that load first, and a reload landing after it threw
    # away what the customer had begun to type in the new box.
    return "", 204, {"HX-Trigger": "kefu-chat-changed"}


@bp.post("/end")
@web.user_required
def end(who):
    current = conversations.current_for_user(who.user_id)
    if current is not None:
        publish(conversations.end(current.id, who))
    return _hx_refresh()


@bp.post("/rate")
@web.user_required
def rate(who):
    conversation_id = number(request.form, "conversation_id", low=1)
    score = number(request.form, "rating")
    publish(conversations.rate(conversation_id, who, score))
    conv = desk.row_for(conversation_id).conversation
    return partial("parts/chat_footer.html", c=conv, rating=score, csrf=web.csrf_token())


@bp.post("/read")
@web.user_required
def read(who):
    current = conversations.current_for_user(who.user_id)
    if current is not None:
        ids = desk.unread_ids(current.id, SENDER_AGENT)
        publish(conversations.mark_read(current.id, who, ids, SENDER_AGENT)[1])
    return "", 204


@bp.get("/older")
@web.user_required
def older(who):
    conversation_id = number(request.args, "conversation_id", low=1)
    before = optional_number(request.args, "before", high=BOUND_MAX, low=1)  # none: the newest
    msgs = desk.before(who, conversation_id, before, PAGE)
    earlier = _earlier(who, conversation_id, msgs)
    return older_part(msgs, conversation_id, SENDER_USER, "/chat", earlier=earlier)


def _earlier(who, conversation_id: int | None, msgs: list) -> int | None:
    """Once a conversation's first message is shown, the history goes on into the
    customer's conversation before it (``parts/older.html``): one continuous chat."""
    if not conversation_id or (msgs and msgs[0].seq > 1):
        return None
    return desk.earlier_conversation(who, conversation_id)


@bp.errorhandler(KefuError)
def domain_error(exc: KefuError):
    return error_response(exc.message, exc.status, *HOMES["/chat"])
