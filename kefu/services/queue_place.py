"""A waiting conversation's place in the shared queue: what a user who waits is shown
(the chat page and its pushes, the waiter protocol's ``connect``).

Apart from ``history``, which looks back at what was said, and from ``routing``, which
changes the queue: this only reads it. Every arriving customer asks, so both queries
are generated once (``sqlcache``); see "Hot paths stay off the hub" in
docs/architecture.md.
"""

from peewee import fn

from kefu import db
from kefu.models import Conversation
from kefu.sqlcache import cached_first


def queue_place(conversation_id: int) -> int | None:
    """The 1-based place of a waiting conversation in the shared queue, or None."""
    with db.read():
        mine = cached_first("waiting_by_id", _waiting_by_id, conversation_id)
        if mine is None:
            return None
        ahead = cached_first("waiting_ahead", _ahead_of, mine.queued_at, mine.queued_at, mine.id)
        return ahead[0] + 1


def _waiting_by_id(conversation_id: int):
    return Conversation.waiting(Conversation.id == conversation_id).limit(1)


def _ahead_of(queued_at: float, same_queued_at: float, conversation_id: int):
    """How many wait ahead of the conversation queued at ``queued_at`` (ties by id)."""
    ahead = (Conversation.queued_at < queued_at) | (
        (Conversation.queued_at == same_queued_at) & (Conversation.id < conversation_id)
    )
    return Conversation.waiting(ahead).select(fn.COUNT(Conversation.id)).order_by().tuples()
