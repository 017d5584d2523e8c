"""Rendering shared by full pages and the live channel: filters and partials.

Partials are rendered from ``app.jinja_env`` with an explicit context only: the live
channel renders in whichever greenlet published the event (maybe another person's
request), so nothing may come from ``session`` or ``request`` implicitly. (The one
exception, ``error_response``, is an error handler's helper and reads the request it
answers.)
"""

import dataclasses
import os
import re
from datetime import UTC, datetime
from http import HTTPStatus

from markupsafe import Markup, escape

from kefu.models import FILE, IMAGE, SENDER_AGENT, SENDER_USER, TEXT
from kefu.services.message_rules import is_file_url, is_upload_path

_URL = re.compile(r"https?://[^\s<>\"']+", re.IGNORECASE)
_TRAILING = ".,;:!?)]}"
_app = {"app": None}


def safe_url(url) -> str | None:
    """The URL if it is http(s) or an upload on this server; None for anything else
    (``javascript:``, ``data:``, protocol-relative ``//host``, backslash tricks, and
    other local paths: rows stored before check_body refused them must not become an
    ``<img>`` that the agent's browser loads with its cookies, e.g. ``/chat?token=…``)."""
    if not isinstance(url, str):
        return None
    url = url.strip()
    return url if is_file_url(url) else None


def linkify(text) -> Markup:
    """Escape the text; turn bare http(s) URLs into links that open elsewhere."""
    out, last = [], 0
    text = text or ""
    for match in _URL.finditer(text):
        url = match.group(0).rstrip(_TRAILING)
        end = match.start() + len(url)
        out.append(escape(text[last : match.start()]))
        out.append(
            Markup(
                '<a href="{0}" target="_blank" rel="noopener noreferrer nofollow">{0}</a>'
            ).format(url)
        )
        last = end
    out.append(escape(text[last:]))
    return Markup("").join(out)


def clock_time(value) -> str:
    """The UTC clock time: what a ``<time>`` shows until static/localtime.js rewrites it
    in the reader's zone (and what stays when scripts are off)."""
    return value.strftime("%H:%M") if isinstance(value, datetime) else ""


def utc_stamp(value) -> str:
    """The whole UTC date and time, for a ``<time>``'s title when scripts are off."""
    return value.strftime("%Y-%m-%d %H:%M UTC") if isinstance(value, datetime) else ""


def iso(value) -> str:
    """The instant for ``<time datetime>`` (stored times are naive UTC)."""
    return value.replace(tzinfo=UTC).isoformat() if isinstance(value, datetime) else ""


def customer_name(conv) -> str:
    """How a conversation's customer is shown: the user's name or a short visitor tag."""
    if conv.customer is not None:
        return conv.customer.nickname or conv.customer.username
    return f"Visitor {(conv.visitor_id or '')[-6:]}"


def agent_name(conv) -> str:
    agent = getattr(conv, "agent", None)
    return (agent.nickname or agent.username) if agent else ""


def preview(msg) -> str:
    if msg is None:
        return ""
    if msg.message_type == IMAGE:
        return "[image]"
    if msg.message_type == FILE:
        return "[file]"
    text = " ".join(msg.content.split())
    return text if len(text) <= 80 else text[:79] + "…"


def file_name(url) -> str:
    return (url or "").rstrip("/").rsplit("/", 1)[-1] or "file"


# A visitor's image travels as its link (the ds/kefu visitor send carries text only):
# the widget sends ``<kefu's origin>/uploads/<name>``.
_LINK_PATH = re.compile(r"https?://[^/\s]+(/\S+)", re.IGNORECASE)


def as_shown(m):
    """``m`` as a bubble shows it: a text that is nothing but a link to one of this
    server's image uploads is shown as that picture, to the visitor and the agent alike.
    The picture is loaded from this server (its upload path), whatever host the link
    names, and only an upload that exists qualifies: a link elsewhere stays a link and
    makes no reader's browser fetch anything."""
    if m.message_type != TEXT or m.file_url or not dataclasses.is_dataclass(m):
        return m
    found = _LINK_PATH.fullmatch((m.content or "").strip())
    if found is None or not _an_uploaded_image(found.group(1)):
        return m
    return dataclasses.replace(m, message_type=IMAGE, file_url=found.group(1), content="")


def _an_uploaded_image(path: str) -> bool:
    """``path`` names an image ``POST /api/kefu/upload`` stored, and it is still there."""
    from kefu.api.uploads import IMAGES  # here: kefu.api.uploads imports kefu.web

    if not is_upload_path(path) or path.rsplit(".", 1)[-1] not in IMAGES:
        return False
    name = path.rsplit("/", 1)[-1]
    return os.path.isfile(os.path.join(_app["app"].config["UPLOAD_DIR"], name))


def install(app) -> None:
    _app["app"] = app
    app.jinja_env.filters.update(
        safe_url=safe_url,
        as_shown=as_shown,
        linkify=linkify,
        clock_time=clock_time,
        iso=iso,
        utc_stamp=utc_stamp,
        preview=preview,
        file_name=file_name,
    )
    app.jinja_env.globals.update(
        customer_name=customer_name,
        agent_name=agent_name,
        IMAGE=IMAGE,
        FILE=FILE,
        SENDER_AGENT=SENDER_AGENT,
        SENDER_USER=SENDER_USER,
        # The message boxes' maxlength (parts/composer.html): the limit check_body keeps.
        MAX_CONTENT_CHARS=app.config["MAX_CONTENT_CHARS"],
    )


def partial(name: str, **context) -> str:
    """One component, e.g. ``partial("parts/message.html", m=msg, side=2)``."""
    return _app["app"].jinja_env.get_template(name).render(**context)


def older_part(msgs, conversation_id: int, side: int, url_base: str, **context) -> str:
    """``parts/older.html``: a page of earlier messages, with a link to the page before
    it while there is one (the dashboard's and /chat's "older" answers)."""
    more = bool(msgs) and msgs[0].seq > 1
    return partial(
        "parts/older.html",
        msgs=msgs,
        c_id=conversation_id,
        side=side,
        url_base=url_base,
        more=more,
        **context,
    )


# Where a refused page sends its reader back to, by the path's first part.
HOMES = {
    "/agent": ("/agent", "Back to your conversations"),
    "/chat": ("/chat", "Back to the chat"),
}


# Any other address (a mistyped one, a gone upload) leads to the server's own address,
# which opens the dashboard: customers arrive through the host's links and the widget.
ELSEWHERE = ("/", "Go to kefu")


def home_of(path: str) -> tuple[str, str]:
    """(link, label) of the page area ``path`` is in."""
    return HOMES.get("/" + path.lstrip("/").split("/", 1)[0], ELSEWHERE)


def error_response(message: str, status: int, back: str, back_label: str):
    """A refused request's answer, for a blueprint's error handler. An htmx request or
    the composer's fetch (both send ``HX-Request``) gets the one-line ``parts/flash.html``,
    which the page shows as a toast; a page the browser opened (a link, the address bar)
    gets ``error.html``: the message in the normal layout, with a link ``back``.
    Called only while answering a request (it reads its headers)."""
    from flask import request

    if request.headers.get("HX-Request"):
        return partial("parts/flash.html", message=message), status
    try:
        title = HTTPStatus(status).phrase
    except ValueError:
        title = "Something went wrong"
    page = partial(
        "error.html", title=title, message=message, back=back, back_label=back_label, csrf=""
    )
    return page, status
