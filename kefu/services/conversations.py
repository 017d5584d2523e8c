"""Conversations: open-or-get, who may see or act on one, ending, read marks, rating."""

import time
from datetime import datetime

from kefu import clock, db, groupcommit
from kefu.errors import Conflict, Forbidden, Invalid, NotFound, is_row_id
from kefu.models import (
    ENDED,
    OPEN,
    SENDER_AGENT,
    SENDER_USER,
    Conversation,
    Message,
    user_open_key,
)
from kefu.principal import Principal
from kefu.realtime.events import ConversationEnded, ConversationRated, MessagesRead
from kefu.services import routing
from kefu.services.queue_place import queue_place
from kefu.services.snapshots import conversation_ref, load
from kefu.services.targets import lock_row
from kefu.sqlcache import PROBE_TIMES, cached_first, cached_write

NO_ACCESS = "Conversation not found or no permission"


def is_party(conv: Conversation, who: Principal) -> bool:
    """The customer who owns it, or the agent it is assigned to."""
    if who.is_agent:
        return conv.agent_id == who.kefu_id
    return conv.user_id == who.user_id


def visible(conversation_id: int, who: Principal, loader=load):
    """The conversation with its people (as ``loader`` reads it: ``load`` or
    ``load_target``), if ``who`` may see it; NotFound otherwise (a stranger learns
    nothing, not even that the id exists). An id no row can have (a page's form may
    send one past 64 bits) names nothing either."""
    if not is_row_id(conversation_id):
        raise NotFound(NO_ACCESS)
    try:
        conv = loader(conversation_id)
    except NotFound:
        raise NotFound(NO_ACCESS) from None
    if not is_party(conv, who):
        raise NotFound(NO_ACCESS)
    return conv


def load_locked(conversation_id: int) -> Conversation:
    """``load``, its row locked first: what a job decides on it (who may act, whether
    it is open, what it counts) stays true until the job's transaction ends. On
    PostgreSQL and MySQL a plain read does not: an agent reassigned meanwhile ended the
    conversation of the agent that took it, and a read mark set the unread counter from
    a count that missed the message written as it ran."""
    lock_row(conversation_id)
    return load(conversation_id)


def open_for_user(who: Principal):
    """The user's open conversation, or a new one assigned (or queued) right away.
    Returns (Conversation, events)."""
    return groupcommit.run(open_for_user_locked, customer(who).user_id)


def open_for_user_locked(user_id: int):
    conv = _open_conversation(user_id)
    if conv is not None:
        return load(conv.id), []
    # get_or_create: a concurrent first request (row-lock databases) loses the race on
    # the unique open_key and reads the winner's conversation.
    conv, created = Conversation.get_or_create(
        open_key=user_open_key(user_id), defaults={"user": user_id, "queued_at": time.time()}
    )
    if not created:
        return load(conv.id), []
    events = routing.assign_waiting_locked(queued_here=True)
    events.append(routing.queue_moved())
    return load(conv.id), events


def connect(who: Principal):
    """``open_for_user``, and the conversation's place in the queue while it waits, read
    in the same transaction: (Conversation, place or None, events). Read apart, the
    conversation could be served or ended between the two, and the place be missing."""
    return groupcommit.run(_connect_locked, customer(who).user_id)


def customer(who: Principal) -> Principal:
    """``who``, who may open a conversation as a customer: agents may not."""
    if who.is_agent:
        raise Forbidden("Agents cannot open customer conversations")
    return who


def _connect_locked(user_id: int):
    conv, events = open_for_user_locked(user_id)
    place = None if conv.agent_id is not None else queue_place(conv.id)
    return conv, place, events


def current_for_user(user_id: int) -> Conversation | None:
    with db.read():
        conv = _open_conversation(user_id)
        return load(conv.id) if conv else None


def _open_conversation(user_id: int) -> Conversation | None:
    return cached_first("open_conversation", _by_open_key, user_open_key(user_id))


def _by_open_key(open_key: str):
    return Conversation.select().where(Conversation.open_key == open_key).limit(1)


def end(conversation_id: int, who: Principal) -> list:
    """End a conversation its customer or agent is in. Ending twice succeeds quietly."""
    return groupcommit.run(_end_locked, conversation_id, who)


def _end_locked(conversation_id: int, who: Principal) -> list:
    conv = visible(conversation_id, who, load_locked)
    operator_type, operator_id, _ = who.sender
    return end_locked(conv, operator_type, operator_id)


def _end_query(ended_at: datetime, updated_at: datetime, conversation_id: int):
    return Conversation.update(
        status=ENDED, open_key=None, queued_at=None, ended_at=ended_at, updated_at=updated_at
    ).where(Conversation.id == conversation_id, Conversation.status == OPEN)


def end_locked(conv: Conversation, operator_type: int, operator_id: int) -> list:
    """Close it, release the agent's slot, and refill that slot from the queue."""
    now = clock.now()
    probes = (*PROBE_TIMES, -772001)  # stand-ins, to find the arguments in the SQL once
    changed = cached_write("end", _end_query, (now, now, conv.id), probes).rowcount
    if not changed:
        return []  # already ended: nothing to announce, no counter to touch
    # Read the agent again now that the UPDATE holds the row: ``conv`` may have been read
    # while it was queued, and another transaction may have assigned it since (the
    # counter would drift by one; seen with two assigners on PostgreSQL).
    ended = load(conv.id)
    events = [ConversationEnded(conversation_ref(ended), operator_type, operator_id)]
    if ended.agent_id is None:
        events.append(routing.queue_moved())  # it left the queue
        return events
    routing.freed_one_locked(ended.agent_id)
    assigned = routing.assign_waiting_locked()
    if assigned:
        events += [*assigned, routing.queue_moved()]
    return events


def mark_read(conversation_id: int, who: Principal, message_ids: list[int], sender_type: int):
    """Mark the other side's messages read; returns (updated_count, events).

    ``sender_type`` names whose messages are marked: a customer marks the agent's (2),
    an agent marks the customer's (1). The unread counter becomes the number of that
    side's messages still unread, so it is right even if ids were skipped.
    """
    expected = SENDER_USER if who.is_agent else SENDER_AGENT
    message_ids = [i for i in message_ids if is_row_id(i)]  # others name no message
    if sender_type != expected:
        side = "an agent" if who.is_agent else "a user"
        raise Invalid(f"sender_type must be {expected} when {side} marks messages as read")
    return groupcommit.run(_mark_read_locked, conversation_id, who, message_ids, sender_type)


def _mark_read_locked(conversation_id, who: Principal, message_ids: list[int], sender_type: int):
    # Locked first: a send locks the row before it stores its message, so the count is
    # current, and a mark from another tab has finished (nothing is marked twice).
    conv = visible(conversation_id, who, load_locked)
    now = clock.now()
    unread = Message.in_conversation(conv.id).where(
        Message.sender_type == sender_type, Message.is_read == 0
    )
    marked = [m.id for m in unread.where(Message.id.in_(message_ids))] if message_ids else []
    if marked:
        Message.update(is_read=1, read_at=now, updated_at=now).where(
            Message.id.in_(marked)
        ).execute()
    counter = "kefu_unread_count" if sender_type == SENDER_USER else "unread_count"
    Conversation.update({counter: unread.count()}).where(Conversation.id == conv.id).execute()
    if not marked:
        return 0, []
    reader = SENDER_AGENT if sender_type == SENDER_USER else SENDER_USER
    return len(marked), [MessagesRead(conversation_ref(load(conv.id)), reader, tuple(marked))]


def check_score(score) -> int:
    if isinstance(score, bool) or not isinstance(score, int) or not 1 <= score <= 5:
        raise Invalid("rate must be an integer from 1 to 5")
    return score


def rate(conversation_id: int, who: Principal, score: int) -> list:
    """A customer's 1–5 satisfaction score for an ended conversation; rating it again
    replaces the score (a customer may think better of it). Returns the event."""
    check_score(score)
    with db.write():
        conv = visible(conversation_id, who)
        if who.is_agent:
            raise Forbidden("Only the customer can rate a conversation")
        if conv.status != ENDED:
            raise Conflict("Only an ended conversation can be rated")
        if conv.agent_id is None:  # it ended while it waited: nobody served it
            raise Conflict("Only a conversation an agent served can be rated")
        Conversation.update(rating=score).where(Conversation.id == conv.id).execute()
        return [ConversationRated(conversation_ref(load(conv.id)), score)]
