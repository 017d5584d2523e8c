"""Who is calling: bearer tokens (stored hashed) and host-signed JWTs → a Principal."""

import hashlib
import secrets
from dataclasses import dataclass

import jwt
from flask import current_app

from kefu import db
from kefu.errors import Unauthorized, has_lone_surrogate
from kefu.models import SENDER_AGENT, SENDER_USER, Agent, Token, User
from kefu.realtime.events import Person, user_key
from kefu.sqlcache import cached_first


@dataclass(frozen=True)
class Principal:
    """A signed-in person, detached from the database (safe to keep on a socket)."""

    user_id: int
    uuid: str
    username: str
    nickname: str
    avatar: str
    kefu_id: int | None = None

    @property
    def is_agent(self) -> bool:
        return self.kefu_id is not None

    @property
    def key(self) -> str:
        """The hub address of all this person's connections."""
        return user_key(self.user_id)

    @property
    def sender(self) -> tuple[int, int, str]:
        """(sender_type, sender_id, sender_key) of messages this person writes."""
        if self.is_agent:
            return SENDER_AGENT, self.kefu_id, f"a:{self.kefu_id}"
        return SENDER_USER, self.user_id, f"u:{self.user_id}"

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


def authenticate(raw: object) -> Principal:
    """Resolve a bearer token or a host JWT (with or without ``Bearer ``)."""
    if not isinstance(raw, str) or not raw.strip():
        raise Unauthorized("token is required")
    token = raw.strip()
    if token[:7].lower() == "bearer ":
        token = token[7:].strip()
    if token.count(".") == 2:
        return _from_host_jwt(token)
    with db.read():
        user = User.select().join(Token).where(Token.token_hash == hash_token(token)).first()
        if user is None:
            raise Unauthorized("Invalid or expired token")
        if not user.is_active:  # as for a host JWT: the token is right, the account is off
            raise Unauthorized("Account is disabled")
        return principal_for(user)


def _from_host_jwt(token: str) -> Principal:
    secret = current_app.config["JWT_SECRET"]
    if not secret:
        raise Unauthorized("Host JWT sign-in is not enabled (KEFU_JWT_SECRET is unset)")
    try:
        claims = jwt.decode(
            token,
            secret,
            algorithms=["HS256"],
            leeway=current_app.config["JWT_LEEWAY_SECONDS"],
            # RFC 7519 makes ``sub`` a string, but host applications often put their
            # numeric user id there as a number: 998877 and "998877" are one user.
            options={"require": ["sub"], "verify_sub": False},
        )
    except jwt.ExpiredSignatureError:
        raise Unauthorized("Token has expired") from None
    except jwt.InvalidSignatureError:
        raise Unauthorized("Token signature is invalid") from None
    except jwt.InvalidTokenError as exc:
        raise Unauthorized(f"Invalid token: {exc}") from None
    from kefu.services import accounts  # accounts imports auth for token issuing

    sub, name, avatar = claims["sub"], claims.get("name"), claims.get("avatar")
    if isinstance(sub, bool) or not isinstance(sub, str | int) or sub == "":
        raise Unauthorized("Invalid token: sub must be a non-empty string or an integer")
    sub = str(sub)
    if len(sub) > 150:  # what the account keeps of it (a longer one failed on PostgreSQL)
        raise Unauthorized("Invalid token: sub must be at most 150 characters")
    if not all(value is None or isinstance(value, str) for value in (name, avatar)):
        raise Unauthorized("Invalid token: name and avatar must be strings")
    if any(value and "\x00" in value for value in (sub, name, avatar)):
        # PostgreSQL stores no NUL in text: refused alike on every database.
        raise Unauthorized("Invalid token: claims must not contain NUL characters")
    if has_lone_surrogate([sub, name, avatar]):
        raise Unauthorized("Invalid token: claims must be valid Unicode (a lone surrogate)")
    user = accounts.provision_host_user(sub, name, avatar)
    if not user.is_active:
        raise Unauthorized("Account is disabled")
    return principal_for(user)
