"""Anonymous visitors: conversations keyed by (visitor_id, kefu_id), text only.

A visitor names its agent (the widget's ``data-kefu-id``), so its conversation goes to
that agent directly instead of through the queue, and counts against the agent's load.
"""

from kefu import db, groupcommit
from kefu.errors import Invalid, NotFound, refuse_nul
from kefu.models import (
    SENDER_USER,
    TEXT,
    Conversation,
    Visitor,
    visitor_open_key,
    visitor_sender_key,
)
from kefu.realtime.events import ConversationAssigned
from kefu.services import accounts, conversations, message_rules, messages, routing
from kefu.services import history as past  # ``history`` is this module's own function
from kefu.services.snapshots import conversation_ref, load

VISITOR_ID_MAX = 128


def check_visitor_id(visitor_id, field: str = "visitor_id") -> str:
    """``field`` names it in the error (a bind's ``bind_key`` is a visitor id too)."""
    if not isinstance(visitor_id, str) or not visitor_id.strip():
        raise Invalid(f"{field} is required")
    if len(visitor_id) > VISITOR_ID_MAX:
        raise Invalid(f"{field} is too long (max {VISITOR_ID_MAX} characters)")
    refuse_nul(field, visitor_id)
    return visitor_id


def check_message(visitor_id, content, op_id) -> tuple[str, str | None]:
    """(content, op_id) as ``send`` stores them, or what is wrong with the message: a
    caller checks it before spending the visitor's rate budget on it."""
    check_visitor_id(visitor_id)
    content, _, _, op_id = message_rules.check_send(content, TEXT, None, op_id)
    return content, op_id


def _visitor(visitor_id: str) -> Visitor:
    return Visitor.get_or_create(key=visitor_id)[0]


def send(visitor_id: str, kefu_id: int, content: str, op_id: str | None = None):
    """Store a visitor's text message, opening the conversation with that agent if needed.
    Returns (MessageView, events, duplicate)."""
    content, op_id = check_message(visitor_id, content, op_id)
    try:
        return groupcommit.run(_send_locked, visitor_id, kefu_id, content, op_id)
    except _StoredMeanwhile:  # all of that run undone: this one finds and answers it
        return groupcommit.run(_send_locked, visitor_id, kefu_id, content, op_id)


class _StoredMeanwhile(Exception):
    """The op_id was stored by another connection as this send ran (PostgreSQL, MySQL:
    a resend racing its first send; on SQLite ``_first_sent`` would have seen it)."""


def _send_locked(visitor_id: str, kefu_id: int, content: str, op_id: str | None):
    agent = accounts.serving_agent(kefu_id)
    visitor = _visitor(visitor_id)
    sender_key = visitor_sender_key(visitor.id)
    first = _first_sent(sender_key, agent.id, content, op_id)
    if first is not None:
        return first, [], True
    return messages.again_if_ended(_append, visitor, agent, sender_key, content, op_id)


def _append(visitor: Visitor, agent, sender_key: str, content: str, op_id: str | None):
    """The message in the visitor's open conversation with ``agent``, opened if need be."""
    events = []
    conv, created = Conversation.get_or_create(
        open_key=visitor_open_key(visitor.id, agent.id),
        defaults={"visitor": visitor, "agent": agent},
    )
    if created:
        routing.took_one_locked(agent.id)
        events.append(ConversationAssigned(conversation_ref(load(conv.id))))
    try:
        view, sent = messages.append_locked(
            conv, SENDER_USER, visitor.id, sender_key, content, TEXT, None, op_id
        )
    except messages.DuplicateOp:
        # Raised, not answered here: this run may have opened a conversation (the first
        # send's ended meanwhile), which must not be kept without its message.
        raise _StoredMeanwhile from None
    return view, events + sent, False


def _first_sent(sender_key: str, kefu_id: int, content: str, op_id: str | None):
    """The stored message (a view) a send with this ``op_id`` repeats, or None.

    A visitor names its agent, not a conversation: a resend is the same text to the same
    agent, answered even if that conversation has ended since (as a user's is). The
    op_id on anything else is refused: the same text to another agent was answered with
    the first message, and nothing was stored or pushed."""
    first = messages.repeated(sender_key, op_id, content, TEXT, None)
    if first is None:
        return None
    to = Conversation.select(Conversation.agent).where(Conversation.id == first.conversation_id)
    if to.scalar() != kefu_id:
        raise message_rules.OpIdReused
    return first


def first_reply_of_resend(visitor_id: str, kefu_id: int, content: str, op_id: str | None):
    """For a send refused by the visitor's rate: the stored message it repeats (its first
    reply is the answer: a resend is not refused for the rate), or None."""
    with db.read():
        visitor = Visitor.get_or_none(Visitor.key == visitor_id)
        if visitor is None:
            return None
        try:
            return _first_sent(visitor_sender_key(visitor.id), kefu_id, content, op_id)
        except message_rules.OpIdReused:
            return None


def end(visitor_id: str, kefu_id: int) -> list:
    """End the visitor's open conversation with that agent (quietly if already ended)."""
    check_visitor_id(visitor_id)
    return groupcommit.run(_end_locked, visitor_id, kefu_id)


def _end_locked(visitor_id: str, kefu_id: int) -> list:
    accounts.agent_profile(kefu_id)  # any agent: one disabled since may still be ended
    visitor = Visitor.get_or_none(Visitor.key == visitor_id)
    if visitor is None:
        raise NotFound("Visitor conversation not found")
    conv = Conversation.get_or_none(Conversation.open_key == visitor_open_key(visitor.id, kefu_id))
    if conv is None:
        ever = Conversation.select().where(
            Conversation.visitor == visitor, Conversation.agent == kefu_id
        )
        if not ever.exists():
            raise NotFound("Visitor conversation not found")
        return []
    return conversations.end_locked(conv, SENDER_USER, visitor.id)


def history(visitor_id: str, kefu_id: int, limit: int = 50) -> list:
    """The visitor's messages with that agent across conversations, oldest → newest
    (the latest ``limit``, at most ``history.LIMIT_MAX``)."""
    check_visitor_id(visitor_id)
    return past.visitor_messages(kefu_id, visitor_id, limit=limit) or []
