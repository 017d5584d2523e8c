"""Who is on a page: the session cookie, CSRF tokens, and guards for agent and user pages.

Agents and customers keep separate session keys, so one browser can hold both without
one identity leaking into the other's pages. The account is re-read on every request,
so a disabled account or a removed agent profile loses access at once.
"""

import hmac
import secrets
import time
import unicodedata
from datetime import UTC
from functools import wraps

from flask import abort, current_app, redirect, request, session, url_for
from itsdangerous import BadData, URLSafeTimedSerializer

from kefu import db
from kefu.auth import Principal, principal_for
from kefu.models import User

AGENT_KEY, USER_KEY = "agent_uid", "user_uid"
CSRF_HEADER = "X-CSRF-Token"


def csrf_token() -> str:
    token = session.get("csrf")
    if not token:
        token = session["csrf"] = secrets.token_urlsafe(32)
    return token


def check_csrf() -> None:
    """Every state-changing request from a page carries the session's token."""
    expected = session.get("csrf")
    sent = request.headers.get(CSRF_HEADER) or request.form.get("csrf_token") or ""
    if not expected or not hmac.compare_digest(expected, sent):
        abort(403, description="CSRF token missing or invalid")


def _principal(key: str) -> Principal | None:
    user_id = session.get(key)
    if not isinstance(user_id, int):
        return None
    with db.read():
        user = User.get_or_none(User.id == user_id, User.is_active == True)  # noqa: E712
        if user is None or _changed_since(user, session.get(f"{key}_at", 0)):
            return None
        return principal_for(user)


def _changed_since(user: User, signed_in_at) -> bool:
    """A password change (or a re-enabled account) ends sessions signed in before it."""
    changed = getattr(user, "credentials_changed_at", None)
    if changed is None:
        return False
    return changed.replace(tzinfo=UTC).timestamp() > float(signed_in_at or 0)


def current_agent() -> Principal | None:
    who = _principal(AGENT_KEY)
    return who if who and who.is_agent else None


def current_user() -> Principal | None:
    who = _principal(USER_KEY)
    return who if who and not who.is_agent else None


def sign_in(key: str, user_id: int) -> None:
    """A fresh session id-wise: drop the old CSRF token (no fixation), keep the other role.
    A customer signing in where an agent is keeps the agent's token, made at the agent's
    own sign-in: a link to ``/chat?token=…`` must not break the open dashboard's forms."""
    other_role = USER_KEY if key == AGENT_KEY else AGENT_KEY
    kept = (other_role, f"{other_role}_at")
    if key == USER_KEY and isinstance(session.get(AGENT_KEY), int):
        kept += ("csrf",)
    other = {k: session[k] for k in kept if k in session}
    session.clear()
    session.update(other)
    session[key] = user_id
    session[f"{key}_at"] = time.time()
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


def sign_out(key: str) -> None:
    session.pop(key, None)
    session.pop(f"{key}_at", None)


def agent_required(view):
    """Agent pages: anonymous visitors go to sign-in, anyone else gets 403."""

    @wraps(view)
    def guarded(*args, **kwargs):
        who = current_agent()
        if who is None:
            if request.method == "GET" and not request.headers.get("HX-Request"):
                return redirect(url_for("agent.sign_in_form", next=request.path))
            abort(403, description="Agents only")
        if request.method != "GET":
            check_csrf()
        return view(who, *args, **kwargs)

    return guarded


def user_required(view):
    @wraps(view)
    def guarded(*args, **kwargs):
        who = current_user()
        if who is None:
            abort(403, description="Sign in through your account first")
        if request.method != "GET":
            check_csrf()
        return view(who, *args, **kwargs)

    return guarded
