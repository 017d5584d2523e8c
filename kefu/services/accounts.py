"""Users and agents: creation, host-provisioned users, passwords, agent settings."""

import secrets
from contextlib import contextmanager

from peewee import IntegrityError
from werkzeug.security import check_password_hash, generate_password_hash

from kefu import clock, db, groupcommit
from kefu.errors import Conflict, Invalid, NotFound
from kefu.models import USERNAME_MAX, Agent, User
from kefu.offload import off_hub
from kefu.principal import new_token_for
from kefu.services.routing import check_max_concurrent
from kefu.sqlcache import cached_first, cached_select

# PBKDF2 (OWASP's 600k rounds) rather than werkzeug's default scrypt: OpenSSL's PBKDF2
# releases the GIL, so a check in the thread pool leaves every socket running; scrypt
# holds the GIL for ~200 ms and would freeze the worker on each sign-in.
PASSWORD_METHOD = "pbkdf2:sha256:600000"


def _hash(password: str) -> str:
    return generate_password_hash(password, method=PASSWORD_METHOD)


def create_user(username: str, nickname: str = "", password: str | None = None):
    """A new user account and its first token: (user, raw_token)."""
    fields = _new_user_fields(username, nickname, password)
    with _name_free(fields["username"]), db.write():
        return _create_user_locked(fields)


def create_agent(
    username: str, nickname: str = "", max_concurrent: int = 5, password: str | None = None
):
    """A new agent (account + profile): (user, agent, raw_token)."""
    check_max_concurrent(max_concurrent)
    fields = _new_user_fields(username, nickname, password)
    with _name_free(fields["username"]), db.write():
        user, token = _create_user_locked(fields)
        agent = Agent.create(user=user, max_concurrent=max_concurrent)
        return user, agent, token


@contextmanager
def _name_free(username: str):
    """The unique index says a name is taken (after the write rolled back)."""
    try:
        yield
    except IntegrityError:
        raise Conflict(f"username {username!r} is taken") from None


def _new_user_fields(username: str, nickname: str, password: str | None) -> dict:
    """Checked, and the password hashed before any write: PBKDF2 takes a fifth of a
    second, and on SQLite every socket's writes would wait for the lock meanwhile."""
    username = (username or "").strip()
    if not username or len(username) > USERNAME_MAX:
        raise Invalid(f"username must be 1 to {USERNAME_MAX} characters")
    if len(nickname or "") > 150:
        raise Invalid("nickname must be at most 150 characters")
    if password is not None:
        _check_password(password)
    return {
        "username": username,
        "nickname": nickname or username,
        "password_hash": _hash(password) if password else None,
    }


PASSWORD_MIN = 8


def _check_password(password: str) -> None:
    """One rule for a password given at creation and for a new one."""
    if len(password or "") < PASSWORD_MIN:
        raise Invalid(f"password must be at least {PASSWORD_MIN} characters")


def _create_user_locked(fields: dict):
    user = User.create(**fields)
    return user, new_token_for(user)


def provision_host_user(external_id: str, name: str | None, avatar: str | None) -> User:
    """The user a host-signed JWT names, created on first use."""
    with db.read():
        user = cached_first("user_by_external_id", _by_external_id, external_id)
    if user is not None:
        return user
    try:
        return groupcommit.run(_create_host_user, external_id, name, avatar)
    except IntegrityError:  # another request provisioned it first, or the name is taken
        with db.read():
            user = User.get_or_none(User.external_id == external_id)
        if user is not None:
            return user
        # ``host-<sub>`` belongs to someone else: a local account of that name, or a
        # longer sub cut to the same 150 characters. A random tail makes it this one's.
        tail = "-" + secrets.token_hex(4)
        return groupcommit.run(_create_host_user, external_id, name, avatar, tail)


def _by_external_id(external_id: str):
    return User.select().where(User.external_id == external_id).limit(1)


def _create_host_user(
    external_id: str, name: str | None, avatar: str | None, tail: str = ""
) -> User:
    return User.create(
        username=f"host-{external_id}"[: 150 - len(tail)] + tail,
        nickname=(name or f"user {external_id}")[:150],
        avatar=(avatar or "")[:500],
        external_id=external_id,
    )


def verify_password(username: str, password: str) -> User | None:
    if "\x00" in username:  # no account has one (and PostgreSQL cannot even look it up)
        return None
    with db.read():
        user = User.get_or_none(User.username == username)
    if user is None or not user.password_hash or not user.is_active:
        return None
    matches = off_hub(check_password_hash, user.password_hash, password)
    return user if matches else None


def set_password(username: str, password: str) -> User:
    """A new password; the person's open sockets and sessions are closed."""
    _check_password(password)
    return _change_credentials(username, password_hash=_hash(password))


def set_active(username: str, active: bool) -> User:
    """Disable (or re-enable) an account; disabling closes its sockets and sessions and
    its tokens stop working."""
    return _change_credentials(username, is_active=active)


CREDENTIAL_CHUNK = 500  # user ids per query


def credential_changes(user_ids, between=None) -> dict[int, tuple[bool, object]]:
    """user id → (is_active, credentials_changed_at) for those that were disabled or
    changed credentials; chunked so a desk of thousands stays one cheap query each,
    each its own read, with ``between()`` called between them (the caller's chance to
    let others run). Every chunk has the same length, the last one padded with a
    repeated id, so the SQL is generated once: peewee building an IN of 500 took about
    2 ms of each chunk (10,000 ids: 40 -> 6.5 ms)."""
    ids, found = list(user_ids), {}
    for start in range(0, len(ids), CREDENTIAL_CHUNK):
        if start and between is not None:
            between()
        chunk = ids[start : start + CREDENTIAL_CHUNK]
        chunk += chunk[-1:] * (CREDENTIAL_CHUNK - len(chunk))
        with db.read():
            for user in cached_select(f"changed:{CREDENTIAL_CHUNK}", _changed_query, *chunk):
                found[user.id] = (user.is_active, user.credentials_changed_at)
    return found


def _changed_query(*user_ids):
    return User.with_changed_credentials(user_ids)


def _change_credentials(username: str, **changes) -> User:
    with db.write():
        updated = (
            User.update(credentials_changed_at=clock.now(), **changes)
            .where(User.username == username)
            .execute()
        )
        if not updated:
            raise NotFound(f"no user named {username!r}")
        return User.get(User.username == username)


def agent_profile(kefu_id: int) -> Agent:
    """The agent with its account (``agent.user``) loaded."""
    with db.read():
        agent = Agent.select(Agent, User).join(User).where(Agent.id == kefu_id).get_or_none()
    if agent is None:
        raise NotFound("Kefu not found")
    return agent


def serving_agent(kefu_id: int) -> Agent:
    """The agent a visitor may write to, as ``agent_profile``: one whose account is
    disabled cannot answer, so it is not found either (rather than a conversation that
    nobody would ever read)."""
    agent = agent_profile(kefu_id)
    if not agent.user.is_active:
        raise NotFound("Kefu not found")
    return agent
