"""Tables and the queries over them. Models return queries; services own transactions."""

import uuid

from peewee import (
    JOIN,
    BooleanField,
    CharField,
    DateTimeField,
    DoubleField,
    ForeignKeyField,
    IntegerField,
    Model,
    SmallIntegerField,
    TextField,
    fn,
)

from kefu import clock
from kefu.db import database

OPEN, ENDED = 1, 2  # conversation status, as the guide numbers it
SENDER_USER, SENDER_AGENT = 1, 2  # sender_type; a visitor counts as a user (1)
TEXT, IMAGE, FILE = 1, 2, 3  # message_type
USERNAME_MAX = 150  # characters of a username (a sign-in keys its budget by at most these)


def new_uuid() -> str:
    return str(uuid.uuid4())


class BaseModel(Model):
    class Meta:
        database = database
        legacy_table_names = False


class User(BaseModel):
    """A person with an account: a host application's customer, or an agent's account."""

    uuid = CharField(max_length=36, unique=True, default=new_uuid)
    username = CharField(max_length=USERNAME_MAX, unique=True)
    nickname = CharField(max_length=150, default="")
    avatar = CharField(max_length=500, default="")
    external_id = CharField(max_length=150, null=True, unique=True)  # host JWT ``sub``
    password_hash = CharField(max_length=255, null=True)
    is_active = BooleanField(default=True)
    # Sockets and sessions older than this are closed (password change, disabling).
    credentials_changed_at = DateTimeField(null=True)
    created_at = DateTimeField(default=clock.now)

    @classmethod
    def with_changed_credentials(cls, user_ids):
        """Of ``user_ids``, those disabled or whose credentials ever changed."""
        return cls.select(cls.id, cls.is_active, cls.credentials_changed_at).where(
            cls.id.in_(list(user_ids)),
            (cls.is_active == False) | cls.credentials_changed_at.is_null(False),  # noqa: E712
        )


class Token(BaseModel):
    """A bearer token, stored only as its SHA-256."""

    user = ForeignKeyField(User, backref="tokens", on_delete="CASCADE")
    token_hash = CharField(max_length=64, unique=True)
    created_at = DateTimeField(default=clock.now)


class PageSession(BaseModel):
    """A signed-in page (the agent dashboard or the user chat) of one browser, stored
    only as its secret's SHA-256: the cookie holds the secret, and signing out deletes
    the row, so a copy of the cookie is worth nothing afterwards."""

    user = ForeignKeyField(User, backref="page_sessions", on_delete="CASCADE")
    role = CharField(max_length=10)  # "agent" or "user": one browser may hold both
    secret_hash = CharField(max_length=64, unique=True)
    created_at = DateTimeField(default=clock.now)  # the sign-in
    expires_at = DateTimeField()

    @classmethod
    def account(cls, secret_hash: str, role: str, now):
        """The active account a live session of ``role`` belongs to: unexpired, and
        signed in since its credentials last changed (a password change or a
        re-enabled account ends the sessions signed in before it). The session's id and
        end come along as ``session_id`` and ``session_expires``."""
        changed = User.credentials_changed_at
        return (
            User.select(User, cls.id.alias("session_id"), cls.expires_at.alias("session_expires"))
            .join(cls)
            .where(
                cls.secret_hash == secret_hash,
                cls.role == role,
                cls.expires_at > now,
                User.is_active == True,  # noqa: E712 (peewee expression)
                changed.is_null() | (changed <= cls.created_at),
            )
            .objects()  # the session's columns on the User, not on a joined PageSession
        )

    @classmethod
    def live_of(cls, secret_hashes, now):
        """Which of ``secret_hashes`` name a session that is still on (not signed out,
        not expired)."""
        return cls.select(cls.secret_hash).where(
            cls.secret_hash.in_(secret_hashes), cls.expires_at > now
        )

    @classmethod
    def expired(cls, now):
        """Delete the sessions that have expired."""
        return cls.delete().where(cls.expires_at <= now)


class Agent(BaseModel):
    """The agent (客服 / kefu / waiter) profile of a user account; its id is ``kefu_id``."""

    user = ForeignKeyField(User, unique=True, backref="agent_profile", on_delete="CASCADE")
    max_concurrent = IntegerField(default=5)
    current_concurrent = IntegerField(default=0)
    accepting = BooleanField(default=True)  # waiter ready/unready, dashboard switch
    last_assigned_at = DoubleField(null=True)  # ties go to the agent idle longest

    @classmethod
    def with_capacity(cls, kefu_ids):
        """Agents among ``kefu_ids`` that take a new conversation now, least busy first."""
        return (
            cls.select()
            .where(
                cls.id.in_(list(kefu_ids)),
                cls.accepting == True,  # noqa: E712 (peewee expression)
                cls.current_concurrent < cls.max_concurrent,
            )
            .order_by(cls.current_concurrent, fn.COALESCE(cls.last_assigned_at, 0), cls.id)
        )


class Visitor(BaseModel):
    """An anonymous website visitor, known only by the ``visitor_id`` it chose."""

    key = CharField(max_length=128, unique=True)
    created_at = DateTimeField(default=clock.now)


# The keys the unique indexes hold, spelled once: a conversation's ``open_key`` (one open
# conversation per user, or per visitor and agent) and a message's ``sender_key`` (whose
# op_ids are unique together, whatever the protocol).
def user_open_key(user_id: int) -> str:
    return f"u:{user_id}"


def visitor_open_key(visitor_row_id: int, kefu_id: int) -> str:
    return f"v:{visitor_row_id}:{kefu_id}"


def user_sender_key(user_id: int) -> str:
    return f"u:{user_id}"


def agent_sender_key(kefu_id: int) -> str:
    return f"a:{kefu_id}"


def visitor_sender_key(visitor_row_id: int) -> str:
    return f"v:{visitor_row_id}"


class Conversation(BaseModel):
    user = ForeignKeyField(User, null=True, backref="conversations", on_delete="CASCADE")
    visitor = ForeignKeyField(Visitor, null=True, backref="conversations", on_delete="CASCADE")
    agent = ForeignKeyField(
        Agent, null=True, backref="conversations", column_name="kefu_id", object_id_name="agent_id"
    )
    status = SmallIntegerField(default=OPEN)
    # Unique while open, NULL once ended: "one open conversation per user" (or per
    # visitor and agent) enforced by the database on SQLite, PostgreSQL and MySQL alike.
    open_key = CharField(max_length=200, null=True, unique=True)
    queued_at = DoubleField(null=True, index=True)  # set while waiting for an agent
    # The queue entry (queued_at) its agent took it from: see protocols/queue_entries.py.
    taken_entry = DoubleField(null=True)
    last_seq = IntegerField(default=0)  # per-conversation message sequence
    last_message_at = DateTimeField(null=True)
    unread_count = IntegerField(default=0)  # agent messages the customer has not read
    kefu_unread_count = IntegerField(default=0)  # customer messages the agent has not read
    rating = SmallIntegerField(null=True)
    ended_at = DateTimeField(null=True)
    created_at = DateTimeField(default=clock.now)
    updated_at = DateTimeField(default=clock.now)

    @property
    def kefu_id(self):
        return self.agent_id

    @property
    def is_open(self) -> bool:
        return self.status == OPEN

    @classmethod
    def waiting(cls, *conditions):
        """The shared FIFO queue: open conversations without an agent, oldest first
        (those of them that also meet ``conditions``, which come first in the SQL, so
        their parameters lead: see ``kefu.sqlcache``)."""
        return (
            cls.select()
            .where(
                *conditions, cls.status == OPEN, cls.agent.is_null(), cls.queued_at.is_null(False)
            )
            .order_by(cls.queued_at, cls.id)
        )

    @classmethod
    def open_for_agent(cls, kefu_id: int):
        return cls.select().where(cls.agent == kefu_id, cls.status == OPEN)

    @classmethod
    def quiet_open(cls, cutoff, after_key: str = "", limit: int = 200):
        """Open conversations without a message since ``cutoff``, with their customer
        (user id, visitor key), a page at a time in ``open_key`` order: only open
        conversations have an ``open_key``, so its unique index finds them without
        reading the ended ones."""
        last_activity = fn.COALESCE(cls.last_message_at, cls.created_at)
        return (
            cls.select(cls.id, cls.open_key, cls.user, Visitor.key)
            .join(Visitor, JOIN.LEFT_OUTER)
            .where(cls.open_key > after_key, last_activity < cutoff)
            .order_by(cls.open_key)
            .limit(limit)
        )

    @classmethod
    def open_of_disabled_users(cls, limit: int = 200):
        """Open conversations whose signed-in customer's account is disabled: read from
        the open ones (few, by the ``open_key`` index), each user by its primary key, so
        a large user table is never scanned."""
        return (
            cls.select(cls.id)
            .join(User, on=(cls.user == User.id))
            .where(cls.open_key > "", User.is_active == False)  # noqa: E712 (SQL)
            .order_by(cls.open_key)
            .limit(limit)
        )

    @classmethod
    def agents_holding_customers(cls):
        """Ids of the agents assigned a signed-in user's open conversation (those a
        requeue after the agent's grace period concerns; visitors keep their agent)."""
        return (
            cls.select(cls.agent)
            .where(cls.status == OPEN, cls.agent.is_null(False), cls.user.is_null(False))
            .distinct()
        )


class Message(BaseModel):
    # No index of its own: the unique (conversation, seq) index below serves it.
    conversation = ForeignKeyField(
        Conversation, backref="messages", on_delete="CASCADE", index=False
    )
    seq = IntegerField()
    sender_type = SmallIntegerField()
    sender_id = IntegerField()  # user id, kefu_id for agents, visitor row id for visitors
    content = TextField(default="")
    message_type = SmallIntegerField(default=TEXT)
    file_url = CharField(max_length=1000, null=True)
    is_read = SmallIntegerField(default=0)
    read_at = DateTimeField(null=True)
    # "u:<user id>", "a:<kefu_id>" or "v:<visitor id>": who sent it, whatever the protocol.
    sender_key = CharField(max_length=40)
    op_id = CharField(max_length=64, null=True)
    created_at = DateTimeField(default=clock.now)
    updated_at = DateTimeField(default=clock.now)

    class Meta:
        indexes = (
            (("conversation", "seq"), True),
            # Idempotent sends: one message per sender and op_id, whatever the socket.
            # op_id first: clients that number or timestamp their op_ids (most do) put
            # a commit's new entries side by side, where sender first put each sender's
            # entry on a page of its own, and every page a commit touches is written to
            # the log again (migration 005).
            (("op_id", "sender_key"), True),
        )

    @classmethod
    def in_conversation(cls, conversation_id: int):
        return cls.select().where(cls.conversation == conversation_id)

    @classmethod
    def by_op(cls, sender_key: str, op_id: str):
        return cls.select().where(cls.sender_key == sender_key, cls.op_id == op_id)

    @classmethod
    def naming_uploads(cls):
        """(file_url, content) of every message that may name an upload: as its file, or
        as a link in its text (a visitor's image travels as its link)."""
        return cls.select(cls.file_url, cls.content).where(
            cls.file_url.contains("/uploads/") | cls.content.contains("/uploads/")
        )


ALL_MODELS = [User, Token, PageSession, Agent, Visitor, Conversation, Message]
