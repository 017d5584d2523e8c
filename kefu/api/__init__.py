"""REST: the ds/kefu HTTP API. Envelope ``{"code": 200, "data": …}``; errors
``{"code": N, "message": …}`` with the same HTTP status."""

import json

from flask import Blueprint, jsonify, request
from werkzeug.exceptions import HTTPException

from kefu import auth
from kefu.errors import KefuError, Unauthorized
from kefu.params import number
from kefu.protocols.dskefu_codec import conversation_json, message_json
from kefu.realtime.live import publish
from kefu.services import conversations, message_pages

bp = Blueprint("api", __name__, url_prefix="/api")


def principal():
    header = request.headers.get("Authorization", "")
    if not header:
        raise Unauthorized("Authorization header with a Bearer token is required")
    return auth.authenticate(header)


PAGE_MAX = 1_000_000  # keeps page * page_size far from any OFFSET overflow


def envelope(data, code: int = 200):
    return jsonify({"code": code, "data": data}), code


@bp.get("/kefu/message/getConversation")
def get_conversation():
    who = principal()
    conv, events = conversations.open_for_user(who)
    publish(events)
    return envelope(conversation_json(conv))


@bp.get("/kefu/message/list")
def message_list():
    who = principal()
    args = request.args
    conversation_id = number(args, "conversation_id")
    page_size = number(args, "page_size", 10, high=None)  # any larger one gets the cap
    page = number(args, "page", 1, PAGE_MAX, low=1)  # checked as documented even when unused
    if args.get("after_id") is not None:  # resync: everything after the last seen
        rows = message_pages.after_message(
            who, conversation_id, number(args, "after_id"), page_size
        )
    else:
        rows = message_pages.page(who, conversation_id, page, page_size)
    return envelope([message_json(m) for m in rows])


@bp.errorhandler(KefuError)
def domain_error(exc: KefuError):
    return jsonify({"code": exc.status, "message": exc.message}), exc.status


def http_error(exc: HTTPException):
    """An HTTP error under /api/ (unknown route, wrong method, …) in the API's envelope
    (``kefu.web`` registers the handler for every path)."""
    response = exc.get_response()  # keeps headers such as a 405's Allow
    response.set_data(json.dumps({"code": exc.code, "message": exc.description}))
    response.content_type = "application/json"
    return response


@bp.after_request
def not_stored(response):
    """Conversations and messages are private: no cache keeps them."""
    response.headers.setdefault("Cache-Control", "no-store")
    return response


def init_app(app) -> None:
    from kefu.api import openapi  # noqa: F401  (adds GET /api/openapi.json to bp)

    app.register_blueprint(bp)
