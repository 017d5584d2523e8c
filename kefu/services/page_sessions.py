"""Page sessions kept on the server: the agent dashboard's and the user chat's.

The browser holds a random secret (in the signed session cookie); the database holds
only its SHA-256, like a bearer token's. Signing out deletes the row, so a copy of the
cookie taken before is worth nothing afterwards. A session lasts ``lifetime`` from its
last use, as Flask's cookie did: past half its time, a use moves its end forward (one
write per session every half lifetime, not one per request).
"""

import secrets
from datetime import timedelta

from kefu import clock, db
from kefu.models import PageSession, User
from kefu.principal import hash_token

ROLES = ("agent", "user")


def start(user_id: int, role: str, lifetime: float) -> str:
    """A new session of ``user_id`` as ``role``; returns its secret. Every expired
    session goes in the same write, whoever's it was: nothing else deletes the rows of
    sessions that were never signed out, and one sweep per sign-in keeps the table to
    the live sessions and those expired since the last sign-in."""
    if role not in ROLES:
        raise ValueError(f"unknown page role {role!r}")
    secret = secrets.token_urlsafe(32)
    now = clock.now()
    with db.write():
        PageSession.expired(now).execute()
        PageSession.create(
            user=user_id,
            role=role,
            secret_hash=hash_token(secret),
            created_at=now,
            expires_at=now + timedelta(seconds=lifetime),
        )
    return secret


def find(secret: str, role: str, lifetime: float) -> User | None:
    """The account of the live session ``secret`` as ``role``, in one query: None if the
    session was ended or has expired, or the account was disabled or its credentials
    changed since the sign-in. (The account, not only its id: pages re-read it on
    every request anyway.) A session past half its ``lifetime`` is renewed."""
    now = clock.now()
    with db.read():
        user = PageSession.account(hash_token(secret), role, now).first()
    if user is not None and user.session_expires - now < timedelta(seconds=lifetime / 2):
        ends = now + timedelta(seconds=lifetime)
        with db.write():
            PageSession.update(expires_at=ends).where(PageSession.id == user.session_id).execute()
    return user


def mark(secret: str) -> str:
    """A session's name without its secret (the hash the row keeps): what the live
    channel's sockets carry, so that signing out closes that session's sockets only."""
    return hash_token(secret)


def end(secret: str) -> int | None:
    """Sign the session out; returns whose it was, so that its live channel can be
    closed (None, and nothing happens, if it is gone already)."""
    secret_hash = hash_token(secret)
    with db.write():
        row = (
            PageSession.select(PageSession.id, PageSession.user)
            .where(PageSession.secret_hash == secret_hash)
            .first()
        )
        if row is None:
            return None
        PageSession.delete().where(PageSession.id == row.id).execute()
    return row.user_id


def still_on(marks, between=None) -> set[str]:
    """Which of the session ``marks`` (a live channel's) name a session still on: not
    signed out, not expired. A page's live channel checks nothing after its handshake,
    so one opened in a session that expired later went on getting its person's pushes,
    even after someone else signed in in that browser. Chunked as
    ``accounts.credential_changes``, with ``between()`` called between chunks."""
    marks, found, now = list(marks), set(), clock.now()
    for start in range(0, len(marks), MARK_CHUNK):
        if start and between is not None:
            between()
        with db.read():
            chunk = marks[start : start + MARK_CHUNK]
            found.update(row.secret_hash for row in PageSession.live_of(chunk, now))
    return found


MARK_CHUNK = 500  # marks per query
