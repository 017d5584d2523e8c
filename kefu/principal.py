"""Who a caller is, once known: a ``Principal`` detached from the database, and the
bearer tokens that name one (stored as hashes). No Flask here: the services use it, and
they know nothing of requests (``kefu/auth.py`` reads the request's token or host JWT)."""

import hashlib
import secrets
from dataclasses import dataclass, field

from kefu import db
from kefu.models import (
    SENDER_AGENT,
    SENDER_USER,
    Agent,
    Token,
    User,
    agent_sender_key,
    user_sender_key,
)
from kefu.realtime.events import Person, user_key
from kefu.sqlcache import cached_first


@dataclass(frozen=True)
class Principal:
    """A signed-in person, detached from the database (safe to keep on a socket).

    What follows from the fields is set on the instance when it is made (outside the
    fields: equality and the repr see only those): every message reads ``is_agent``
    three times and ``sender`` once, and a property's call each time, with the key's
    text built anew, cost about 4,000 instructions of a message's path. Plain
    attributes, not ``cached_property``s: CPython 3.11 cannot specialize reading an
    attribute the class also names (about 190 instructions more a read)."""

    user_id: int
    uuid: str
    username: str
    nickname: str
    avatar: str
    kefu_id: int | None = None

    is_agent: bool = field(init=False, repr=False, compare=False)
    sender: tuple[int, int, str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # (sender_type, sender_id, sender_key) of messages this person writes
        if self.kefu_id is not None:
            sender = SENDER_AGENT, self.kefu_id, agent_sender_key(self.kefu_id)
        else:
            sender = SENDER_USER, self.user_id, user_sender_key(self.user_id)
        object.__setattr__(self, "is_agent", self.kefu_id is not None)
        object.__setattr__(self, "sender", sender)

    @property
    def key(self) -> str:
        """The hub address of all this person's connections."""
        return user_key(self.user_id)

    @property
    def person(self) -> Person:
        return Person(self.user_id, self.uuid, self.username, self.nickname, self.avatar)


def principal_for(user: User) -> Principal:
    with db.read():  # joins the caller's block when there is one
        agent = cached_first("agent_of_user", _agent_of_user, user.id)
    return Principal(
        user_id=user.id,
        uuid=user.uuid,
        username=user.username,
        nickname=user.nickname,
        avatar=user.avatar,
        kefu_id=agent.id if agent else None,
    )


def _agent_of_user(user_id: int):
    return Agent.select().where(Agent.user == user_id).limit(1)


def hash_token(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


def new_token_for(user: User) -> str:
    """Create a bearer token; only its hash is stored. Call inside a write transaction."""
    raw = secrets.token_urlsafe(32)
    Token.create(user=user, token_hash=hash_token(raw))
    return raw
