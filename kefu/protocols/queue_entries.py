"""Which queue entry handed a conversation to a socket's person: a requeue of that very
entry, come late, is older than the hand-back and must not undo it.

With several workers, events reach a socket in the order their publishers' broker
transactions committed, not in the order of their domain commits. As an agent's grace
runs out on one worker and the agent signs in again on another, the assignment that
hands the requeued user straight back can come before the requeue: rendered after it,
the requeue told the agent its user had left (``disconnected``, a dashboard row
deleted) while the agent served the user again. Each requeue makes a queue entry
(``ConversationRequeued.queued_at``) and the assignment that takes the conversation
from the queue names the entry it took (``ConversationAssigned.queued_at``), so the two
are matched by identity: no clock of one worker is compared with another's.

A socket that signs in after the hand-back's news went by never saw that entry taken.
So the conversation's row keeps it while an agent serves it (``taken_entry``: set by
``routing.assign_locked`` to the ``queued_at`` it clears, cleared by a requeue), and a
sign-in remembers the entries of the conversations it reads to show (the waiter's
``tell_serving``, the user's ``connect``, the pages' ``hello``), read with them. A
column of its own, not ``queued_at`` kept after the assignment: only waiting
conversations have a ``queued_at`` (its index orders the queue), and kept, each read
of the queue's head would step over every conversation being served. The message
path's SELECTs name their columns: none reads it.

A requeue puts the conversation before the queue's head, so a later requeue of it
found the same head and made the entry the hand-back had taken: the user's sockets,
online throughout, took it for the last requeue's late news. A requeue now never makes
the entry its conversation was taken from (``routing._new_entry``); an entry older
still can recur, but no socket remembers it (each remembers the latest taken).
"""

TAKEN_MAX = 10_000  # entries remembered per socket; then forgotten (only staleness is lost)


def took_from_queue(conn, event) -> None:
    """Remember the queue entry a ``ConversationAssigned`` for this socket took, whether
    or not it is announced again (a sign-in may have told of the user already)."""
    shown_taken(conn, event.conversation.id, event.queued_at)


def shown_taken(conn, conversation_id: int, entry: float | None) -> None:
    """Remember the queue entry of an assignment this socket shows: from its event, or
    as a sign-in read it (``Conversation.taken_entry``, in the same read as the
    conversation it shows)."""
    if entry is None:
        return  # never waited (or assigned before the column): none can be older
    taken = conn.state.setdefault("taken", {})
    if len(taken) >= TAKEN_MAX:
        taken.clear()
    taken[conversation_id] = entry


def stale_requeue(conn, event) -> bool:
    """Whether a ``ConversationRequeued`` is older than an assignment rendered here."""
    if event.queued_at is None:
        return False  # (from an older release: as before, never stale)
    return conn.state.get("taken", {}).get(event.conversation.id) == event.queued_at


def forget_taken(conn, conversation_id: int) -> None:
    conn.state.get("taken", {}).pop(conversation_id, None)
