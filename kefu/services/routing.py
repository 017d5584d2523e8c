"""Who serves whom: availability, least-busy choice, one FIFO queue, refilling capacity.

An agent takes a new conversation while online (the hub says so), accepting (persisted
ready switch) and below ``max_concurrent``; among those, the one with the fewest open
conversations wins, ties going to the one assigned longest ago. The queue's truth is
the database (open conversations without an agent, ordered by ``queued_at``), so a
restart or a second worker sees the same order; the hub keeps no copy to go stale.

Functions named ``*_locked`` must run inside ``db.write()``; the others open their own.
"""

import math
import time
from datetime import datetime

from kefu import clock, db, groupcommit
from kefu.errors import Invalid, NotFound
from kefu.models import Agent, Conversation
from kefu.realtime.events import (
    AgentChanged,
    AssignmentDeferred,
    ConversationAssigned,
    ConversationRequeued,
    QueueChanged,
    QueueMoved,
)
from kefu.services import history, presence
from kefu.services.snapshots import conversation_ref, load, person
from kefu.sqlcache import PROBE_TIMES, cached_first, cached_write

# Key of the PostgreSQL advisory lock that makes one assigner at a time (any worker).
ASSIGN_LOCK = 0x6B656675  # "kefu"


def assign_waiting_locked(queued_here: bool = False) -> list:
    """Hand waiting conversations, oldest first, to available agents until one runs out.
    ``queued_here``: this transaction put conversations into the queue (an arrival, a
    requeue)."""
    if db.is_postgres():
        return _assign_serialised()
    online = presence.online_agent_ids()
    events = []
    while online:
        conv = cached_first("queue_head", _queue_head)
        if not db.is_sqlite() and _head_is_busy(conv):
            events.append(AssignmentDeferred())
            return events
        if conv is None:
            return events
        agent = cached_first(f"free_agent:{len(online)}", _free_agent, *online)
        if agent is None:
            break
        events.append(assign_locked(conv.id, agent.id, conv.queued_at))
    if queued_here and not db.is_sqlite():
        # Customers wait, and no agent had room as this transaction read them. On MySQL
        # room may have come since: an agent online (presence is no row), or a slot
        # freed or a ready switch on an agent whose row this read and let go (READ
        # COMMITTED keeps no lock on a row that did not match). The assigner that room
        # ran cannot see what this transaction queued (uncommitted rows are invisible,
        # SKIP LOCKED passes them over), so assign again once this commits; else they
        # waited while that agent had room, until something else assigned.
        events.append(AssignmentDeferred())
    return events


def _queue_head():
    return db.locked(Conversation.waiting().limit(1), skip_locked=True)


def _queue_head_seen():
    return Conversation.waiting().limit(1)


def _head_is_busy(taken) -> bool:
    """Whether SKIP LOCKED passed over the true head (MySQL; SQLite has no row locks)."""
    head = cached_first("queue_head_seen", _queue_head_seen)
    return head is not None and (taken is None or taken.id != head.id)


def _free_agent(*kefu_ids: int):
    return db.locked(Agent.with_capacity(kefu_ids).limit(1))


def _assign_serialised() -> list:
    """PostgreSQL, where N workers assign at once. With row locks alone two assigners
    broke FIFO: one skipped the head the other had locked and served the second in line,
    and the other then found its agent full. So assigners take turns (a transaction-level
    advisory lock) and always take the true head, waiting for it if a message is being
    written into it. Agents are picked with SKIP LOCKED: a transaction that freed a slot
    or re-queued holds its agent's row and assigns right after us, so waiting for it
    could deadlock. A visitor's opening holds the row too (``took_one_locked``) and
    assigns nothing: an agent with room passed over for it is tried again shortly
    (``AssignmentDeferred``), or the user waited while that agent had room."""
    db.database.execute_sql("SELECT pg_advisory_xact_lock(%s)", (ASSIGN_LOCK,))
    online = presence.online_agent_ids()  # read under the lock: the latest presence
    events = []
    retries = 3  # FOR UPDATE + LIMIT 1 returns nothing if the head changed while we waited
    while online:
        conv = db.locked(Conversation.waiting().limit(1)).first()
        if conv is None:
            retries -= 1
            if retries and Conversation.waiting().exists():
                continue
            break
        with_room = Agent.with_capacity(online)
        agent = db.locked(with_room.limit(1), skip_locked=True).first()
        if agent is None:
            if with_room.exists():  # as last committed: an agent has room, its row locked
                events.append(AssignmentDeferred())
            break
        events.append(assign_locked(conv.id, agent.id, conv.queued_at))
    return events


def assign_locked(conversation_id: int, kefu_id: int, queued_at: float | None):
    """Give one open conversation to an agent and count it against the agent's load.
    The event carries what the customer wrote that the agent side has not read, and the
    queue entry taken (``queued_at``, which this clears): a codec tells by it that a
    requeue another worker's news brought late is older than this hand-back. The row
    keeps that entry (``taken_entry``) for the sockets that sign in later."""
    args = (kefu_id, queued_at, clock.now(), conversation_id)
    cached_write("assign", _assign_query, args, (-771001, -771.5, PROBE_TIMES[0], -771002))
    took_one_locked(kefu_id)
    ref = conversation_ref(load(conversation_id))
    return ConversationAssigned(ref, history.unread_by_agent_locked(ref), queued_at)


def took_one_locked(kefu_id: int) -> None:
    """One more open conversation on the agent's load (and the tie-break's clock)."""
    cached_write("took_one", _took_one_query, (time.time(), kefu_id), (-771.25, -771003))


def freed_one_locked(kefu_id: int) -> None:
    """One open conversation fewer on the agent's load."""
    cached_write("freed_one", _freed_one_query, (kefu_id,), (-771004,))


# The assigning path's writes, their SQL generated once (kefu/sqlcache.py); the probes
# passed with them are stand-ins of the arguments, to find them among the parameters.
def _assign_query(kefu_id: int, entry: float | None, now: datetime, conversation_id: int):
    return Conversation.update(
        agent=kefu_id, queued_at=None, taken_entry=entry, updated_at=now
    ).where(Conversation.id == conversation_id)


def _took_one_query(assigned_at: float, kefu_id: int):
    return Agent.update(
        current_concurrent=Agent.current_concurrent + 1, last_assigned_at=assigned_at
    ).where(Agent.id == kefu_id)


def _freed_one_query(kefu_id: int):
    return Agent.update(current_concurrent=Agent.current_concurrent - 1).where(Agent.id == kefu_id)


def queue_moved() -> QueueMoved:
    """What a service returns when the queue changed (see ``QueueMoved``)."""
    return QueueMoved()


def queue_snapshot_locked() -> QueueChanged:
    """The queue as (conversation id, user id) pairs: one narrow query, no joins."""
    waiting = Conversation.waiting().select(Conversation.id, Conversation.user).tuples()
    return QueueChanged(tuple((cid, uid) for cid, uid in waiting))


def queue_snapshot() -> QueueChanged:
    with db.read():
        return queue_snapshot_locked()


def dispatch() -> list:
    """Fill free capacity from the queue: an agent came online or ready, a limit rose."""
    return groupcommit.run(_dispatch_locked)


def _dispatch_locked() -> list:
    events = assign_waiting_locked()
    if events:
        events.append(queue_moved())
    return events


def queue_length() -> int:
    with db.read():
        return Conversation.waiting().count()


def set_accepting(kefu_id: int, accepting: bool) -> list:
    """The ready/unready switch. Unready keeps current conversations, takes no new ones.
    Ready fills the agent's free capacity in the same transaction: the switch is never
    stored without its events, as it was when the fill, a transaction of its own after
    it, failed (``Busy``: no connection free)."""
    return groupcommit.run(_set_accepting_locked, kefu_id, accepting)


def _set_accepting_locked(kefu_id: int, accepting: bool) -> list:
    Agent.update(accepting=accepting).where(Agent.id == kefu_id).execute()
    events = [_agent_changed_locked(kefu_id)]
    return events + (_dispatch_locked() if accepting else [])


def check_max_concurrent(limit) -> None:
    if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= 1000:
        raise Invalid("max_concurrent must be an integer from 1 to 1000")


def set_max_concurrent(kefu_id: int, limit: int) -> list:
    """A new limit for the agent; a raised one is filled from the queue in the same
    transaction (see ``set_accepting``)."""
    check_max_concurrent(limit)
    return groupcommit.run(_set_max_concurrent_locked, kefu_id, limit)


def _set_max_concurrent_locked(kefu_id: int, limit: int) -> list:
    Agent.update(max_concurrent=limit).where(Agent.id == kefu_id).execute()
    return [_agent_changed_locked(kefu_id), *_dispatch_locked()]


def _agent_changed_locked(kefu_id: int) -> AgentChanged:
    agent = Agent.get_or_none(Agent.id == kefu_id)
    if agent is None:
        raise NotFound("Kefu not found")
    return AgentChanged(
        kefu_id=agent.id,
        agent=person(agent.user),
        accepting=agent.accepting,
        max_concurrent=agent.max_concurrent,
        current_concurrent=agent.current_concurrent,
    )


def agents_holding_customers() -> set[int]:
    with db.read():
        return {row.agent_id for row in Conversation.agents_holding_customers()}


def requeue_agent(kefu_id: int) -> list:
    """The agent stayed offline past its grace period: its users' conversations go back
    to the head of the queue, in the order they were opened, and may go to another agent.
    Visitor conversations name their agent, so they stay. Nothing moves if the agent
    is online again by the time this job holds the rows."""
    return groupcommit.run(_requeue_locked, kefu_id)


def _requeue_locked(kefu_id: int) -> list:
    held = list(
        db.locked(
            Conversation.open_for_agent(kefu_id)
            .where(Conversation.user.is_null(False))
            .order_by(Conversation.created_at, Conversation.id)
        )
    )
    ids = [c.id for c in held]
    # Asked with the rows locked, not before: the agent may come back while this job
    # waits for them (or for its turn in the batch), and a socket that signed in
    # meanwhile has been told these users are its own.
    if not ids or kefu_id in presence.online_agent_ids():
        return []
    head = Conversation.waiting().first()
    start = (head.queued_at if head else time.time()) - len(ids)
    for offset, conv in enumerate(held):
        entry = _new_entry(start + offset, conv.taken_entry)
        Conversation.update(
            agent=None, queued_at=entry, taken_entry=None, updated_at=clock.now()
        ).where(Conversation.id == conv.id).execute()
    Agent.update(current_concurrent=Agent.current_concurrent - len(ids)).where(
        Agent.id == kefu_id
    ).execute()
    previous = person(Agent.get_by_id(kefu_id).user)
    events = [_requeued(load(i), previous) for i in ids]
    events += assign_waiting_locked(queued_here=True)
    events.append(queue_moved())
    return events


def _new_entry(entry: float, taken: float | None) -> float:
    """``entry``, or just before it (still after the entry before it) if the conversation
    was taken from that very entry: its last requeue found the same head. A socket that
    showed that hand-back would take this requeue for the last one's late news."""
    return math.nextafter(entry, -math.inf) if entry == taken else entry


def _requeued(conv: Conversation, previous) -> ConversationRequeued:
    """With the queue entry made (``assign_locked``'s ``queued_at`` when it is taken)."""
    return ConversationRequeued(conversation_ref(conv), previous, conv.queued_at)
