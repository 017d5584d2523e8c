"""The pages' live channel: domain events rendered as htmx out-of-band HTML swaps.

Each frame is a few top-level elements carrying ``hx-swap-oob``; the htmx ws extension
swaps them into the page by id. Every component is the same partial the full page
renders (``templates/parts/*``), so a pushed message looks exactly like a loaded one.
A connection's ``state`` holds its role ("agent" or "user") and its CSRF token, so
forms inside pushed partials work; nothing is read from the publisher's request.
"""

import contextlib

from kefu import clock
from kefu.errors import Busy
from kefu.models import OPEN, SENDER_AGENT, SENDER_USER
from kefu.protocols.queue_entries import forget_taken, stale_requeue, took_from_queue
from kefu.realtime.events import (
    AgentChanged,
    ConversationAssigned,
    ConversationEnded,
    ConversationRated,
    ConversationRef,
    ConversationRequeued,
    MessageCreated,
    MessagesRead,
    QueueChanged,
)
from kefu.services import desk
from kefu.services.desk import Row
from kefu.services.queue_place import queue_place
from kefu.web.render import partial


def oob(target: str, html: str, how: str = "beforeend") -> str:
    """Wrap HTML for an insertion into ``target`` (htmx inserts the wrapper's children)."""
    return f'<div hx-swap-oob="{how}:{target}">{html}</div>'


def _delete(element_id: str) -> str:
    return f'<div id="{element_id}" hx-swap-oob="delete"></div>'


def _is_mine(conn, conv) -> bool:
    """The agent's own conversation, or the signed-in customer's."""
    who = conn.principal
    if who is None:
        return False
    if who.is_agent:
        return conv.kefu_id == who.kefu_id
    return conv.customer is not None and conv.customer.user_id == who.user_id


class PagesCodec:
    def render(self, event, conn, origin):
        agent = conn.principal is not None and conn.principal.is_agent
        handler = (AGENT if agent else USER).get(type(event))
        if handler is None:
            return
        html = handler(event, conn)
        if html:
            yield html


# -- agent dashboard --------------------------------------------------------------
def _agent_message(event: MessageCreated, conn) -> str:
    conv, msg = event.conversation, event.message
    if not _is_mine(conn, conv):
        return ""
    row = Row(conv, msg, None, msg.created_at)
    return "".join(
        [
            oob(f"#thread-{conv.id}", partial("parts/message.html", m=msg, side=SENDER_AGENT)),
            _delete(f"conv-{conv.id}"),
            oob("#open-list", partial("parts/conv_row.html", row=row), "afterbegin"),
        ]
    )


def _row(conv) -> Row:
    """The dashboard's row for ``conv``, with its latest message: one read, and with the
    waiting user's place (``user_header``) the only ones rendering makes. Pushes are
    rendered wherever events are delivered (the publisher, the broker's listener), so a
    read refused for a drained pool must not cost the push: the row goes without its
    preview (the next message, or a reload, brings it)."""
    try:
        return desk.row_for(conv.id)
    except Busy:
        return Row(conv, None, None, clock.now())


def _agent_assigned(event: ConversationAssigned, conn) -> str:
    conv = event.conversation
    if not _is_mine(conn, conv):
        return ""
    took_from_queue(conn, event)
    row = _row(conv)
    # At the top for now; the page moves it to its place by its last activity (threads.js).
    return _delete(f"conv-{conv.id}") + oob(
        "#open-list", partial("parts/conv_row.html", row=row), "afterbegin"
    )


def _agent_ended(event: ConversationEnded, conn) -> str:
    conv = event.conversation
    if not _is_mine(conn, conv):
        return ""
    forget_taken(conn, conv.id)  # an ended conversation is never requeued
    row = _row(conv)
    # Says who ended it; a reply being written stays in the notice (composer.js).
    footer = partial(
        "parts/agent_footer.html",
        c=conv,
        csrf=conn.state.get("csrf", ""),
        ended_by=event.operator_type,
    )
    return "".join(
        [
            _delete(f"conv-{conv.id}"),
            oob("#ended-list", partial("parts/conv_row.html", row=row), "afterbegin"),
            f'<div id="footer-{conv.id}" hx-swap-oob="innerHTML">{footer}</div>',
        ]
    )


def _agent_rated(event: ConversationRated, conn) -> str:
    conv = event.conversation
    if not _is_mine(conn, conv):
        return ""
    stars = partial("parts/rating.html", rating=event.rating)
    return oob(f"#rating-row-{conv.id}", stars, "innerHTML") + oob(
        f"#rating-note-{conv.id}", f" Rated {stars}.", "innerHTML"
    )


def _agent_requeued(event: ConversationRequeued, conn) -> str:
    if conn.principal.user_id != event.previous_agent.user_id or stale_requeue(conn, event):
        return ""  # stale: the row is of the hand-back of this entry to this agent
    forget_taken(conn, event.conversation.id)
    return _delete(f"conv-{event.conversation.id}")


def _agent_queue(event: QueueChanged, conn) -> str:
    return partial("parts/queue_badge.html", queue_length=len(event.waiting), oob=True)


def _agent_read(event: MessagesRead, conn) -> str:
    if event.reader_type != SENDER_AGENT or not _is_mine(conn, event.conversation):
        return ""
    return partial("parts/unread.html", c=event.conversation, oob=True)


def _agent_changed(event: AgentChanged, conn) -> str:
    if event.kefu_id != conn.principal.kefu_id:
        return ""
    return partial(
        "parts/ready.html", accepting=event.accepting, csrf=conn.state.get("csrf", ""), oob=True
    )


AGENT = {
    MessageCreated: _agent_message,
    ConversationAssigned: _agent_assigned,
    ConversationEnded: _agent_ended,
    ConversationRated: _agent_rated,
    ConversationRequeued: _agent_requeued,
    QueueChanged: _agent_queue,
    MessagesRead: _agent_read,
    AgentChanged: _agent_changed,
}


# -- customer chat page -----------------------------------------------------------
def _user_message(event: MessageCreated, conn) -> str:
    conv = event.conversation
    if not _is_mine(conn, conv):
        return ""
    html = partial("parts/message.html", m=event.message, side=SENDER_USER)
    return oob(f"#thread-{conv.id}", html)


def _user_header(event, conn) -> str:
    """Assigned or re-queued: the header names the agent (or says it is waiting)."""
    conv = event.conversation
    if not _is_mine(conn, conv):
        return ""
    if type(event) is ConversationAssigned:
        took_from_queue(conn, event)
    elif stale_requeue(conn, event):
        return ""  # the header already names the agent it went back to
    return user_header(conn, conv)


def user_header(conn, conv) -> str:
    """The chat page's header for the user's open conversation ``conv``. Its
    ``data-conv`` makes a page that shows another conversation load this one."""
    position = None
    if conv.kefu_id is None:
        with contextlib.suppress(Busy):  # "Waiting" without its place, not no push
            position = queue_place(conv.id)
        conn.state.pop("served", None)
    else:
        conn.state["served"] = conv.id
    return partial("parts/chat_header.html", c=conv, position=position, oob=True)


def _user_ended(event: ConversationEnded, conn) -> str:
    conv = event.conversation
    if not _is_mine(conn, conv):
        return ""
    footer = partial("parts/chat_footer.html", c=conv, rating=None, csrf=conn.state.get("csrf"))
    return partial("parts/chat_header.html", c=conv, position=None, oob=True) + (
        f'<div id="footer-{conv.id}" hx-swap-oob="innerHTML">{footer}</div>'
    )


def _user_queue(event: QueueChanged, conn) -> str:
    who = conn.principal
    conversation_id = event.waiting_conversation_of(who.user_id) if who else None
    if conversation_id is None or conn.state.get("served") == conversation_id:
        return ""  # not waiting, or a snapshot older than the "assigned" header sent
    waiting = ConversationRef(conversation_id, OPEN, who.person, None, None, None)
    position = event.position_of(conversation_id)
    return partial("parts/chat_header.html", c=waiting, position=position, oob=True)


USER = {
    MessageCreated: _user_message,
    ConversationAssigned: _user_header,
    ConversationRequeued: _user_header,
    ConversationEnded: _user_ended,
    QueueChanged: _user_queue,
}
