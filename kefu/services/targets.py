"""What storing a message reads of its conversation, as cheaply as it can be read.

Every message needs its conversation's state (who is in it, open or not, the
counters) under the writer lock, and the people its event names. The state is one
row read by primary key; the people are the same from one message to the next, so they
are kept per conversation (``Parties``) and the four-way join that reads them is run
only for a conversation not seen lately or whose participants changed. In a
group-commit batch the conversation's ``Target`` itself is kept (``kefu.rowmemo``),
as the batcher's own connection last read or wrote its row: a message's send then
reads nothing and builds nothing, and its write brings the kept ``Target`` up to date.
"""

from dataclasses import dataclass, field
from time import monotonic

from peewee import JOIN

from kefu import db, rowmemo
from kefu.errors import NotFound
from kefu.models import OPEN, Agent, Conversation, User, Visitor
from kefu.realtime.events import ConversationRef, Person
from kefu.services.snapshots import AgentUser
from kefu.sqlcache import cached_select


@dataclass(slots=True)
class Target:
    """What storing a message needs of its conversation: who is in it, its state and
    counters, and the people its event names. Plain values (no model instances, no
    dates)."""

    id: int
    status: int
    user_id: int | None
    visitor_id: int | None
    agent_id: int | None
    last_seq: int
    unread_count: int
    kefu_unread_count: int
    customer: Person | None
    visitor_key: str | None
    agent: Person | None
    # Stays as read until the transaction ends (see load_target).
    current: bool = False
    # The ``parties`` entry its people came from: a Target the memo keeps is used only
    # until that entry expires (its ids are the row's: a job that changes them empties
    # the memo), so its people are as old as that entry allows at most.
    known: tuple | None = field(default=None, compare=False, repr=False)

    @property
    def is_open(self) -> bool:
        return self.status == OPEN

    def names_its_people(self) -> bool:
        """Every id the row holds comes with the person it names."""
        return (
            (self.user_id is None) == (self.customer is None)
            and (self.visitor_id is None) == (self.visitor_key is None)
            and (self.agent_id is None) == (self.agent is None)
        )

    def ref(self, unread_count: int, kefu_unread_count: int) -> ConversationRef:
        return ConversationRef.build(  # ConversationRef(...), cheaper: snapshot_class
            self.id,
            self.status,
            self.customer,
            self.visitor_key,
            self.agent_id,
            self.agent,
            unread_count,
            kefu_unread_count,
        )


class Parties:
    """The people of recent conversations, by conversation id: the user, visitor and
    agent ids the conversation's row named, and the customer's ``Person``, the
    visitor's key and the agent's ``Person`` they stand for.

    An entry is used only for a row that names exactly the same three ids (read in
    the same transaction as the write), so a conversation given to another agent is
    read whole again. What the ids point to does not change in kefu: an account's
    profile and a visitor's key are written once, when created. An entry still ends
    after ``SECONDS``, so a profile edited in the database by hand shows within that.
    The table is emptied when full, and whenever another database is configured."""

    SECONDS = 30.0
    MAX = 10_000

    def __init__(self):
        self._known: dict[int, tuple] = {}
        self._database = None  # the database the entries were read from

    def _of_database(self) -> dict:
        """The entries, emptied when another database is configured (ids are per
        database: tests, and the CLI, open several in one process)."""
        database = db.configured
        if self._database is not database:
            self._database = database
            self._known = {}
        return self._known

    def remember(self, target: Target) -> tuple:
        """Keep ``target``'s people; returns the entry (as ``fresh`` does)."""
        known = self._of_database()
        if len(known) >= self.MAX:
            known.clear()
        ids = (target.user_id, target.visitor_id, target.agent_id)
        people = (target.customer, target.visitor_key, target.agent)
        entry = known[target.id] = (ids, people, monotonic() + self.SECONDS)
        return entry

    def fresh(self, conversation_id: int) -> tuple | None:
        """(ids, people, expiry) while the entry lasts; people are (customer, visitor
        key, agent)."""
        # _of_database's test, without its call: every message asks.
        entries = self._known if self._database is db.configured else self._of_database()
        known = entries.get(conversation_id)
        return None if known is None or known[2] < monotonic() else known


parties = Parties()


def load_target(conversation_id: int, current: bool = False) -> Target:
    """The conversation's ``Target``; NotFound if there is none.

    ``current``: one that no other transaction can change before this one ends. On
    SQLite the writer lock, held since before the read, sees to that; elsewhere the read
    locks the conversation's row. PostgreSQL locks it with the join itself (FOR UPDATE
    OF: one round trip). MariaDB has no FOR UPDATE OF, and a plain one would lock the
    people's rows too: there the row alone is locked first, then read with its people
    (READ COMMITTED, see db.py: the read sees the locked row as committed). A plain read
    was once taken there, and a message went into a conversation ended meanwhile."""
    memo = rowmemo.current() if current else None  # a batch job: the writer lock is held
    locking = current and not db.configured_sqlite
    joined = locking and db.is_postgres()  # locked by the join's own FOR UPDATE OF
    build = _locked_target_query if joined else _target_query
    if type(conversation_id) is int:
        target = _with_known_parties(conversation_id, locking, memo)
        if target is None:
            if locking and not joined:
                lock_row(conversation_id)
            name = "target_locked" if joined else "target"
            rows = cached_select(name, build, conversation_id, decode=_decode_target)
            target = rows[0] if rows else None
            if joined and target is not None and not target.names_its_people():
                # PostgreSQL re-checks a locked row that changed while it waited for the
                # lock, but keeps the joined rows it had read: a conversation assigned
                # meanwhile came with its new agent's id and no agent, and its messages
                # reached no agent for as long as that was remembered. The row is locked
                # now: a plain read sees it and its people as committed.
                rows = cached_select(
                    "target", _target_query, conversation_id, decode=_decode_target
                )
                target = rows[0] if rows else None
            if target is not None:
                target.known = parties.remember(target)
                if memo is not None:
                    memo.put(conversation_id, target)
    else:  # not an id the SQL caches can take: built and run as it is
        if locking and not joined:
            lock_row(conversation_id)
        target = next(map(_target_from_row, build(conversation_id).tuples()), None)
    if target is None:
        raise NotFound("Conversation not found")
    target.current = current
    return target


def lock_row(conversation_id: int) -> None:
    """The conversation's row locked, without its people's, until the transaction ends
    (nothing to do on SQLite, whose writer lock a write transaction holds throughout)."""
    if db.is_sqlite():
        return
    if type(conversation_id) is int:
        cached_select("state_locked", _locked_state_query, conversation_id, decode=_decode_state)
    else:  # not an id the SQL caches can take: built and run as it is
        list(_locked_state_query(conversation_id).tuples())


def load_current_target(conversation_id: int) -> Target:
    """``load_target(conversation_id, current=True)``, as a loader for ``visible``: in a
    batch job, the Target the batch's memo keeps (the row as this connection last read
    or wrote it) until the entry its people came from expires."""
    memo = rowmemo.current()
    if memo is not None and type(conversation_id) is int:
        kept = memo.get(conversation_id)
        if kept is not None and kept.known[2] >= monotonic():
            return kept
    return load_target(conversation_id, current=True)


def _with_known_parties(
    conversation_id: int, locking: bool, memo: rowmemo.RowMemo | None
) -> Target | None:
    """The ``Target`` from the conversation's own row, read now, if its people are
    known for the ids it names (and then kept in the batch's ``memo``); None otherwise
    (and where there is no such row: the full query then says so)."""
    known = parties.fresh(conversation_id)
    if known is None:
        return None
    name = "state_locked" if locking else "state"
    build = _locked_state_query if locking else _state_query
    rows = cached_select(name, build, conversation_id, decode=_decode_state)
    ids, people, _ = known
    if not rows or rows[0][2:5] != ids:
        return None
    target = Target(*rows[0], *people, known=known)
    if memo is not None:
        memo.put(conversation_id, target)
    return target


_STATE = ("id", "status", "user", "visitor", "agent", "last_seq", "unread_count")
# A Target's own columns, in its order: the state query's, and the full query's first.
_STATE_COLUMNS = tuple(getattr(Conversation, name) for name in (*_STATE, "kefu_unread_count"))


def _state_query(conversation_id):
    return Conversation.select(*_STATE_COLUMNS).where(Conversation.id == conversation_id).limit(1)


def _locked_state_query(conversation_id):
    return _state_query(conversation_id).for_update()


def _decode_state(cursor):
    """The row as the driver gives it (a tuple of the query's columns), copied."""
    return tuple


def _target_query(conversation_id):
    return (
        Conversation.select(
            *_STATE_COLUMNS,
            *_person_columns(User),
            Visitor.key,
            *_person_columns(AgentUser),
        )
        .join_from(Conversation, User, JOIN.LEFT_OUTER)
        .join_from(Conversation, Visitor, JOIN.LEFT_OUTER)
        .join_from(Conversation, Agent, JOIN.LEFT_OUTER)
        .join_from(Agent, AgentUser, JOIN.LEFT_OUTER, on=(Agent.user == AgentUser.id))
        .where(Conversation.id == conversation_id)
        .limit(1)
    )


def _locked_target_query(conversation_id):
    return _target_query(conversation_id).for_update(of=Conversation)


def _person_columns(model) -> list:
    """A ``Person``'s fields, in its order, from ``User`` or an alias of it."""
    return [getattr(model, name) for name in ("id", "uuid", "username", "nickname", "avatar")]


def _decode_target(cursor):
    """The columns are the query's own, in its order, on every database."""
    return _target_from_row


def _target_from_row(row) -> Target:
    customer = _person(row[8:13]) if row[8] is not None else None
    agent = _person(row[14:19]) if row[14] is not None else None
    return Target(*row[:8], customer, row[13], agent)


_PEOPLE: dict[tuple, Person] = {}
_PEOPLE_MAX = 10_000


def _person(fields: tuple) -> Person:
    """The same frozen Person for the same profile: a message names two people, and a
    dict lookup is a fraction of building them anew. Keyed by every field, so a changed
    profile is simply a new entry; the table is emptied when full."""
    known = _PEOPLE.get(fields)
    if known is None:
        if len(_PEOPLE) >= _PEOPLE_MAX:
            _PEOPLE.clear()
        known = _PEOPLE[fields] = Person(*fields)
    return known
