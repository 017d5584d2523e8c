"""Read models for the pages: an agent's desk, a customer's thread, a visitor's thread.

Only queries live here (the rules stay in conversations/messages/routing); each returns
plain snapshots so templates never touch the database lazily.
"""

from dataclasses import dataclass

from peewee import fn

from kefu import db
from kefu.errors import Invalid, seq_bound
from kefu.models import ENDED, OPEN, Agent, Conversation, Message, Visitor, visitor_open_key
from kefu.principal import Principal
from kefu.realtime.events import ConversationRef, MessageView
from kefu.services.conversations import visible
from kefu.services.snapshots import conversation_ref, load, message_view, with_people

PREVIEW_CHARS = 80


@dataclass(frozen=True)
class Row:
    """One line of the agent's conversation list."""

    conversation: ConversationRef
    preview: MessageView | None
    rating: int | None
    last_at: object
    taken_entry: float | None = None  # the queue entry it was taken from (queue_entries.py)


def _last_messages(conversation_ids: list[int]) -> dict[int, MessageView]:
    if not conversation_ids:
        return {}
    newest = (
        Message.select(Message.conversation, fn.MAX(Message.seq).alias("top"))
        .where(Message.conversation.in_(conversation_ids))
        .group_by(Message.conversation)
    )
    pairs = [(m.conversation_id, m.top) for m in newest]
    found = {}
    for conversation_id, seq in pairs:
        msg = Message.get_or_none(Message.conversation == conversation_id, Message.seq == seq)
        if msg is not None:
            found[conversation_id] = message_view(msg)
    return found


def _rows(query) -> list[Row]:
    convs = list(with_people(query))
    last = _last_messages([c.id for c in convs])
    return [
        Row(
            conversation_ref(c),
            last.get(c.id),
            c.rating,
            c.last_message_at or c.created_at,
            c.taken_entry,
        )
        for c in convs
    ]


def agent_desk(kefu_id: int, ended_limit: int = 30) -> tuple[list[Row], list[Row]]:
    """(open rows newest activity first, recently ended rows with their ratings)."""
    with db.read():
        recent = fn.COALESCE(Conversation.last_message_at, Conversation.created_at).desc()
        open_rows = _rows(Conversation.open_for_agent(kefu_id).order_by(recent))
        ended = (
            Conversation.select()
            .where(Conversation.agent == kefu_id, Conversation.status == ENDED)
            .order_by(Conversation.ended_at.desc())
            .limit(ended_limit)
        )
        return open_rows, _rows(ended)


def row_for(conversation_id: int) -> Row:
    with db.read():
        return _rows(Conversation.select().where(Conversation.id == conversation_id))[0]


def before(who: Principal, conversation_id: int, before_seq: int | None, limit: int = 30):
    """Up to ``limit`` messages older than ``before_seq`` (newest when None), oldest first.
    Paging by sequence, not page number, so new messages never shift the pages."""
    if not 1 <= limit <= 100:
        raise Invalid("limit must be from 1 to 100")
    with db.read():
        visible(conversation_id, who)
        query = Message.in_conversation(conversation_id)
        if before_seq is not None:
            query = query.where(Message.seq < seq_bound(before_seq))
        rows = list(query.order_by(Message.seq.desc()).limit(limit))
        return [message_view(m) for m in reversed(rows)]


def thread(who: Principal, conversation_id: int) -> tuple[ConversationRef, int | None]:
    """The conversation ``who`` may see, as a snapshot, and its rating."""
    with db.read():
        conv = visible(conversation_id, who)
        return conversation_ref(conv), conv.rating


def latest_for_user(user_id: int) -> Conversation | None:
    """The user's open conversation, else the most recent ended one."""
    with db.read():
        conv = (
            Conversation.select()
            .where(Conversation.user == user_id)
            .order_by((Conversation.status == OPEN).desc(), Conversation.id.desc())
            .first()
        )
        return load(conv.id) if conv else None


def earlier_conversation(who: Principal, conversation_id: int) -> int | None:
    """The customer's conversation before ``conversation_id`` (the newest of the older
    ones), where the chat page's history goes on once that one's first message is shown."""
    with db.read():
        earlier = (
            Conversation.select(Conversation.id)
            .where(Conversation.user == who.user_id, Conversation.id < conversation_id)
            .order_by(Conversation.id.desc())
            .first()
        )
        return earlier.id if earlier else None


def visitor_state(visitor_id: str, kefu_id: int) -> int | None:
    """The id of the visitor's open conversation with that agent, if any."""
    with db.read():
        visitor = Visitor.get_or_none(Visitor.key == visitor_id)
        if visitor is None:
            return None
        open_key = visitor_open_key(visitor.id, kefu_id)
        conv = Conversation.get_or_none(Conversation.open_key == open_key)
        return conv.id if conv else None


def unread_ids(conversation_id: int, sender_type: int) -> list[int]:
    """Ids of one side's unread messages (the page marks them all read on view)."""
    with db.read():
        query = Message.in_conversation(conversation_id).where(
            Message.sender_type == sender_type, Message.is_read == 0
        )
        return [m.id for m in query.select(Message.id)]


def agent_settings(kefu_id: int) -> Agent:
    with db.read():
        return Agent.get_by_id(kefu_id)
