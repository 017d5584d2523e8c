"""Domain events: what happened, as plain frozen snapshots.

Services return them; the hub routes them by ``audience()`` (hub keys of the people
concerned); each connection's codec renders them in its own protocol. They hold no
model objects, so rendering never touches the database and a broker can carry them.
"""

from dataclasses import field
from datetime import datetime
from functools import cached_property

from kefu.realtime.snapshot_class import snapshot


def user_key(user_id: int) -> str:
    return f"u:{user_id}"


def visitor_key(key: str) -> str:
    return f"v:{key}"


def agent_key(kefu_id: int) -> str:
    """An agent's presence (its sockets of every kind), counted per worker with several."""
    return f"a:{kefu_id}"


AGENTS = "agents"  # every agent connection: queue length and other desk-wide news


@snapshot(key=(user_key, "user_id"))
class Person:
    """Public profile of a user or an agent's account.

    ``key``: the person's hub key. Kept on the instance, outside the fields (equality
    and the broker's wire see only those): a conversation's people are the same
    ``Person`` objects from one message to the next (services/targets.py), and every
    message's push is routed by them."""

    user_id: int
    uuid: str
    username: str
    nickname: str
    avatar: str

    def profile(self) -> dict:
        return {
            "id": str(self.user_id),
            "uuid": self.uuid,
            "username": self.username,
            "nickname": self.nickname or self.username,
            "avatar": self.avatar,
        }


@snapshot
class ConversationRef:
    id: int
    status: int
    customer: Person | None  # a signed-in user, or None for a visitor
    visitor_id: str | None  # the visitor's own id string
    kefu_id: int | None
    agent: Person | None  # the agent's account
    unread_count: int = 0
    kefu_unread_count: int = 0

    @property
    def customer_key(self) -> str:
        if self.customer is not None:
            return self.customer.key
        return visitor_key(self.visitor_id)

    @property
    def agent_key(self) -> str | None:
        return self.agent.key if self.agent else None

    def audience(self) -> list[str]:
        """``customer_key`` and ``agent_key`` (if any), read here without their property
        calls: every message's push is routed by them."""
        customer, agent = self.customer, self.agent
        keys = [customer.key if customer is not None else visitor_key(self.visitor_id)]
        if agent is not None:
            keys.append(agent.key)
        return keys


@snapshot
class MessageView:
    id: int
    seq: int
    conversation_id: int
    sender_type: int
    sender_id: int
    content: str
    message_type: int
    file_url: str | None
    is_read: int
    read_at: datetime | None
    created_at: datetime
    updated_at: datetime

    @property
    def text(self) -> str:
        """What a text-only client shows: the content, and the file's link below it
        (ds/kefu visitors and waiter text frames carry no file_url of their own: an
        image with a caption reached a visitor as the caption alone)."""
        if self.content and self.file_url:
            return f"{self.content}\n{self.file_url}"
        return self.content or self.file_url or ""


@snapshot
class MessageCreated:
    conversation: ConversationRef
    message: MessageView

    def audience(self):
        return self.conversation.audience()


@snapshot
class ConversationAssigned:
    """A waiting (or new) conversation got its agent.

    ``pending``: the customer's messages the agent side has not read (those its
    ``kefu_unread_count`` counts: written while it waited, or to an agent who then
    left), the latest ``history.PENDING_MAX``, oldest first. Read in the assigning
    transaction, so a codec can show them to the agent who takes it without touching
    the database (spec README: such messages "are shown to the agent who takes it")."""

    conversation: ConversationRef
    pending: tuple[MessageView, ...] = ()
    queued_at: float | None = None  # the queue entry it was taken from (None: never queued)

    def audience(self):
        return [*self.conversation.audience(), AGENTS]


@snapshot
class ConversationEnded:
    conversation: ConversationRef
    operator_type: int
    operator_id: int

    def audience(self):
        return [*self.conversation.audience(), AGENTS]


@snapshot
class ConversationRated:
    """The customer rated an ended conversation (or rated it again): its agent's
    dashboard shows the score."""

    conversation: ConversationRef
    rating: int

    def audience(self):
        return self.conversation.audience()


@snapshot
class ConversationRequeued:
    """The agent stayed away past the grace period; the customer waits again."""

    conversation: ConversationRef
    previous_agent: Person
    queued_at: float | None = None  # its new queue entry: see protocols/queue_entries.py

    def audience(self):
        return [self.conversation.customer_key, user_key(self.previous_agent.user_id), AGENTS]


@snapshot
class AssignmentDeferred:
    """The queue's head could not be assigned now: its row is locked (MySQL: a message
    being written into it, or another assignment not yet committed), or so is the row
    of the agent with room (PostgreSQL: a visitor's conversation opening with it).
    Serving the next in line instead broke FIFO, and waiting for the row in the
    assigning transaction deadlocked with the writer. Also (MySQL) a transaction that
    queued customers no agent had room for: room that came meanwhile was assigned by a
    transaction that could not see them (``routing.assign_waiting_locked``). The live
    layer runs the assignment again shortly."""

    def audience(self):
        return []  # never delivered as such


@snapshot
class QueueMoved:
    """The waiting queue changed: who is where is read later, once, by the live layer.

    Services used to read the whole queue into every arrival's and every ending's
    transaction, O(n) each and so O(n^2) for a burst of n arrivals, only for all but
    the last of those snapshots to be dropped by the coalescing that follows. The live
    layer turns these into one ``QueueChanged`` per coalescing window instead."""

    def audience(self):
        return []  # never delivered as such


@snapshot
class QueueChanged:
    """The waiting queue after a change, in order (index 0 is served next), as
    (conversation id, user id) pairs: only signed-in users queue (visitors name their
    agent). Kept this small because every waiting person receives it on every change."""

    waiting: tuple[tuple[int, int], ...] = field(default_factory=tuple)

    def audience(self):
        return [*(user_key(user_id) for _, user_id in self.waiting), AGENTS]

    @cached_property
    def _places(self) -> dict[int, int]:
        return {conversation_id: n for n, (conversation_id, _) in enumerate(self.waiting, 1)}

    @cached_property
    def _by_user(self) -> dict[int, int]:
        return {user_id: conversation_id for conversation_id, user_id in self.waiting}

    def position_of(self, conversation_id: int) -> int | None:
        """1-based place in the queue, or None if it is not waiting."""
        return self._places.get(conversation_id)

    def waiting_conversation_of(self, user_id: int) -> int | None:
        return self._by_user.get(user_id)


@snapshot
class MessagesRead:
    conversation: ConversationRef
    reader_type: int  # the side that read: 1 customer, 2 agent
    message_ids: tuple[int, ...]

    def audience(self):
        return self.conversation.audience()


@snapshot
class AgentChanged:
    """An agent's switches or load changed (ready/unready, limit)."""

    kefu_id: int
    agent: Person
    accepting: bool
    max_concurrent: int
    current_concurrent: int

    def audience(self):
        return [user_key(self.agent.user_id)]


@snapshot
class WaiterSignedIn:
    """A waiter signed in on a new socket: its older waiter sockets, on whatever worker,
    are kicked out. A control event: ``Live.on`` handlers act on it; codecs ignore it."""

    user_id: int  # the agent's account
    worker_id: str
    connection_id: str
    at: datetime

    def audience(self):
        return [user_key(self.user_id)]


@snapshot
class SignedOut:
    """A person's sockets, on whatever worker, are to close: all of them (an account
    disabled, a password changed), or with ``session`` only the pages' sockets opened in
    that page session (one browser signed out; the person's other browsers and the host
    application's own connections stay). A control event handled by ``Live``."""

    user_id: int
    reason: str
    session: str | None = None  # page_sessions.mark of the browser that signed out

    def audience(self):
        return [user_key(self.user_id)]
