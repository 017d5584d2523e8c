"""Looking back: a user's messages across conversations, a visitor's with one agent, an
agent's sessions, who has served whom (the waiter protocol's history frames and its
ownership checks), and what an agent taking a conversation has not seen yet.

Reads only; each function opens its own read block (or joins the caller's, for
``unread_by_agent_locked``) and returns frozen snapshots, so an adapter can render them
without touching the database.
"""

from dataclasses import dataclass
from datetime import datetime

from kefu import db
from kefu.errors import Invalid, is_row_id, refuse_nul, row_id, seq_bound
from kefu.models import (
    ENDED,
    SENDER_AGENT,
    SENDER_USER,
    Agent,
    Conversation,
    Message,
    User,
    Visitor,
    agent_sender_key,
    user_open_key,
)
from kefu.realtime.events import ConversationRef, MessageView, Person
from kefu.services.snapshots import conversation_ref, load, message_view, person, with_people

LIMIT_DEFAULT = 100
LIMIT_MAX = 100
PENDING_MAX = 100  # unread messages an agent taking a conversation is shown


@dataclass(frozen=True)
class Entry:
    """One message of a history, with the people it went between."""

    message: MessageView
    sender: Person | None
    # A user's message: the agent the conversation is with now (None while it waits),
    # who holds its messages whenever they were written (no recipient is stored).
    recipient: Person | None


@dataclass(frozen=True)
class Session:
    """One conversation an agent holds or held, as its session history shows it."""

    conversation: ConversationRef
    rating: int | None
    created_at: datetime
    ended_at: datetime | None
    last_message_at: datetime | None


def check_page(before, limit) -> tuple[int | None, int]:
    """``before`` (an id to page backwards from) and ``limit`` (1..100, default 100)."""
    for name, value in (("before", before), ("limit", limit)):
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, int) or value < 1
        ):
            raise Invalid(f"{name} must be a positive integer")
    limit = LIMIT_DEFAULT if limit is None else limit
    if limit > LIMIT_MAX:
        raise Invalid(f"limit must be at most {LIMIT_MAX}")
    return (None if before is None else seq_bound(before)), limit  # ids fit a BIGINT


def user_messages(
    user_id: int, before: int | None = None, limit: int | None = None, after_id: int | None = None
):
    """The user's messages in all its conversations, oldest → newest: the latest ``limit``
    with an id below ``before`` (so a client pages backwards with its oldest id), or with
    ``after_id`` the first ``limit`` after that message (resync after a reconnect)."""
    before, limit = check_page(before, limit)
    with db.read():
        rows = _message_page(Conversation.user == user_id, before, limit, after_id)
        customer = person(User.get_or_none(User.id == user_id))
        kefu_ids = {m.sender_id for m in rows if m.sender_type == SENDER_AGENT}
        kefu_ids |= {m.conversation.agent_id for m in rows if m.conversation.agent_id}
        agents = _agent_people(kefu_ids)
        entries = []
        for m in rows:
            if m.sender_type == SENDER_AGENT:
                entries.append(Entry(message_view(m), agents.get(m.sender_id), customer))
            else:
                entries.append(
                    Entry(message_view(m), customer, agents.get(m.conversation.agent_id))
                )
        return entries


def visitor_messages(
    kefu_id: int,
    visitor_id: str,
    before: int | None = None,
    limit: int | None = None,
    after_id: int | None = None,
) -> list[MessageView] | None:
    """A visitor's messages with this agent, in every conversation they had, paged as
    ``user_messages``; None if they never had one. Visitor conversations are keyed by
    visitor and agent, so the visitor's chats with other agents are not included."""
    before, limit = check_page(before, limit)
    with db.read():
        visitor = Visitor.get_or_none(Visitor.key == visitor_id)
        if visitor is None:
            return None
        owner = (Conversation.visitor == visitor.id) & (Conversation.agent == kefu_id)
        rows = _message_page(owner, before, limit, after_id)
        if not rows and not Conversation.select().where(owner).exists():
            return None
        return [message_view(m) for m in rows]


def _message_page(owner, before: int | None, limit: int, after_id: int | None) -> list:
    """Messages (joined to their conversation) of the conversations ``owner`` selects,
    oldest → newest: the latest ``limit`` below ``before``, or the first after
    ``after_id``. Inside the caller's read block."""
    query = Message.select(Message, Conversation).join(Conversation).where(owner)
    if after_id is not None:
        return list(_after(query, owner, after_id).limit(limit))
    if before is not None:
        query = query.where(Message.id < before)
    rows = list(query.order_by(Message.id.desc()).limit(limit))
    rows.reverse()
    return rows


def _after(query, owner, after_id: int):
    """Messages after ``after_id`` by (conversation, sequence), never by raw id: ids are
    handed out before commit on PostgreSQL and MySQL, the per-conversation sequence is
    assigned under the conversation's row lock. A customer has one open conversation
    (with an agent, for a visitor) at a time, so a later conversation's messages all
    come after."""
    if not is_row_id(after_id):  # past 64 bits no driver can bind it, and no row has it
        raise Invalid("after_id is not one of this user's messages")
    seen = (
        Message.select(Message.conversation, Message.seq)
        .join(Conversation)
        .where(Message.id == after_id, owner)
        .first()
    )
    if seen is None:
        raise Invalid("after_id is not one of this user's messages")
    later = (Message.conversation == seen.conversation_id) & (Message.seq > seen.seq)
    return query.where(later | (Message.conversation > seen.conversation_id)).order_by(
        Message.conversation, Message.seq
    )


def _agent_people(kefu_ids) -> dict[int, Person]:
    if not kefu_ids:
        return {}
    rows = Agent.select(Agent, User).join(User).where(Agent.id.in_(list(kefu_ids)))
    return {a.id: person(a.user) for a in rows}


def agent_sessions(kefu_id: int, before: int | None = None, limit: int | None = None):
    """The agent's conversations (with users and visitors), newest first, with their
    rating."""
    before, limit = check_page(before, limit)
    with db.read():
        query = with_people().where(Conversation.agent == kefu_id)
        if before is not None:
            query = query.where(Conversation.id < before)
        rows = query.order_by(Conversation.id.desc()).limit(limit)
        return [
            Session(conversation_ref(c), c.rating, c.created_at, c.ended_at, c.last_message_at)
            for c in rows
        ]


def has_served(kefu_id: int, user_id: int) -> bool:
    """The agent holds or held one of the user's conversations, or wrote in one (a
    conversation re-queued to another agent still counts for the one who answered)."""
    with db.read():
        held = Conversation.select().where(
            Conversation.agent == kefu_id, Conversation.user == user_id
        )
        if held.exists():
            return True
        wrote = (
            Message.select()
            .join(Conversation)
            .where(Conversation.user == user_id, Message.sender_key == agent_sender_key(kefu_id))
        )
        return wrote.exists()


def find_user(ref) -> int | None:
    """A user's id from its numeric id (int or digits) or its public uuid."""
    if isinstance(ref, str):
        refuse_nul("user_id", ref)  # PostgreSQL refuses the statement; refused alike
    number = row_id(ref)
    if number is not None:
        condition = User.id == number
    elif isinstance(ref, str) and 0 < len(ref) <= 36:
        condition = User.uuid == ref
    else:
        return None
    with db.read():
        user = User.get_or_none(condition)
    return user.id if user else None


def open_with(kefu_id: int, user_uuid: str) -> ConversationRef | None:
    """The user's open conversation, if this agent is the one serving it."""
    with db.read():
        user = User.get_or_none(User.uuid == user_uuid)
        if user is None:
            return None
        conv = Conversation.get_or_none(
            Conversation.open_key == user_open_key(user.id), Conversation.agent == kefu_id
        )
        return conversation_ref(load(conv.id)) if conv else None


def open_with_visitor(kefu_id: int, visitor_id: str) -> ConversationRef | None:
    """The visitor's open conversation with this agent, if there is one."""
    with db.read():
        visitor = Visitor.get_or_none(Visitor.key == visitor_id)
        if visitor is None:
            return None
        mine = Conversation.open_for_agent(kefu_id).where(Conversation.visitor == visitor.id)
        conv = mine.first()
        return conversation_ref(load(conv.id)) if conv else None


def open_for_agent(kefu_id: int) -> list[ConversationRef]:
    """The agent's open conversations (with users and visitors), oldest first."""
    return [ref for ref, _ in open_for_agent_taken(kefu_id)]


def open_for_agent_taken(kefu_id: int) -> list[tuple[ConversationRef, float | None]]:
    """``open_for_agent``, each with the queue entry it was taken from (``taken_entry``,
    read with it: what a signing-in socket shows and remembers are of one moment)."""
    with db.read():
        rows = with_people(Conversation.open_for_agent(kefu_id))
        return [(conversation_ref(c), c.taken_entry) for c in rows.order_by(Conversation.id)]


def unread_by_agent_locked(conv: ConversationRef) -> tuple[MessageView, ...]:
    """The customer's messages the agent side has not read, the latest ``PENDING_MAX``,
    oldest first: what the agent taking ``conv`` is shown (``ConversationAssigned``).
    Run in the assigning transaction, with the conversation's row written (locked), so
    a message is either here or written after the assignment and pushed live to the
    agent. The counter spares the query for the usual fresh conversation."""
    if not conv.kefu_unread_count:
        return ()
    rows = (
        Message.in_conversation(conv.id)
        .where(Message.sender_type == SENDER_USER, Message.is_read == 0)
        .order_by(Message.seq.desc())
        .limit(PENDING_MAX)
    )
    return tuple(message_view(m) for m in reversed(list(rows)))


def customer_messages_since(conversation_id: int, since) -> tuple[MessageView, ...]:
    """The customer's messages of a conversation written at ``since`` or later, the
    latest ``PENDING_MAX``, oldest first: what an agent away since then missed."""
    with db.read():
        rows = (
            Message.in_conversation(conversation_id)
            .where(Message.sender_type == SENDER_USER, Message.created_at >= since)
            .order_by(Message.seq.desc())
            .limit(PENDING_MAX)
        )
        return tuple(message_view(m) for m in reversed(list(rows)))


def latest_ended(user_id: int) -> int | None:
    """The id of the user's most recently ended conversation an agent served (what
    ``rate`` rates)."""
    with db.read():
        conv = (
            Conversation.select(Conversation.id)
            .where(Conversation.user == user_id, Conversation.status == ENDED)
            .where(Conversation.agent.is_null(False))  # one nobody served has no one to rate
            .order_by(Conversation.ended_at.desc(), Conversation.id.desc())
            .first()
        )
        return conv.id if conv else None
