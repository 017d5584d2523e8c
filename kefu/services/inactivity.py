"""Conversations left behind: open, no message for a while, and the customer gone.

A customer who closes the tab says no goodbye. Its conversation would hold the agent's
slot (``current_concurrent``) until someone ended it by hand, and an agent full of
abandoned visitor chats takes no queued user. The live desk
(``kefu/realtime/inactivity.py``) asks for the quiet ones, keeps those whose customer
still has a socket open, and ends the rest here, as if the customer had left.

A customer whose account was disabled has left too: its sockets are closed and it
cannot come back, so its open conversation ends as soon as a worker notices
(``KEFU_REVALIDATE_SECONDS``), not after the inactivity period.
"""

from datetime import timedelta

from kefu import clock, db, groupcommit
from kefu.models import SENDER_USER, Conversation, User
from kefu.realtime.events import user_key, visitor_key
from kefu.services import conversations


def quiet(idle_seconds: float, after_key: str = "", limit: int = 200) -> list[tuple[int, str, str]]:
    """One page of open conversations without a message for ``idle_seconds``:
    (conversation id, its open_key for the next page, the customer's hub key)."""
    cutoff = clock.now() - timedelta(seconds=idle_seconds)
    with db.read():
        rows = Conversation.quiet_open(cutoff, after_key, limit).tuples()
        return [
            (conv_id, open_key, user_key(user) if user is not None else visitor_key(visitor))
            for conv_id, open_key, user, visitor in rows
        ]


def end_if_still_quiet(conversation_id: int, idle_seconds: float, present) -> list:
    """End it unless a message came (or it ended) since it was found, or its customer
    is back (``present()``, asked again in the transaction: the customer may have
    reconnected while the job waited for its turn); the events."""
    cutoff = clock.now() - timedelta(seconds=idle_seconds)
    return groupcommit.run(_end_if_quiet_locked, conversation_id, cutoff, present)


def _end_if_quiet_locked(conversation_id: int, cutoff, present) -> list:
    conv = conversations.load_locked(conversation_id)  # a message written meanwhile counts
    if not conv.is_open or (conv.last_message_at or conv.created_at) >= cutoff:
        return []
    if present():
        return []
    customer_id = conv.user_id if conv.user_id is not None else conv.visitor_id
    return conversations.end_locked(conv, SENDER_USER, customer_id)


def of_disabled_users() -> list[int]:
    """Ids of (a page of) open conversations whose user's account is disabled."""
    with db.read():
        return [conv_id for (conv_id,) in Conversation.open_of_disabled_users().tuples()]


def end_if_customer_disabled(conversation_id: int) -> list:
    """End it unless it ended, or its user was enabled again, since it was found."""
    return groupcommit.run(_end_if_disabled_locked, conversation_id)


def _end_if_disabled_locked(conversation_id: int) -> list:
    conv = conversations.load_locked(conversation_id)
    if not conv.is_open or conv.user_id is None:
        return []
    if User.select(User.is_active).where(User.id == conv.user_id).scalar():
        return []
    return conversations.end_locked(conv, SENDER_USER, conv.user_id)
