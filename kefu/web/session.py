"""Who is on a page: the page session, CSRF tokens, and guards for agent and user pages.

A page session is a row on the server (``services/page_sessions``) whose secret the
signed cookie holds: signing out deletes the row, so a copy of the cookie taken before
is refused afterwards, and closes the live channels opened in that session. Agents and
customers keep separate sessions under separate keys, so one browser can hold both
without one identity leaking into the other's pages. The account is re-read with the
session on every request, so a disabled account, a changed password or a removed agent
profile loses access at once.
"""

import hmac
import secrets
import unicodedata
from functools import wraps

from flask import abort, current_app, redirect, request, session, url_for
from itsdangerous import BadData, URLSafeTimedSerializer

from kefu import db
from kefu.principal import Principal, principal_for
from kefu.services import page_sessions

AGENT, USER = page_sessions.ROLES
CSRF_HEADER = "X-CSRF-Token"


def _key(role: str) -> str:
    """Where the cookie keeps ``role``'s session secret. Cookies from before server-side
    sessions held ``agent_uid``/``user_uid`` instead: they count as signed out."""
    return f"{role}_session"


def csrf_token() -> str:
    token = session.get("csrf")
    if not token:
        token = session["csrf"] = secrets.token_urlsafe(32)
    return token


# Requests that change nothing: no CSRF token, and a signed-out one is sent to sign in
# (HEAD is GET without the body: a link checker got 403 where a browser got the page).
SAFE_METHODS = ("GET", "HEAD")


def check_csrf() -> None:
    """Every state-changing request from a page carries the session's token."""
    expected = session.get("csrf")
    sent = request.headers.get(CSRF_HEADER) or request.form.get("csrf_token") or ""
    # As bytes: compare_digest refuses str with non-ASCII characters (a TypeError, a 500).
    sent = sent.encode("utf-8", "surrogateescape")
    if not expected or not hmac.compare_digest(expected.encode(), sent):
        abort(403, description="CSRF token missing or invalid")


# Whose page a request comes from (``#live[data-person]``, sent by the pages' scripts).
PERSON_HEADER = "X-Kefu-Person"


def check_person(who: Principal) -> None:
    """A request from a tab opened for someone else (this browser has signed in as
    another person since, keeping the CSRF token) is refused, not done as the person
    signed in now: a message typed to one customer's chat went out as another's."""
    named = request.headers.get(PERSON_HEADER)
    if named and named != who.uuid:
        abort(409, description="This page was opened for another account; reload it")


def _check_change(who: Principal) -> None:
    """A request that changes something comes from this session's page, for ``who``."""
    if request.method not in SAFE_METHODS:
        check_csrf()
        check_person(who)


def _principal(role: str) -> Principal | None:
    secret = session.get(_key(role))
    if not isinstance(secret, str):
        return None
    with db.read():  # one pooled connection for the session and the agent profile
        lifetime = current_app.permanent_session_lifetime.total_seconds()
        user = page_sessions.find(secret, role, lifetime)
        return None if user is None else principal_for(user)


def current_agent() -> Principal | None:
    who = _principal(AGENT)
    return who if who and who.is_agent else None


def current_user() -> Principal | None:
    who = _principal(USER)
    return who if who and not who.is_agent else None


def sign_in(role: str, user_id: int) -> None:
    """A fresh session id-wise: drop the old CSRF token (no fixation), keep the other role.
    A customer signing in where an agent is keeps the agent's token, made at the agent's
    own sign-in: a link to ``/chat?token=…`` must not break the open dashboard's forms.
    The session this browser held as ``role`` is ended, not left to expire, and its
    pages' live channels close (``sign_out``): they would go on getting the pushes of
    whoever was signed in before (their pages reload, as the new sign-in). The same
    person again (a host links every page to the chat, a stale sign-in tab) keeps the
    session: a new one would close its own open tabs, drafts and all."""
    held = _principal(role)
    if held is not None and held.user_id == user_id:
        return
    kept = (_key(USER if role == AGENT else AGENT),)
    if role == USER and isinstance(session.get(_key(AGENT)), str):
        kept += ("csrf",)
    other = {k: session[k] for k in kept if k in session}
    sign_out(role, "Signed in again")
    session.clear()
    session.update(other)
    lifetime = current_app.permanent_session_lifetime.total_seconds()
    session[_key(role)] = page_sessions.start(user_id, role, lifetime)
    session.permanent = True
    csrf_token()


# Browsers an agent has signed in from. Guessing a password from elsewhere spends that
# username's sign-in budget, which would lock its owner out too: a browser that signed in
# as the agent before has a budget of its own (OWASP's "device cookie"), which only a
# guess from that very browser can spend. Signed, so it cannot be made up.
KNOWN_DEVICE_COOKIE, KNOWN_DEVICE_DAYS, KNOWN_DEVICE_NAMES = "kefu_known", 90, 5


def _device_signer():
    return URLSafeTimedSerializer(current_app.secret_key, salt="kefu-known-device")


def username_key(username: str) -> str:
    """The name sign-in limits count under: what MariaDB's default collation matches
    as one (case, accents, trailing spaces). Counted per spelling, ``cárla`` and
    ``CARLA `` each had a fresh budget there, and each signed in as ``carla``."""
    decomposed = unicodedata.normalize("NFKD", username)
    bare = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return bare.casefold().rstrip()


def known_devices() -> list[str]:
    """The usernames this browser has signed in as (``username_key``, newest first)."""
    raw = request.cookies.get(KNOWN_DEVICE_COOKIE)
    if not raw:
        return []
    try:
        names = _device_signer().loads(raw, max_age=KNOWN_DEVICE_DAYS * 86400)
    except BadData:  # forged, stale or from another secret key: a stranger's browser
        return []
    return [n for n in names if isinstance(n, str)] if isinstance(names, list) else []


def remember_device(response, username: str) -> None:
    key = username_key(username)
    names = [key] + [n for n in known_devices() if n != key]
    response.set_cookie(
        KNOWN_DEVICE_COOKIE,
        _device_signer().dumps(names[:KNOWN_DEVICE_NAMES]),
        max_age=KNOWN_DEVICE_DAYS * 86400,
        path="/agent",
        httponly=True,
        samesite="Lax",
        secure=current_app.config["SESSION_COOKIE_SECURE"],
    )


def session_mark(role: str) -> str | None:
    """This browser's session as ``role`` (``page_sessions.mark``), None if none."""
    secret = session.get(_key(role))
    return page_sessions.mark(secret) if isinstance(secret, str) else None


def sign_out(role: str, reason: str = "Signed out") -> str | None:
    """End this browser's session as ``role``, here and on the server (every copy of
    the cookie with it), and close the pages' live channels opened in it, on every
    worker (1008 with ``reason``). The other role's session, the person's other
    browsers and the host application's own connections stay. Returns the ended
    session's mark."""
    secret = session.pop(_key(role), None)
    if not isinstance(secret, str):
        return None
    ended = page_sessions.mark(secret)
    user_id = page_sessions.end(secret)
    if user_id is not None:  # the row was there: sockets may have been opened in it
        current_app.extensions["kefu.live"].disconnect_user(user_id, reason, ended)
    return ended


def agent_required(view):
    """Agent pages: anonymous visitors go to sign-in, anyone else gets 403."""

    @wraps(view)
    def guarded(*args, **kwargs):
        who = current_agent()
        if who is None:
            if request.method in SAFE_METHODS and not request.headers.get("HX-Request"):
                return redirect(url_for("agent.sign_in_form", next=request.path))
            abort(403, description="Agents only")
        _check_change(who)
        return view(who, *args, **kwargs)

    return guarded


def admit_send(who) -> None:
    """Refuse a message sent from a page past the person's rate (TooManyRequests)."""
    current_app.extensions["kefu.live"].admit_page_send(who.key)


def user_required(view):
    @wraps(view)
    def guarded(*args, **kwargs):
        who = current_user()
        if who is None:
            abort(403, description="Sign in through your account first")
        _check_change(who)
        return view(who, *args, **kwargs)

    return guarded
