"""Agent sign-in: throttled against guessing; signing out closes the person's sockets."""

import pytest
import requests
import websocket

from tests.test_pages_security import agent_session, csrf_of


@pytest.fixture
def srv(make_server):
    server = make_server(sign_in_attempts_per_username=3, sign_in_attempts_per_ip=6)
    server.create_agent("guarded", password="right-password")
    server.create_agent("other", password="other-password")
    return server


def attempt(srv, username, password, forwarded_for=None):
    s = requests.Session()
    if forwarded_for:  # as nginx adds it (docs/security.md)
        s.headers["X-Forwarded-For"] = forwarded_for
    token = csrf_of(s.get(srv.url("/agent/sign-in")).text)
    return s.post(
        srv.url("/agent/sign-in"),
        allow_redirects=False,
        data={"username": username, "password": password, "csrf_token": token},
    )


def test_guessing_one_account_is_throttled(srv):
    statuses = [attempt(srv, "guarded", f"guess-{n}").status_code for n in range(3)]
    assert statuses == [401, 401, 401]
    blocked = attempt(srv, "guarded", "right-password")  # even the right password, for now
    assert blocked.status_code == 429
    assert "Too many sign-in attempts; wait a minute and try again." in blocked.text
    assert attempt(srv, "other", "other-password").status_code == 302  # others unaffected
    for n in range(3):
        attempt(srv, "nobody", f"x{n}")
    assert attempt(srv, "other", "other-password").status_code == 429  # per address too


@pytest.mark.parametrize("proxy_count", [0, 1])
def test_behind_a_proxy_each_client_address_counts_apart(make_server, proxy_count):
    """Behind nginx every request comes from 127.0.0.1. With ``KEFU_PROXY_COUNT=1`` the
    address nginx forwards is counted, so one guesser does not lock everyone out; with
    0 (no proxy) the header is not believed, since any client could send it."""
    server = make_server(
        sign_in_attempts_per_username=100, sign_in_attempts_per_ip=3, proxy_count=proxy_count
    )
    server.create_agent("colleague", password="colleague-password")
    for n in range(3):
        assert attempt(server, f"guess{n}", "x", forwarded_for="203.0.113.9").status_code == 401
    guesser = attempt(server, "guess", "x", forwarded_for="203.0.113.9")
    assert guesser.status_code == 429
    colleague = attempt(server, "colleague", "colleague-password", forwarded_for="198.51.100.4")
    assert colleague.status_code == (302 if proxy_count else 429)


def test_live_channel_origin_allow_list(make_server):
    server = make_server(ws_allowed_origins="https://desk.example.com, https://ops.example")
    server.create_agent("origin-agent", password="origin-password")
    session = agent_session(server, "origin-agent", "origin-password")
    cookie = "; ".join(f"{k}={v}" for k, v in session.cookies.items())
    url = f"ws://{server.base}/pages/ws?as=agent"
    for origin in ("https://desk.example.com", "https://ops.example"):
        ws = websocket.create_connection(url, cookie=cookie, origin=origin)
        ws.close()
    with pytest.raises(websocket.WebSocketBadStatusException) as refused:
        websocket.create_connection(url, cookie=cookie, origin="https://desk.example.com.evil")
    assert refused.value.status_code == 403


def test_guesses_from_elsewhere_do_not_lock_the_agent_out_of_a_known_browser(make_server):
    """Wrong passwords from anywhere spend the username's budget, and locked its owner
    out with them. A browser the agent signed in from before has a budget of its own."""
    server = make_server(
        sign_in_attempts_per_username=3, sign_in_attempts_per_ip=100, proxy_count=1
    )
    server.create_agent("kept", password="kept-password")
    desk = requests.Session()
    desk.headers["X-Forwarded-For"] = "198.51.100.4"

    def sign_in(session, password):
        token = csrf_of(session.get(server.url("/agent/sign-in")).text)
        form = {"username": "kept", "password": password, "csrf_token": token}
        return session.post(server.url("/agent/sign-in"), data=form, allow_redirects=False)

    assert sign_in(desk, "kept-password").status_code == 302
    assert desk.cookies.get("kefu_known", path="/agent")
    for n in range(4):
        attempt(server, "kept", f"guess-{n}", forwarded_for="203.0.113.9")
    assert attempt(server, "kept", "guess", forwarded_for="203.0.113.9").status_code == 429
    assert sign_in(desk, "kept-password").status_code == 302  # the known browser
    stranger = requests.Session()  # the agent's address, but a browser never used
    stranger.headers["X-Forwarded-For"] = "198.51.100.4"
    assert sign_in(stranger, "kept-password").status_code == 429
    stranger.cookies.set("kefu_known", "W10.forged.signature", path="/agent")
    assert sign_in(stranger, "kept-password").status_code == 429


def test_spellings_of_one_username_share_its_sign_in_budget(srv):
    """MariaDB's default collation matches ``cárla`` or ``GUARDED `` as the account:
    counted per spelling, each had a fresh budget of guesses (operations tester)."""
    statuses = [attempt(srv, "guarded", f"guess-{n}").status_code for n in range(3)]
    assert statuses == [401, 401, 401]
    for spelling in ("güarded", "GUARDED ", "guarded\u0301"):
        assert attempt(srv, spelling, "right-password").status_code == 429


def test_names_longer_than_any_account_share_one_budget(srv):
    """No username is over 150 characters. Each longer made-up name was a key of its own
    in the per-username table, kept whole (a megabyte a request, from one address)."""
    stem = "n" * 150
    statuses = [attempt(srv, stem + tail, "guess").status_code for tail in "abcd"]
    assert statuses == [401, 401, 401, 429]


def test_a_malformed_chunked_body_is_a_400_not_an_internal_error(srv):
    """gunicorn raises while the form is read; that was a 500 with a traceback logged."""
    import socket

    mark = len(srv.log())
    for body in (b"zz\r\nab\r\n0\r\n\r\n", b"5;\x00\r\nabcde\r\n0\r\n\r\n"):
        with socket.create_connection(("127.0.0.1", srv.port), timeout=5) as raw:
            raw.sendall(
                b"POST /agent/sign-in HTTP/1.1\r\nHost: kefu\r\nTransfer-Encoding: chunked\r\n"
                b"Content-Type: application/x-www-form-urlencoded\r\n\r\n" + body
            )
            answer = b""
            while b"Malformed" not in answer and (chunk := raw.recv(65536)):
                answer += chunk
            answer = answer.decode()
        assert answer.startswith("HTTP/1.1 400"), answer[:200]
        assert "Malformed request body" in answer
    assert "Traceback" not in srv.log()[mark:]
