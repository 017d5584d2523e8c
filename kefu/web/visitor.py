"""The visitor widget: ``/widget.js`` (the loader a website embeds), ``/visitor`` (the
chat inside the widget's iframe), its history partial, and the ``/widget/demo`` page.

The iframe talks the ds/kefu visitor actions over ``/ws`` like any other client. Its
visitor id is a random 128-bit value kept in the iframe's localStorage; knowing it is
what lets a browser read the history, so it is never shown or derived from anything.
"""

from flask import Blueprint, current_app, render_template, request, send_from_directory

from kefu.errors import KefuError
from kefu.models import SENDER_USER
from kefu.params import number
from kefu.protocols.fields import Fields
from kefu.services import accounts, desk, presence, visitors
from kefu.web.render import partial

bp = Blueprint("visitor", __name__)


def _kefu_id() -> int:
    """As a frame's id field: "kefu_id is required", "… must be a positive integer"."""
    return Fields(request.args).id("kefu_id")


@bp.get("/visitor")
def page():
    kefu_id = _kefu_id()
    agent = accounts.serving_agent(kefu_id)
    name = agent.user.nickname or agent.user.username
    return render_template(
        "visitor/visitor.html", kefu_id=kefu_id, agent_name=name, away=_away(agent), csrf=""
    )


def _away(agent) -> bool:
    """Whether the header should say the agent is away: signed out everywhere (the hub's
    presence) or not taking conversations (the Ready switch). Messages are still stored."""
    return (
        not agent.user.is_active
        or not agent.accepting
        or (agent.id not in presence.online_agent_ids())
    )


@bp.get("/visitor/messages")
def history():
    """The visitor's messages after ``after`` (a message id), rendered as bubbles, plus
    whether a conversation is open (``X-Kefu-Open``) so the iframe can show the end."""
    kefu_id = _kefu_id()
    visitor_id = visitors.check_visitor_id(request.args.get("visitor_id"))
    after = number(request.args, "after", 0, low=0)
    rows = [m for m in visitors.history(visitor_id, kefu_id, limit=100) if m.id > after]
    html = "".join(partial("parts/message.html", m=m, side=SENDER_USER) for m in rows)
    open_id = desk.visitor_state(visitor_id, kefu_id)
    headers = {
        "X-Kefu-Open": str(open_id or ""),
        "X-Kefu-Away": "1" if _away(accounts.agent_profile(kefu_id)) else "",
        "Cache-Control": "no-store",
    }
    return html, 200, headers


@bp.get("/widget.js")
def widget():
    response = send_from_directory(current_app.static_folder, "widget.js", max_age=300)
    response.headers["Access-Control-Allow-Origin"] = "*"
    return response


@bp.get("/widget/demo")
def demo():
    kefu_id = number(request.args, "kefu_id", 1, low=1)
    return render_template("visitor/demo.html", kefu_id=kefu_id, csrf="")


@bp.errorhandler(KefuError)
def domain_error(exc: KefuError):
    if request.endpoint == "visitor.page":  # the widget's panel: a page, not a fragment
        return render_template("visitor/unavailable.html", message=exc.message), exc.status
    return partial("parts/flash.html", message=exc.message), exc.status
