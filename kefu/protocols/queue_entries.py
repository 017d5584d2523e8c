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

A requeue puts the conversation before the queue's head, so a later requeue of it could
make an entry equal to an earlier one if the head has not moved; only a socket that
lived through both could mistake them, and a requeue happens only while none of the
agent's sockets is online.
"""

TAKEN_MAX = 10_000  # entries remembered per socket; then forgotten (only staleness is lost)


def took_from_queue(conn, event) -> None:
    """Remember the queue entry a ``ConversationAssigned`` for this socket took, whether
    or not it is announced again (a sign-in may have told of the user already)."""
    if event.queued_at is None:
        return  # never waited: no requeue can be older than it
    taken = conn.state.setdefault("taken", {})
    if len(taken) >= TAKEN_MAX:
        taken.clear()
    taken[event.conversation.id] = event.queued_at


def stale_requeue(conn, event) -> bool:
    """Whether a ``ConversationRequeued`` is older than an assignment rendered here."""
    if event.queued_at is None:
        return False  # (from an older release: as before, never stale)
    return conn.state.get("taken", {}).get(event.conversation.id) == event.queued_at


def forget_taken(conn, conversation_id: int) -> None:
    conn.state.get("taken", {}).pop(conversation_id, None)
