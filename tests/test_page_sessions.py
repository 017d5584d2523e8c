"""Page sessions live on the server: signing out of the dashboard or the chat page ends
the session itself, so a copy of the cookie taken before is refused afterwards (pages
and the live channel's upgrade alike), while the person's other browsers stay signed in.
Expired sessions are refused and cleared at anyone's next sign-in; cookies from
before server sessions count as signed out. On whichever database the suite runs on."""

import json
import time

import pytest
import requests
import websocket
from flask import Flask
from flask.sessions import SecureCookieSessionInterface
from peewee_migrate import Router
from playhouse.migrate import SchemaMigrator

from kefu.db import make_database
from kefu.migrate import MIGRATIONS
from tests.support import Server, retire
from tests.test_pages_security import agent_session, close_code, csrf_of, live_socket, still_open

PAGE = {"agent": "/agent", "user": "/chat"}
REFUSED = {"agent": 302, "user": 403}  # to the sign-in form; the chat page says "sign in"


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    server = Server(tmp_path_factory.mktemp("page-sessions")).start()
    yield server
    retire(server)


def person(srv, role: str, name: str) -> dict:
    if role == "agent":
        return srv.create_agent(name, password=f"{name}-password")
    return srv.create_user(name)


def browser(srv, role: str, who: dict) -> requests.Session:
    """A browser signed in as ``who``: the agent's form, or the host's link to /chat."""
    if role == "agent":
        return agent_session(srv, who["username"], f"{who['username']}-password")
    s = requests.Session()
    signed = s.get(srv.url("/chat?token=" + who["token"]), allow_redirects=False)
    assert signed.status_code == 302
    s.csrf = csrf_of(s.get(srv.url("/chat")).text)
    return s


def copy_of(session: requests.Session) -> requests.Session:
    """Another browser holding the same cookies (copied off the wire or the disk)."""
    copy = requests.Session()
    copy.cookies.update(session.cookies)
    return copy


def page_status(srv, session, role: str) -> int:
    return session.get(srv.url(PAGE[role]), allow_redirects=False).status_code


def upgrade_status(srv, session, role: str) -> int:
    """101 if the page's live channel opens, else the handshake's refusal."""
    try:
        ws = live_socket(srv, session, role)
    except websocket.WebSocketBadStatusException as refused:
        return refused.status_code
    ws.close()
    return 101


def assert_signed_in(srv, session, role: str) -> None:
    assert page_status(srv, session, role) == 200
    assert upgrade_status(srv, session, role) == 101


def assert_signed_out(srv, session, role: str) -> None:
    assert page_status(srv, session, role) == REFUSED[role]
    assert upgrade_status(srv, session, role) == 403


def sign_out(srv, session, role: str) -> None:
    path = "/agent/sign-out" if role == "agent" else "/chat/sign-out"
    out = session.post(srv.url(path), data={"csrf_token": session.csrf}, allow_redirects=False)
    assert out.status_code == (302 if role == "agent" else 200)


def write(srv, query: str, *params) -> None:
    """Change stored rows straight in the server's database (``?`` placeholders)."""
    database = make_database(srv.env["KEFU_DATABASE_URL"], pool_size=1)
    try:
        with database.atomic():
            database.execute_sql(query.replace("?", database.param), params)
    finally:
        database.close()
        database.close_all()


def sessions_of(srv, user_id: int) -> int:
    return srv.sql("SELECT COUNT(*) FROM page_session WHERE user_id = ?", user_id)[0][0]


def expire_sessions_of(srv, user_id: int) -> None:
    write(srv, "UPDATE page_session SET expires_at = created_at WHERE user_id = ?", user_id)


@pytest.mark.parametrize("role", ["agent", "user"])
def test_a_cookie_copied_before_sign_out_is_refused_after_it(srv, role):
    who = person(srv, role, f"copied-{role}")
    here, elsewhere = browser(srv, role, who), browser(srv, role, who)
    stolen = copy_of(here)
    assert_signed_in(srv, stolen, role)

    sign_out(srv, here, role)
    assert_signed_out(srv, here, role)
    assert_signed_out(srv, stolen, role)
    assert_signed_in(srv, elsewhere, role)  # the person's other browser is another session


@pytest.mark.parametrize("role", ["agent", "user"])
def test_signing_out_closes_that_browsers_live_channel_only(srv, role):
    """The person's other browser keeps its live channel, and the host application's
    own connection (ds/kefu, same person) stays: signing out ends one session."""
    who = person(srv, role, f"one-browser-{role}")
    here, elsewhere = browser(srv, role, who), browser(srv, role, who)
    here_live, elsewhere_live = live_socket(srv, here, role), live_socket(srv, elsewhere, role)
    app = srv.ws()
    assert app.request({"action": "login", "data": {"token": who["token"]}})["success"]

    sign_out(srv, here, role)
    assert close_code(here_live) == 1008
    assert still_open(elsewhere_live)
    assert app.request({"action": "ping"})["success"] is True
    assert_signed_in(srv, elsewhere, role)
    elsewhere_live.close()
    app.close()


@pytest.mark.parametrize("role", ["agent", "user"])
def test_an_expired_session_is_refused(srv, role):
    who = person(srv, role, f"expired-{role}")
    session = browser(srv, role, who)
    assert_signed_in(srv, session, role)
    expire_sessions_of(srv, who["id"])
    assert_signed_out(srv, session, role)


def test_a_session_in_use_is_renewed_past_half_its_lifetime(srv):
    """A session lasts KEFU_SESSION_SECONDS from its last use, as the cookie did: an
    agent at work every day is not sent to the sign-in form once a week."""
    who = person(srv, "agent", "renewed-agent")
    session = browser(srv, "agent", who)
    ends = "SELECT expires_at FROM page_session WHERE user_id = ?"
    (signed_in_end,) = srv.sql(ends, who["id"])[0]
    assert_signed_in(srv, session, "agent")  # early in its life: no write
    assert srv.sql(ends, who["id"])[0][0] == signed_in_end
    # Three days and a bit are left of the default seven: past half.
    write(
        srv,
        "UPDATE page_session SET created_at = ?, expires_at = ? WHERE user_id = ?",
        *_days_ago(4),
        who["id"],
    )
    assert_signed_in(srv, session, "agent")
    (renewed_end,) = srv.sql(ends, who["id"])[0]
    assert str(renewed_end) >= str(signed_in_end)


def _days_ago(days: float) -> tuple:
    from datetime import UTC, datetime, timedelta

    now = datetime.now(UTC).replace(tzinfo=None)
    started = now - timedelta(days=days)
    return started, started + timedelta(days=7)


def test_a_sign_in_deletes_every_expired_session(srv):
    dora, eli = person(srv, "agent", "dora"), person(srv, "agent", "eli")
    browser(srv, "agent", dora)
    browser(srv, "agent", eli)
    expire_sessions_of(srv, dora["id"])
    expire_sessions_of(srv, eli["id"])

    kept = browser(srv, "agent", dora)  # clears dora's expired session
    assert sessions_of(srv, dora["id"]) == 1
    # ... and eli's, who may never sign in again
    assert sessions_of(srv, eli["id"]) == 0
    eli_now = browser(srv, "agent", eli)
    customer = person(srv, "user", "dora-as-customer")
    browser(srv, "user", customer)  # someone else's sign-in leaves live sessions alone
    assert sessions_of(srv, eli["id"]) == 1
    assert_signed_in(srv, eli_now, "agent")

    browser(srv, "agent", dora)  # a live session is not expired: it stays
    assert sessions_of(srv, dora["id"]) == 2
    assert_signed_in(srv, kept, "agent")


def old_cookie(srv, fields: dict) -> requests.Session:
    """A browser holding a session cookie as kefu signed it before server sessions."""
    app = Flask(__name__)
    app.secret_key = srv.env["KEFU_SECRET_KEY"]
    signed = SecureCookieSessionInterface().get_signing_serializer(app).dumps(fields)
    session = requests.Session()
    session.cookies.set("kefu_session", signed)
    return session


@pytest.mark.parametrize("role", ["agent", "user"])
def test_a_cookie_from_before_server_sessions_counts_as_signed_out(srv, role):
    who = person(srv, role, f"old-cookie-{role}")
    key = f"{role}_uid"
    session = old_cookie(
        srv, {key: who["id"], f"{key}_at": time.time(), "csrf": "x", "_permanent": True}
    )
    assert_signed_out(srv, session, role)
    assert_signed_in(srv, browser(srv, role, who), role)  # signing in again works


def page_session_indexes(database) -> dict:
    return {tuple(i.columns): i.unique for i in database.get_indexes("page_session")}


def test_007_makes_the_page_session_table_and_can_be_run_again(database):
    router = Router(database, migrate_dir=MIGRATIONS)
    assert "007_page_sessions" in router.run()
    columns = {c.name for c in database.get_columns("page_session")}
    assert columns == {"id", "user_id", "role", "secret_hash", "created_at", "expires_at"}
    assert page_session_indexes(database)[("secret_hash",)] is True
    assert page_session_indexes(database)[("user_id",)] is False

    # A run cut short after the table was made (MySQL commits each DDL statement at
    # once): the next run finishes it.
    database.execute_sql("DELETE FROM migratehistory WHERE name = '007_page_sessions'")
    SchemaMigrator.from_database(database).drop_index(
        "page_session", "page_session_secret_hash"
    ).run()
    assert Router(database, migrate_dir=MIGRATIONS).run() == ["007_page_sessions"]
    assert page_session_indexes(database)[("secret_hash",)] is True

    Router(database, migrate_dir=MIGRATIONS).rollback()
    assert "page_session" not in database.get_tables()


OTHER = {"agent": "user", "user": "agent"}


def sign_in_over(srv, session, role: str, who: dict) -> None:
    """The browser ``session`` signs in (again) as ``who``, whoever it held before: the
    agent's sign-in form, or the host's link to /chat."""
    if role == "agent":
        token = csrf_of(session.get(srv.url("/agent/sign-in")).text)
        form = {"username": who["username"], "password": f"{who['username']}-password"}
        signed = session.post(
            srv.url("/agent/sign-in"), data={**form, "csrf_token": token}, allow_redirects=False
        )
    else:
        signed = session.get(srv.url("/chat?token=" + who["token"]), allow_redirects=False)
    assert signed.status_code == 302, signed.text
    session.csrf = csrf_of(session.get(srv.url(PAGE[role])).text)


def hello_reply(ws, wanted: str) -> str:
    """The frame answering the page's hello (pushes before it are skipped)."""
    ws.settimeout(5)
    ws.send(json.dumps({"type": "hello"}))
    while wanted not in (frame := ws.recv()):
        pass
    return frame


@pytest.mark.parametrize("role", ["agent", "user"])
def test_signing_in_over_a_session_closes_its_live_channel(srv, role):
    """A sign-in ends the session the browser held as that role (``web.sign_in``), and
    with it that session's live channel: it went on getting the first person's pushes,
    since revalidation checks accounts, not sessions. The browser's session as the other
    role, the first person's other browsers and the host's connection stay."""
    a, b = person(srv, role, f"over-a-{role}"), person(srv, role, f"over-b-{role}")
    here, elsewhere = browser(srv, role, a), browser(srv, role, a)
    other = OTHER[role]
    sign_in_over(srv, here, other, person(srv, other, f"over-{other}-beside-{role}"))
    a_live, beside = live_socket(srv, here, role), live_socket(srv, here, other)
    elsewhere_live = live_socket(srv, elsewhere, role)
    app = srv.ws()
    assert app.request({"action": "login", "data": {"token": a["token"]}})["success"]

    sign_in_over(srv, here, role, b)
    assert close_code(a_live) == 1008
    assert still_open(beside) and still_open(elsewhere_live)
    assert app.request({"action": "ping"})["success"] is True

    b_live = live_socket(srv, here, role)  # the page reloads, as B, and its channel opens
    if role == "agent":
        assert b["username"] in here.get(srv.url("/agent")).text
        assert 'id="open-list"' in hello_reply(b_live, 'id="open-list"')
    else:  # B's, not A's: its hello names B's open conversation
        conv = srv.get("/api/kefu/message/getConversation", b["token"]).json()["data"]
        assert f'data-conv="{conv["id"]}"' in hello_reply(b_live, 'id="chat-head"')
    assert still_open(b_live)
    assert_signed_in(srv, elsewhere, role)
    for ws in (b_live, beside, elsewhere_live):
        ws.close()
    app.close()


def test_a_failed_agent_sign_in_over_a_session_closes_its_live_channel(srv):
    """A wrong password ends the session the browser held (``agent.sign_in``): its live
    channel closes with it."""
    a = person(srv, "agent", "failed-over-a")
    here = browser(srv, "agent", a)
    a_live = live_socket(srv, here, "agent")
    token = csrf_of(here.get(srv.url("/agent/sign-in")).text)
    form = {"username": a["username"], "password": "wrong", "csrf_token": token}
    assert here.post(srv.url("/agent/sign-in"), data=form).status_code == 401
    assert close_code(a_live) == 1008
    assert_signed_out(srv, here, "agent")


def test_a_sign_in_refused_for_its_rate_ends_the_session_too(tmp_path):
    """A refused attempt past the username's rate returned before the session was
    ended, unlike every other failed sign-in."""
    strict = Server(tmp_path, sign_in_attempts_per_username=1).start()
    try:
        a = person(strict, "agent", "rate-over-a")
        here = browser(strict, "agent", a)
        a_live = live_socket(strict, here, "agent")
        token = csrf_of(here.get(strict.url("/agent/sign-in")).text)
        form = {"username": "zzz-nobody", "password": "wrong", "csrf_token": token}
        # zzz-nobody's one attempt of the minute is spent by another browser.
        elsewhere = requests.Session()
        form["csrf_token"] = csrf_of(elsewhere.get(strict.url("/agent/sign-in")).text)
        assert elsewhere.post(strict.url("/agent/sign-in"), data=form).status_code == 401
        form["csrf_token"] = token
        assert here.post(strict.url("/agent/sign-in"), data=form).status_code == 429
        assert close_code(a_live) == 1008
        assert_signed_out(strict, here, "agent")
    finally:
        strict.destroy()  # its database too


@pytest.mark.parametrize("role", ["agent", "user"])
def test_the_same_person_signing_in_again_keeps_its_session_and_tabs(srv, role):
    """A host links /chat?token=… from every page, and an agent may send a stale sign-in
    tab's form: the same person again keeps the browser's session, so its open tabs stay
    live (a new session would close them, and their pages reload, losing drafts)."""
    a = person(srv, role, f"same-again-{role}")
    here = browser(srv, role, a)
    tab = live_socket(srv, here, role)
    sign_in_over(srv, here, role, a)
    assert still_open(tab)
    assert_signed_in(srv, here, role)
    tab.close()


def test_a_live_channel_closes_when_its_session_expires(tmp_path):
    """A page's live channel checked its session only at the handshake: one opened in a
    session that expired later went on getting its person's pushes, even after someone
    else signed in in that browser. Each revalidation pass now closes it."""
    short = Server(tmp_path, session_seconds=3, revalidate_seconds=0.3).start()
    try:
        a, b = person(short, "user", "expiring-a"), person(short, "user", "expiring-b")
        here = browser(short, "user", a)
        tab = live_socket(short, here, "user")
        assert still_open(tab, timeout=1.0)  # within the session
        assert close_code(tab, timeout=8.0) == 1008  # its session ran out
        assert page_status(short, here, "user") == REFUSED["user"]
        browser(short, "user", b)  # and a live session's channel stays
        b_tab = live_socket(short, browser(short, "user", b), "user")
        assert still_open(b_tab, timeout=1.0)
        b_tab.close()
    finally:
        short.destroy()  # its database too


def test_another_persons_chat_link_from_another_site_asks_first(srv):
    """Any page on another site could send this browser to /chat?token=<its own
    account's token>: the browser was signed in as that account, and the chat of the
    person signed in here ended (its tabs closed). Such a link now asks first; this
    site's own form (CSRF-checked) switches."""
    a, b = person(srv, "user", "switch-a"), person(srv, "user", "switch-b")
    b_conv = srv.get("/api/kefu/message/getConversation", b["token"]).json()["data"]["id"]
    shows_b = f'data-conv="{b_conv}"'
    here = browser(srv, "user", a)
    tab = live_socket(srv, here, "user")
    from_elsewhere = {"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Dest": "document"}
    asked = here.get(srv.url("/chat?token=" + b["token"]), headers=from_elsewhere)
    assert asked.status_code == 200 and "Switch account?" in asked.text
    assert "switch-a" in asked.text and "switch-b" in asked.text
    assert still_open(tab)
    assert_signed_in(srv, here, "user")
    assert shows_b not in here.get(srv.url("/chat")).text  # still A's chat
    forged = here.post(srv.url("/chat/switch"), data={"token": b["token"]})
    assert forged.status_code == 403  # no CSRF token: not this site's form
    form = {"token": b["token"], "csrf_token": csrf_of(asked.text)}
    switched = here.post(srv.url("/chat/switch"), data=form, allow_redirects=False)
    assert switched.status_code == 302
    assert close_code(tab) == 1008
    assert shows_b in here.get(srv.url("/chat")).text
    # The host's own link, followed in the same site or typed, switches at once.
    same_site = {"Sec-Fetch-Site": "same-origin", "Sec-Fetch-Dest": "document"}
    back = here.get(srv.url("/chat?token=" + a["token"]), headers=same_site, allow_redirects=False)
    assert back.status_code == 302
