"""Messages: sending (idempotent by op_id), listing pages, history across conversations."""

from peewee import IntegrityError

from kefu import clock, db
from kefu.auth import Principal
from kefu.errors import Conflict, Invalid
from kefu.models import FILE, IMAGE, SENDER_USER, TEXT, Conversation, Message
from kefu.realtime.events import MessageCreated
from kefu.services.conversations import visible
from kefu.services.snapshots import conversation_ref, load, message_view

LIMITS = {"content_chars": 5000, "page_size_max": 100}
SAFE_URL_PREFIXES = ("https://", "http://", "/")


def configure(content_chars: int, page_size_max: int) -> None:
    LIMITS.update(content_chars=content_chars, page_size_max=page_size_max)


def check_body(content, message_type, file_url) -> tuple[str, int, str | None]:
    """The guide's rules: text needs content; image and file need a file_url."""
    if message_type not in (TEXT, IMAGE, FILE):
        raise Invalid("message_type must be 1 (text), 2 (image) or 3 (file)")
    content = content or ""
    if len(content) > LIMITS["content_chars"]:
        raise Invalid(f"content is too long (max {LIMITS['content_chars']} characters)")
    if message_type == TEXT and not content.strip():
        raise Invalid("content is required")
    if message_type != TEXT and not file_url:
        raise Invalid("file_url is required for image and file messages")
    if file_url is not None:
        if len(file_url) > 1000:
            raise Invalid("file_url is too long (max 1000 characters)")
        # Relative paths must not be protocol-relative (//evil.example).
        if not file_url.startswith(SAFE_URL_PREFIXES) or file_url.startswith("//"):
            raise Invalid("file_url must be an http(s) URL or a path on this server")
    return content, message_type, file_url or None


def send(
    who: Principal,
    conversation_id: int,
    content: str | None,
    message_type: int = TEXT,
    file_url: str | None = None,
    op_id: str | None = None,
):
    """Store a message from a customer or the assigned agent.

    Returns (MessageView, events, duplicate). A repeated ``op_id`` from the same sender
    returns the first message and announces nothing.
    """
    content, message_type, file_url = check_body(content, message_type, file_url)
    sender_type, sender_id, sender_key = who.sender
    with db.write():
        first = _first_with_op(sender_key, op_id)
        if first is not None:
            return first, [], True
        conv = visible(conversation_id, who)
        if not conv.is_open:
            raise Conflict("Conversation has ended")
        try:
            view, events = append_locked(
                conv, sender_type, sender_id, sender_key, content, message_type, file_url, op_id
            )
        except DuplicateOp:  # a concurrent retry won the race (row locks, not SQLite)
            return _first_with_op(sender_key, op_id), [], True
        return view, events, False


class DuplicateOp(Exception):
    """The (sender, op_id) pair is already stored."""


def _first_with_op(sender_key: str, op_id: str | None):
    if op_id is None:
        return None
    first = Message.by_op(sender_key, op_id).first()
    return message_view(first) if first else None


def append_locked(
    conv: Conversation,
    sender_type: int,
    sender_id: int,
    sender_key: str,
    content: str,
    message_type: int,
    file_url: str | None,
    op_id: str | None,
):
    """Write the message, bump the sequence and the other side's unread counter."""
    now = clock.now()
    conv = db.locked(Conversation.select().where(Conversation.id == conv.id)).get()
    try:
        with db.database.atomic():  # a savepoint: a duplicate op_id must not poison the txn
            msg = Message.create(
                conversation=conv.id,
                seq=conv.last_seq + 1,
                sender_type=sender_type,
                sender_id=sender_id,
                sender_key=sender_key,
                content=content,
                message_type=message_type,
                file_url=file_url,
                op_id=op_id,
                created_at=now,
                updated_at=now,
            )
    except IntegrityError:
        raise DuplicateOp(op_id) from None
    unread = (
        Conversation.kefu_unread_count if sender_type == SENDER_USER else Conversation.unread_count
    )
    Conversation.update(
        {
            Conversation.last_seq: Conversation.last_seq + 1,
            Conversation.last_message_at: now,
            Conversation.updated_at: now,
            unread: unread + 1,
        }
    ).where(Conversation.id == conv.id).execute()
    view = message_view(msg)
    return view, [MessageCreated(conversation_ref(load(conv.id)), view)]


def page(who: Principal, conversation_id: int, page_number: int = 1, page_size: int = 10):
    """Page 1 holds the newest ``page_size`` messages; each page runs oldest → newest."""
    if page_number < 1:
        raise Invalid("page must be 1 or more")
    if not 1 <= page_size <= LIMITS["page_size_max"]:
        raise Invalid(f"page_size must be from 1 to {LIMITS['page_size_max']}")
    with db.read():
        visible(conversation_id, who)
        newest_first = (
            Message.in_conversation(conversation_id)
            .order_by(Message.seq.desc())
            .paginate(page_number, page_size)
        )
        return [message_view(m) for m in reversed(list(newest_first))]


def after(who: Principal, conversation_id: int, after_seq: int, limit: int = 100):
    """Everything after the last sequence number a client saw, oldest first (resync)."""
    with db.read():
        visible(conversation_id, who)
        rows = (
            Message.in_conversation(conversation_id)
            .where(Message.seq > after_seq)
            .order_by(Message.seq)
            .limit(min(limit, LIMITS["page_size_max"]))
        )
        return [message_view(m) for m in rows]
