"""Rendering shared by full pages and the live channel: filters and partials.

Partials are rendered from ``app.jinja_env`` with an explicit context only: the live
channel renders in whichever greenlet published the event (maybe another person's
request), so nothing may come from ``session`` or ``request`` implicitly.
"""

import re
from datetime import UTC, datetime
from urllib.parse import urlsplit

from markupsafe import Markup, escape

from kefu.models import FILE, IMAGE, SENDER_AGENT, SENDER_USER
from kefu.services.message_rules import is_upload_path

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
    if not url or any(ch in url for ch in "\\\x00\r\n\t") or url.startswith("//"):
        return None
    if url.startswith("/"):
        return url if is_upload_path(url) else None
    parts = urlsplit(url)
    return url if parts.scheme.lower() in ("http", "https") and parts.netloc else None


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
    return value.strftime("%H:%M") if isinstance(value, datetime) else ""


def iso(value) -> str:
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


def install(app) -> None:
    _app["app"] = app
    app.jinja_env.filters.update(
        safe_url=safe_url,
        linkify=linkify,
        clock_time=clock_time,
        iso=iso,
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
    )


def partial(name: str, **context) -> str:
    """One component, e.g. ``partial("parts/message.html", m=msg, side=2)``."""
    return _app["app"].jinja_env.get_template(name).render(**context)
