"""A conversation's messages read back: the pages of ``message/list``, and the resync
after the last message a client saw (ds/kefu's ``after_id``, the pages' reconnect)."""

from kefu import db
from kefu.errors import Invalid, seq_bound
from kefu.models import Message
from kefu.principal import Principal
from kefu.services.conversations import visible
from kefu.services.message_rules import LIMITS
from kefu.services.snapshots import message_view


def page(who: Principal, conversation_id: int, page_number: int = 1, page_size: int = 10):
    """Page 1 holds the newest ``page_size`` messages; each page runs oldest → newest."""
    if page_number < 1:
        raise Invalid("page must be 1 or more")
    page_size = _capped(page_size)
    with db.read():
        visible(conversation_id, who)
        newest_first = (
            Message.in_conversation(conversation_id)
            .order_by(Message.seq.desc())
            .paginate(page_number, page_size)
        )
        return [message_view(m) for m in reversed(list(newest_first))]


def _capped(page_size: int) -> int:
    """The spec's README: "page_size is capped (100)". A larger one gets the most a page
    holds; 0 or less asks for nothing sensible and is refused."""
    if page_size < 1:
        raise Invalid("page_size must be 1 or more")
    return min(page_size, LIMITS["page_size_max"])


def after_message(who: Principal, conversation_id: int, after_id: int, limit: int = 100):
    """The resync cursor: every message after ``after_id`` (0: from the start), oldest
    first. Ids are handed out before commit on PostgreSQL and MySQL, so "id > N" could
    skip a row committed late; the cursor is turned into the conversation's sequence
    number instead, which is assigned under the conversation's row lock and therefore
    grows in commit order."""
    if after_id < 0:
        raise Invalid("after_id must be 0 or more")
    limit = _capped(limit)
    with db.read():
        visible(conversation_id, who)
        after_seq = 0
        if after_id:
            seen = Message.in_conversation(conversation_id).where(Message.id == after_id).first()
            if seen is None:
                raise Invalid("after_id is not a message of this conversation")
            after_seq = seen.seq
        return after(who, conversation_id, after_seq, limit)


def after(who: Principal, conversation_id: int, after_seq: int, limit: int = 100):
    """Everything after the last sequence number a client saw, oldest first (resync)."""
    with db.read():
        visible(conversation_id, who)
        rows = (
            Message.in_conversation(conversation_id)
            .where(Message.seq > seq_bound(after_seq))
            .order_by(Message.seq)
            .limit(min(limit, LIMITS["page_size_max"]))
        )
        return [message_view(m) for m in rows]
