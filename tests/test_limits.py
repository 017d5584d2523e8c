"""Abuse limits: frame rate, visitor message rate, connections per identity, login deadline."""

import time

import pytest
import requests
import websocket

from tests.support import Server


def assert_closed_within(ws, seconds: float) -> None:
    """The server closes the socket within ``seconds`` (however busy the machine is)."""
    deadline = time.monotonic() + seconds
    with pytest.raises(websocket.WebSocketConnectionClosedException):
        while time.monotonic() < deadline:
            ws.sock.settimeout(max(0.01, deadline - time.monotonic()))
            ws.sock.recv()


@pytest.fixture
def strict(make_server):
    return make_server(
        ws_rate_per_second=5,
        ws_rate_burst=5,
        visitor_messages_per_minute=6,
        max_connections_per_identity=2,
        ws_login_timeout_seconds=1,
    )


def test_frame_rate_limit_answers_and_recovers(strict):
    ws = strict.ws()
    replies = [ws.request({"action": "ping", "op_id": n}) for n in range(8)]
    assert [r["success"] for r in replies[:5]] == [True] * 5
    assert replies[5] == {
        "success": False,
        "op_id": 5,
        "message": "Rate limit exceeded: too many frames, slow down",
    }
    time.sleep(0.5)  # the bucket refills at 5 frames a second
    assert ws.request({"action": "ping", "op_id": "later"})["success"] is True


def test_frames_that_do_not_parse_count_against_the_rate(strict):
    """Each bad frame costs an error reply: a flood of them is limited like pings."""
    agent = strict.create_agent("garbage-agent")
    ws = strict.ws()
    assert ws.request({"action": "login", "data": {"token": agent["token"]}})["success"]
    time.sleep(1.1)  # a full bucket again
    replies = [ws.request("not json") for _ in range(8)]
    assert [r["message"] for r in replies[:5]] == ["Invalid JSON"] * 5
    assert replies[5]["message"] == "Rate limit exceeded: too many frames, slow down"
    time.sleep(1.1)
    assert ws.request({"action": "ping", "op_id": "later"})["success"] is True


def test_visitor_message_rate_limit(strict):
    agent = strict.create_agent("limits-agent")
    ws = strict.ws()
    sent = []
    for n in range(4):
        time.sleep(0.25)  # stay under the frame rate; only the visitor limit applies
        sent.append(
            ws.request(
                {
                    "action": "kefu_message_visitor_send",
                    "data": {
                        "visitor_id": "noisy-visitor",
                        "kefu_id": agent["kefu_id"],
                        "content": f"{n}",
                    },
                }
            )
        )
    assert [r["success"] for r in sent] == [True, True, False, False]
    assert sent[2]["message"] == "Too many messages from this visitor; wait a moment"
    assert strict.sql("SELECT COUNT(*) FROM message") == [(2,)]


def test_a_visitors_resend_past_its_rate_gets_the_first_reply(strict):
    """A resend (a reconnect's) of a stored message was refused by the rate limit; it is
    the same message, so it is answered as it was the first time. A new one is not."""
    agent = strict.create_agent("resend-agent")
    ws = strict.ws()

    def send(content, op_id):
        time.sleep(0.25)  # under the frame rate
        data = {"visitor_id": "resending", "kefu_id": agent["kefu_id"], "content": content}
        return ws.request({"action": "kefu_message_visitor_send", "data": data, "op_id": op_id})

    first, second = send("one", "r1"), send("two", "r2")  # the whole budget
    again = send("one", "r1")
    assert again == {**first, "op_id": "r1"} and again["success"]
    too_many = "Too many messages from this visitor; wait a moment"
    assert send("three", "r3")["message"] == too_many
    assert send("other text", "r1")["message"] == too_many
    assert second["success"] and strict.sql("SELECT COUNT(*) FROM message") == [(2,)]


def test_refused_visitor_messages_spend_no_budget(strict):
    """A message refused for what it is (too long, no visitor id) is not counted against
    the visitor's budget: ten of them used to leave no room for the next good one."""
    agent = strict.create_agent("patient-agent")
    ws = strict.ws()
    bind = {"action": "kefu_message_visitor_bind_fd", "data": {"bind_key": "careful-visitor"}}
    assert ws.request(bind)["success"]  # a bound socket outlives the sign-in deadline

    def send(content, visitor_id="careful-visitor"):
        time.sleep(0.25)  # under the frame rate
        data = {"visitor_id": visitor_id, "kefu_id": agent["kefu_id"], "content": content}
        return ws.request({"action": "kefu_message_visitor_send", "data": data})

    for _ in range(3):
        assert send("x" * 5001)["message"] == "content is too long (max 5000 characters)"
    assert send("hello", visitor_id=" ")["message"] == "visitor_id is required"
    assert [send(text)["success"] for text in ("one", "two")] == [True, True]


@pytest.mark.parametrize("proxy_count", [0, 1])
def test_new_visitor_ids_per_address_are_limited(make_server, proxy_count):
    """A script making up a visitor id per message opened a conversation with the agent
    for each. Per client address only so many new ids a minute; an id already used from
    there costs nothing again, and other addresses (behind the proxy) count apart."""
    server = make_server(new_visitors_per_address_per_minute=3, proxy_count=proxy_count)
    agent = server.create_agent("flooded-agent")
    script = server.ws(header={"X-Forwarded-For": "203.0.113.9"})

    def send(ws, visitor_id):
        data = {"visitor_id": visitor_id, "kefu_id": agent["kefu_id"], "content": "hi"}
        return ws.request({"action": "kefu_message_visitor_send", "data": data})

    assert [send(script, f"made-up-{n}")["success"] for n in range(3)] == [True] * 3
    assert send(script, "made-up-3") == {
        "success": False,
        "message": "Too many new visitors from this address; wait a moment",
        "op_id": None,
    }
    assert send(script, "made-up-0")["success"] is True  # an id it has used
    visitor = server.ws(header={"X-Forwarded-For": "198.51.100.4"})
    assert send(visitor, "a-real-visitor")["success"] is bool(proxy_count)
    opened = server.sql("SELECT COUNT(*) FROM conversation")[0][0]
    assert opened == (4 if proxy_count else 3)  # nothing for the refused ids
    assert server.sql("SELECT COUNT(*) FROM message") == [(opened + 1,)]


def test_binding_made_up_visitor_ids_is_limited_per_address(make_server):
    """A bound socket has no sign-in deadline: binding a made-up id per socket held any
    number of anonymous sockets for ever. A new id costs what a new visitor's first
    message does; the visitor then sends with it at no further cost."""
    server = make_server(new_visitors_per_address_per_minute=2, ws_login_timeout_seconds=1)
    agent = server.create_agent("bound-agent")
    sockets = [server.ws() for _ in range(3)]
    binds = [
        ws.request({"action": "kefu_message_visitor_bind_fd", "data": {"bind_key": f"bound-{n}"}})
        for n, ws in enumerate(sockets)
    ]
    assert [bind["success"] for bind in binds] == [True, True, False]
    assert binds[2]["message"] == "Too many new visitors from this address; wait a moment"
    assert_closed_within(sockets[2], 10)  # still anonymous: closed at the deadline
    data = {"visitor_id": "bound-0", "kefu_id": agent["kefu_id"], "content": "hi"}
    sent = sockets[0].request({"action": "kefu_message_visitor_send", "data": data})
    assert sent["success"], sent
    assert sockets[1].request({"action": "ping"})["success"] is True


def test_connections_per_identity_are_capped(strict):
    token = Server.host_jwt("many-tabs")
    tabs = [strict.ws() for _ in range(3)]
    replies = [tab.request({"action": "login", "data": {"token": token}}) for tab in tabs]
    assert [r["success"] for r in replies] == [True, True, False]
    assert replies[2]["message"] == "Too many connections for this identity (max 2)"
    tabs[0].close()
    time.sleep(0.3)
    assert tabs[2].request({"action": "login", "data": {"token": token}})["success"] is True


def test_sockets_that_never_sign_in_are_closed(strict):
    idle = strict.ws()
    signed = strict.ws()
    signed.request({"action": "login", "data": {"token": Server.host_jwt("punctual")}})
    assert_closed_within(idle, 10)
    assert signed.request({"action": "ping"})["success"] is True


def test_disabling_or_a_new_password_closes_sockets(make_server):
    server = make_server(revalidate_seconds=0.3)
    agent = server.create_agent("revoked-agent", password="first-password")
    user = server.create_user("revoked-user")
    agent_ws, user_ws, bystander = server.ws(), server.ws(), server.ws()
    agent_ws.request({"action": "login", "data": {"token": agent["token"]}})
    user_ws.request({"action": "login", "data": {"token": user["token"]}})
    bystander.request({"action": "login", "data": {"token": Server.host_jwt("bystander")}})

    changed = server.cli("kefu", "set-password", "revoked-agent", "--password", "second-pass")
    assert changed == {"id": agent["id"], "username": "revoked-agent", "is_active": True}
    server.cli("kefu", "disable", "revoked-user")
    for ws in (agent_ws, user_ws):
        assert_closed_within(ws, 10)
    assert bystander.request({"action": "ping"})["success"] is True
    # The agent signs in again with its token; the disabled user cannot.
    again = server.ws()
    assert again.request({"action": "login", "data": {"token": agent["token"]}})["success"]
    refused = server.ws().request({"action": "login", "data": {"token": user["token"]}})
    assert refused["message"] == "Account is disabled"  # as a host JWT's is told
    time.sleep(0.8)
    assert again.request({"action": "ping"})["success"] is True  # not closed again


def test_request_bodies_are_capped_except_uploads(make_server, tmp_path):
    """A body over 1 MiB is refused before it is read (it was spooled to disk whole, then
    refused by the CSRF check); an upload keeps its own, larger cap."""
    server = make_server(upload_dir=str(tmp_path / "up"))
    big = {"file": ("a.txt", b"x" * (2 * 1024 * 1024), "text/plain")}
    refused = requests.post(server.url("/agent/sign-in"), files=big, timeout=10)
    assert refused.status_code == 413
    agent = server.create_agent("big-sender")
    photo = b"\x89PNG\r\n\x1a\n" + b"\0" * (3 * 1024 * 1024)
    uploaded = requests.post(
        server.url("/api/kefu/upload"),
        headers={"Authorization": f"Bearer {agent['token']}"},
        files={"file": ("photo.png", photo, "image/png")},
        timeout=10,
    )
    assert uploaded.status_code == 200, uploaded.text
    assert uploaded.json()["data"]["size"] == len(photo)
    assert server.get("/healthz").ok


def test_messages_sent_from_a_page_are_rate_limited(strict):
    """A page's sends are form posts, not frames: they had no limit at all (a script
    holding a page session stored hundreds a second). They have a socket's rate now, per
    person, and the refusal says so; nothing refused is stored."""
    from tests.test_pages_security import user_session

    strict.create_agent("paced")
    chat = user_session(strict, "paced-user")
    answers = [
        chat.post(strict.url("/chat/send"), data={"content": f"m{n}", "csrf_token": chat.csrf})
        for n in range(8)
    ]
    refused = [a for a in answers if a.status_code == 429]
    assert refused and "Too many messages at once; slow down" in refused[0].text
    stored = strict.sql("SELECT COUNT(*) FROM message")[0][0]
    assert stored == len(answers) - len(refused) and stored >= 5  # the burst went through
    time.sleep(0.5)  # the bucket refills
    again = chat.post(strict.url("/chat/send"), data={"content": "later", "csrf_token": chat.csrf})
    assert again.status_code in (200, 204)
