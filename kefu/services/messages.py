"""Messages: sending, idempotent by op_id (the pages of a conversation: message_pages)."""

from peewee import SQL, IntegrityError

from kefu import clock, db, groupcommit, rowmemo
from kefu.errors import KefuError, SentAfterEnd
from kefu.models import OPEN, SENDER_USER, TEXT, Conversation, Message
from kefu.principal import Principal
from kefu.realtime.events import MessageCreated, MessageView
from kefu.services.conversations import visible
from kefu.services.message_rules import OpIdReused, check_send, is_resend, same_body
from kefu.services.snapshots import conversation_ref, load, message_view
from kefu.services.targets import Target, load_current_target
from kefu.sqlcache import PROBE_TIMES, cached_select, cached_write


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
    body = check_send(content, message_type, file_url, op_id)
    return groupcommit.run(send_locked, who, conversation_id, *body)


@rowmemo.keeps_rows  # append_locked brings the Target the memo keeps up to date
def send_locked(who, conversation_id, content, message_type, file_url, op_id):
    sender_type, sender_id, sender_key = who.sender
    try:
        target = visible(conversation_id, who, load_current_target)
        if target.status != OPEN:  # is_open, without a property's call (every message)
            raise SentAfterEnd
        row = (sender_type, sender_id, sender_key, content, message_type, file_url, op_id)
        view, events = append_locked(target, *row)
    except (KefuError, DuplicateOp) as exc:
        # A resend of a stored message is answered with it, even if the conversation
        # has ended since. Looked up only now: the unique (sender, op_id) index makes
        # the INSERT fail for a resend, so a new message costs no extra query.
        first = first_with_op(sender_key, op_id)
        if first is None:
            raise
        if not is_resend(first, conversation_id, content, message_type, file_url):
            if isinstance(exc, DuplicateOp):
                raise OpIdReused from None
            raise
        return first, [], True
    return view, events, False


class DuplicateOp(Exception):
    """The (sender, op_id) pair is already stored."""


def first_with_op(sender_key: str, op_id: str | None):
    """The stored message this sender sent with ``op_id``, or None."""
    if op_id is None:
        return None
    if type(sender_key) is str and type(op_id) is str:
        rows = cached_select("first_with_op", _by_op_query, sender_key, op_id)
        first = rows[0] if rows else None
    else:
        first = Message.by_op(sender_key, op_id).first()
    return message_view(first) if first else None


def repeated(sender_key: str, op_id, content, message_type, file_url):
    """The stored message a send repeats (its op_id stored with this body), wherever it
    went, or None; OpIdReused if the op_id holds another body. For sends that name no
    conversation (a visitor's, /chat's, the waiter protocol's)."""
    first = first_with_op(sender_key, op_id)
    if first is not None and not same_body(first, content, message_type, file_url):
        raise OpIdReused
    return first


def _by_op_query(sender_key: str, op_id: str):
    return Message.by_op(sender_key, op_id).limit(1)


def _insert_query(
    conversation_id,
    seq,
    sender_type,
    sender_id,
    sender_key,
    content,
    message_type,
    file_url,
    op_id,
    now,
):
    return Message.insert(
        conversation=conversation_id,
        seq=seq,
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


def _text_insert_query(conversation_id, seq, sender_type, sender_id, *rest):
    """SQLite: ``_insert_query`` for a message with no file (most of them), its file_url
    a NULL in the SQL's text. sqlite3 binds a None parameter only after looking for an
    adapter for it (two failed attribute lookups, one of which raises an AttributeError
    and clears it): about 3,300 instructions, a hundredth of a message's path. ``rest``:
    sender_key, content, message_type, op_id, now."""
    *body, op_id, now = rest
    return _insert_query(conversation_id, seq, sender_type, sender_id, *body, _NULL, op_id, now)


_NULL = SQL("NULL")
_OP_KEY = [Message.op_id, Message.sender_key]  # the unique index of idempotent sends


def _insert_skipping_duplicate_query(*row):
    """PostgreSQL: the INSERT, or nothing (and no row returned) for a resent op_id."""
    insert = _insert_query(*row).on_conflict(action="IGNORE", conflict_target=_OP_KEY)
    return insert.returning(Message.id)


def _insert_unless_duplicate(row: tuple, cached: bool) -> int:
    """The new message's id on PostgreSQL; DuplicateOp for a resent op_id."""
    if cached:
        name = "insert_message_unless_duplicate"
        cursor = cached_write(name, _insert_skipping_duplicate_query, row, _INSERT_PROBES)
    else:
        cursor = db.database.execute(_insert_skipping_duplicate_query(*row))
    inserted = cursor.fetchone()
    if inserted is None:
        raise DuplicateOp(row[8])
    return inserted[0]


def _bump_query(to_agent: bool):
    """Next sequence number, last activity, and the unread counter of the other side."""
    unread = Conversation.kefu_unread_count if to_agent else Conversation.unread_count

    def build(now, conversation_id):
        return Conversation.update(
            {
                Conversation.last_seq: Conversation.last_seq + 1,
                Conversation.last_message_at: now,
                Conversation.updated_at: now,
                unread: unread + 1,
            }
        ).where(Conversation.id == conversation_id)

    return build


# Distinct stand-ins, one per argument, to find where each argument lands in the SQL's
# parameters (types as the real arguments; None-able text gets a string).
_INSERT_PROBES = (
    -770001,
    -770002,
    -770003,
    -770004,
    "\x00k",
    "\x00c",
    -770007,
    "\x00f",
    "\x00o",
    PROBE_TIMES[0],
)
_TEXT_INSERT_PROBES = _INSERT_PROBES[:7] + _INSERT_PROBES[8:]  # no file_url
_BUMP_PROBES = (PROBE_TIMES[0], -770011)
# The cached UPDATE's name and builder per direction (to the agent or not), made once:
# not a closure, a field lookup and a name per message.
_BUMPS = {to_agent: (f"bump:{to_agent}", _bump_query(to_agent)) for to_agent in (True, False)}


def _locked_query(conversation_id: int):
    return db.locked(Conversation.select().where(Conversation.id == conversation_id))


def _locked_row(conversation_id) -> Conversation:
    if type(conversation_id) is not int:
        return _locked_query(conversation_id).get()
    rows = cached_select(f"locked:{db.is_sqlite()}", _locked_query, conversation_id)
    if not rows:
        raise Conversation.DoesNotExist
    return rows[0]


def _same_people(target: Target, row: Conversation) -> bool:
    return (
        target.status == row.status
        and target.user_id == row.user_id
        and target.visitor_id == row.visitor_id
        and target.agent_id == row.agent_id
    )


def append_locked(
    conv: Conversation | Target,
    sender_type: int,
    sender_id: int,
    sender_key: str,
    content: str,
    message_type: int,
    file_url: str | None,
    op_id: str | None,
):
    """Write the message, bump the sequence and the other side's unread counter.

    A ``Target`` read in this transaction also gives the event's people, so the
    conversation is not loaded again for the snapshot."""
    sqlite, postgres = db.configured_sqlite, db.configured_postgres
    now, now_text = clock.now_stored() if sqlite else (clock.now(), None)
    target = conv if type(conv) is Target else None
    if target is None or not target.current:  # lock the row and read it again
        conv = _locked_row(conv.id)
        if conv.status != OPEN:  # ended since the caller read it
            raise SentAfterEnd
    # SQL generated once (sqlcache) for plain ids: peewee's building of the INSERT and
    # UPDATE costs more CPU than the database needs to run them.
    cached = (sqlite or postgres) and type(conv.id) is int and type(conv.last_seq) is int
    stamp = now_text if cached and sqlite else now
    row = (conv.id, conv.last_seq + 1, sender_type, sender_id, sender_key, content)
    try:
        if cached and sqlite:  # no savepoint: SQLite undoes just the failed statement
            if file_url is None:
                row += (message_type, op_id, stamp)
                cursor = cached_write("insert_text", _text_insert_query, row, _TEXT_INSERT_PROBES)
            else:
                row += (message_type, file_url, op_id, stamp)
                cursor = cached_write("insert_message", _insert_query, row, _INSERT_PROBES)
            message_id = cursor.lastrowid
        elif postgres:  # a duplicate neither raises nor aborts: no savepoint
            row += (message_type, file_url, op_id, stamp)
            message_id = _insert_unless_duplicate(row, cached)
        else:
            with db.database.atomic():  # a savepoint: a duplicate must not poison the txn
                message_id = _insert_query(*row, message_type, file_url, op_id, stamp).execute()
    except IntegrityError:
        raise DuplicateOp(op_id) from None
    to_agent = sender_type == SENDER_USER
    name, bump = _BUMPS[to_agent]
    if cached:
        cached_write(name, bump, (stamp, conv.id), _BUMP_PROBES)
    else:
        bump(now, conv.id).execute()
    # Positional: a class called with keywords packs them into a dict and unpacks it
    # again, about 5,000 instructions for these twelve (a third of building the view).
    view = MessageView.build(  # MessageView(...), cheaper: see snapshot_class
        message_id,  # id
        conv.last_seq + 1,  # seq
        conv.id,  # conversation_id
        sender_type,
        sender_id,
        content,
        message_type,
        file_url,
        0,  # is_read
        None,  # read_at
        now,  # created_at
        now,  # updated_at
    )
    # A target read in this transaction (conv is target: the usual case) is its own row.
    if target is not None and (conv is target or _same_people(target, conv)):
        # The row is locked (or SQLite's writer lock is held): the counters are the
        # row's plus the increments just written.
        unread = conv.unread_count + (not to_agent)
        ref = target.ref(unread, conv.kefu_unread_count + to_agent)
        if conv is target:  # now the row as written (the batch's memo may keep it)
            target.last_seq += 1
            if to_agent:
                target.kefu_unread_count += 1
            else:
                target.unread_count += 1
    else:
        ref = conversation_ref(load(conv.id))
    return view, [MessageCreated(ref, view)]


def again_if_ended(append, *args):
    """``append(*args)``, run once more if the conversation it found open (a plain read:
    PostgreSQL, MySQL) ended as it was sent; ``append`` then opens a new one for it."""
    try:
        return append(*args)
    except SentAfterEnd:
        return append(*args)
