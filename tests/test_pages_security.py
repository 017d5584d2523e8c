"""The pages' defences, checked over HTTP against a live server: CSRF, who may see what,
the live channel's origin check, and the upload limits and serving headers."""

import contextlib
import json
import os
import re
import time

import pytest
import requests
import websocket

from tests.support import Server, retire

PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360f8cfc0f01f0005000201e2a0c5b40000000049454e44ae426082"
)


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("pages-sec")
    server = Server(
        workdir,
        upload_dir=str(workdir / "up"),
        upload_max_bytes=4000,
        upload_visitor_max_bytes=1000,
    ).start()
    yield server
    retire(server)


@pytest.fixture(scope="module")
def agents(srv):
    return srv.create_agent("ann", password="ann-pass-1"), srv.create_agent(
        "ben", password="ben-pass-1"
    )


def csrf_of(html: str) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)


def agent_session(srv, username, password):
    s = requests.Session()
    token = csrf_of(s.get(srv.url("/agent/sign-in")).text)
    r = s.post(
        srv.url("/agent/sign-in"),
        data={"username": username, "password": password, "csrf_token": token},
        allow_redirects=False,
    )
    assert r.status_code == 302, r.text
    s.csrf = csrf_of(s.get(srv.url("/agent")).text)
    return s


def user_session(srv, sub):
    s = requests.Session()
    r = s.get(srv.url("/chat?token=" + srv.host_jwt(sub)), allow_redirects=False)
    assert r.status_code == 302 and r.headers["Location"].endswith("/chat")
    s.csrf = csrf_of(s.get(srv.url("/chat")).text)
    return s


def test_sign_in_needs_csrf_and_right_password(srv, agents):
    s = requests.Session()
    form = {"username": "ann", "password": "ann-pass-1"}
    assert s.post(srv.url("/agent/sign-in"), data=form).status_code == 403
    token = csrf_of(s.get(srv.url("/agent/sign-in")).text)
    # A token that is not ASCII is as wrong as any other (it was a 500: compare_digest
    # refuses such str), in the form or the header.
    for odd in (
        {"data": {**form, "csrf_token": "é"}},
        {"data": form, "headers": {"X-CSRF-Token": "\xe9"}},
    ):
        refused = s.post(srv.url("/agent/sign-in"), **odd)
        assert refused.status_code == 403 and "CSRF token missing or invalid" in refused.text
    bad = s.post(srv.url("/agent/sign-in"), data={**form, "password": "x", "csrf_token": token})
    assert bad.status_code == 401 and "Wrong username or password" in bad.text
    good = s.post(
        srv.url("/agent/sign-in"),
        data={**form, "csrf_token": token, "next": "//evil.example/"},
        allow_redirects=False,
    )
    assert good.status_code == 302
    assert good.headers["Location"] == "/agent"  # no open redirect
    cookie = good.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie


@pytest.mark.parametrize(
    "target",
    [
        "//evil.example/",
        "/\\evil.example",
        "/\t/evil.example",  # browsers drop the tab: "//evil.example"
        "/\n/evil.example",
        "https://evil.example/",
        "javascript:alert(1)",
        " //evil.example",
    ],
)
def test_sign_in_goes_back_to_a_local_path_only(srv, agents, target):
    def signed_in_to(next_path):
        s = requests.Session()
        token = csrf_of(s.get(srv.url("/agent/sign-in")).text)
        form = {"username": "ann", "password": "ann-pass-1", "csrf_token": token}
        r = s.post(
            srv.url("/agent/sign-in"), data={**form, "next": next_path}, allow_redirects=False
        )
        assert r.status_code == 302
        return r.headers["Location"]

    assert signed_in_to(target) == "/agent"
    assert signed_in_to("/agent/c/7?x=1") == "/agent/c/7?x=1"


def test_agent_pages_refuse_others(srv, agents):
    anonymous = requests.Session()
    r = anonymous.get(srv.url("/agent"), allow_redirects=False)
    assert r.status_code == 302 and "/agent/sign-in" in r.headers["Location"]
    head = anonymous.head(srv.url("/agent"))  # a link checker: as GET, not 403
    assert head.status_code == 302 and "/agent/sign-in" in head.headers["Location"]
    ann = agent_session(srv, "ann", "ann-pass-1")
    assert ann.head(srv.url("/agent")).status_code == 200  # no CSRF token asked of it
    # The server's root leads there too.
    r = anonymous.get(srv.url("/"), allow_redirects=False)
    assert r.status_code == 302 and r.headers["Location"].endswith("/agent")
    assert anonymous.get(srv.url("/")).url.startswith(srv.url("/agent/sign-in"))
    assert anonymous.post(srv.url("/agent/ready"), data={"accepting": "0"}).status_code == 403
    user = user_session(srv, "cust-1")
    assert user.get(srv.url("/agent"), allow_redirects=False).status_code == 302
    assert (
        user.post(
            srv.url("/agent/ready"), data={"accepting": "0", "csrf_token": user.csrf}
        ).status_code
        == 403
    )
    # An agent's token does not open the customer page.
    agent_token = agents[0]["token"]
    assert requests.get(srv.url("/chat?token=" + agent_token)).status_code == 403
    assert requests.get(srv.url("/chat")).status_code == 403


def test_forms_need_the_session_csrf_token(srv, agents):
    ann = agent_session(srv, "ann", "ann-pass-1")
    assert ann.post(srv.url("/agent/ready"), data={"accepting": "0"}).status_code == 403
    other = user_session(srv, "cust-2")  # a real token, but another session's
    r = ann.post(srv.url("/agent/ready"), data={"accepting": "0", "csrf_token": other.csrf})
    assert r.status_code == 403
    header = {"X-CSRF-Token": ann.csrf}
    r = ann.post(srv.url("/agent/ready"), data={"accepting": "1"}, headers=header)
    assert r.status_code == 200 and "Ready" in r.text
    assert ann.post(srv.url("/agent/sign-out")).status_code == 403
    assert ann.post(srv.url("/chat/send"), data={"content": "hi"}).status_code == 403


def test_a_customer_signing_in_beside_an_agent_keeps_the_agents_csrf_token(srv, agents):
    """A link to /chat?token=… followed in the agent's browser signs a customer in there;
    the dashboard already open must keep working (its token was made at the agent's own
    sign-in), while an agent signing in always gets a new token."""
    ann = agent_session(srv, "ann", "ann-pass-1")
    before = ann.csrf
    r = ann.get(srv.url("/chat?token=" + srv.host_jwt("linked-in")), allow_redirects=False)
    assert r.status_code == 302
    r = ann.post(srv.url("/agent/ready"), data={"accepting": "1", "csrf_token": before})
    assert r.status_code == 200 and "Ready" in r.text
    customer = user_session(srv, "then-an-agent")
    token = csrf_of(customer.get(srv.url("/agent/sign-in")).text)
    form = {"username": "ben", "password": "ben-pass-1", "csrf_token": token}
    signed = customer.post(srv.url("/agent/sign-in"), data=form, allow_redirects=False)
    assert signed.status_code == 302
    assert csrf_of(customer.get(srv.url("/agent")).text) != token


def test_a_chat_link_signs_in_only_as_a_page(srv, agents):
    """An image message naming this server by its full address (allowed: kefu does not
    know its own names) must not sign the agent's browser in as the customer."""
    ann = agent_session(srv, "ann", "ann-pass-1")
    link = srv.url("/chat?token=" + srv.host_jwt("image-trick"))
    as_image = ann.get(link, headers={"Sec-Fetch-Dest": "image"}, allow_redirects=False)
    assert as_image.status_code == 403
    assert ann.get(srv.url("/chat")).status_code == 403  # nobody signed in there
    as_page = ann.get(link, headers={"Sec-Fetch-Dest": "document"}, allow_redirects=False)
    assert as_page.status_code == 302


def live_socket(srv, session, role="agent"):
    cookie = "; ".join(f"{k}={v}" for k, v in session.cookies.items())
    return websocket.create_connection(
        f"ws://{srv.base}/pages/ws?as={role}", cookie=cookie, origin=f"http://{srv.base}"
    )


def close_code(ws, timeout: float = 5.0) -> int | None:
    """The code of the close frame ``ws`` gets next (frames before it are skipped)."""
    ws.settimeout(timeout)
    with contextlib.suppress(websocket.WebSocketConnectionClosedException):
        while True:
            opcode, payload = ws.recv_data(control_frame=True)
            if opcode == websocket.ABNF.OPCODE_CLOSE:
                return int.from_bytes(payload[:2], "big")
    return None


def still_open(ws, timeout: float = 5.0) -> bool:
    """True if ``ws`` answers a ping (frames before the pong are skipped)."""
    ws.settimeout(timeout)
    ws.ping(b"alive?")
    while True:
        opcode, payload = ws.recv_data(control_frame=True)
        if opcode == websocket.ABNF.OPCODE_PONG:
            return payload == b"alive?"
        if opcode == websocket.ABNF.OPCODE_CLOSE:
            return False


def agent_online(srv, session):
    """An agent's dashboard channel, signed in: its handler reads the socket, and so
    answers a ping, only once sign-in is done (on PostgreSQL and MySQL that yields to
    count the socket for other workers). Until then a customer arriving finds no agent
    online and waits in the queue."""
    ws = live_socket(srv, session)
    assert still_open(ws)
    return ws


def test_a_customer_signs_out_of_the_chat_page(srv, agents):
    """A shared computer: the session ends and the person's page sockets close; the host
    application's own connection (ds/kefu, same person) stays."""
    user = user_session(srv, "shared-pc")
    page = live_socket(srv, user, role="user")
    app = srv.ws()
    assert app.request({"action": "login", "data": {"token": srv.host_jwt("shared-pc")}})["success"]
    assert user.post(srv.url("/chat/sign-out")).status_code == 403  # no CSRF token
    r = user.post(srv.url("/chat/sign-out"), data={"csrf_token": user.csrf})
    assert r.status_code == 200 and "You have signed out" in r.text
    assert user.get(srv.url("/chat")).status_code == 403
    assert close_code(page) == 1008
    assert app.request({"action": "ping"})["success"] is True
    app.close()


def test_agent_sees_only_own_conversations(srv, agents):
    ann, ben = agent_session(srv, "ann", "ann-pass-1"), agent_session(srv, "ben", "ben-pass-1")
    online = agent_online(srv, ann)  # ann's dashboard is open: she takes the next user
    user = user_session(srv, "cust-3")
    r = user.post(srv.url("/chat/send"), data={"content": "hello", "csrf_token": user.csrf})
    assert r.status_code in (200, 204)
    conv_id = int(re.search(r'id="thread-(\d+)"', user.get(srv.url("/chat")).text).group(1))
    assert ann.get(srv.url(f"/agent/c/{conv_id}")).status_code == 200
    assert ben.get(srv.url(f"/agent/c/{conv_id}")).status_code == 404
    headers = {"X-CSRF-Token": ben.csrf}
    sent = ben.post(srv.url(f"/agent/c/{conv_id}/send"), data={"content": "x"}, headers=headers)
    assert sent.status_code == 404
    assert ben.post(srv.url(f"/agent/c/{conv_id}/end"), headers=headers).status_code == 404
    other = user_session(srv, "cust-5")
    older = other.get(srv.url(f"/chat/older?conversation_id={conv_id}"))
    assert older.status_code == 404
    online.close()


def test_live_channel_checks_origin_and_session(srv, agents):
    ann = agent_session(srv, "ann", "ann-pass-1")
    cookie = "; ".join(f"{k}={v}" for k, v in ann.cookies.items())
    url = f"ws://{srv.base}/pages/ws?as=agent"
    with pytest.raises(websocket.WebSocketBadStatusException) as refused:
        websocket.create_connection(url, cookie=cookie, origin="http://evil.example")
    assert refused.value.status_code == 403
    with pytest.raises(websocket.WebSocketBadStatusException):
        websocket.create_connection(url, origin=f"http://{srv.base}")  # no session
    ok = websocket.create_connection(url, cookie=cookie, origin=f"http://{srv.base}")
    ok.send('{"type": "hello"}')
    assert 'id="open-list"' in ok.recv()
    ok.close()


def test_pages_send_security_headers(srv, agents):
    ann = agent_session(srv, "ann", "ann-pass-1")
    page = ann.get(srv.url("/agent"))
    assert "script-src 'self'" in page.headers["Content-Security-Policy"]
    assert "frame-ancestors 'self'" in page.headers["Content-Security-Policy"]
    kefu_id = agents[0]["kefu_id"]
    widget = requests.get(srv.url(f"/visitor?kefu_id={kefu_id}"))
    assert "frame-ancestors *" in widget.headers["Content-Security-Policy"]
    assert "X-Frame-Options" not in widget.headers
    # Private pages and API answers are kept by no cache; the vendored scripts and
    # styles may be.
    chat = user_session(srv, "cache-check")
    api = srv.get("/api/kefu/message/getConversation", srv.host_jwt("cache-check"))
    for response in (page, chat.get(srv.url("/chat")), api):
        assert response.status_code == 200, response.url
        assert response.headers["Cache-Control"] == "no-store", response.url
    assert "no-store" not in requests.get(srv.url("/static/pages.js")).headers.get(
        "Cache-Control", ""
    )


def test_a_form_that_is_not_utf8_gets_400_and_stores_nothing(srv):
    """Werkzeug kept undecodable bytes as percent text: ``content=%FF`` was stored as
    the message "%FF". Percent-escaped or raw, it is a 400 now, and nothing is stored."""
    user = user_session(srv, "bad-bytes")
    form = "csrf_token=" + user.csrf + "&content="
    kind = {"Content-Type": "application/x-www-form-urlencoded"}
    for body in (form.encode() + b"%FF%FE", form.encode() + b"caf\xe9"):
        r = user.post(srv.url("/chat/send"), data=body, headers=kind)
        assert r.status_code == 400, r.text[:300]
        assert "Form data is not valid UTF-8" in r.text
    api = srv.get("/api/kefu/message/getConversation", srv.host_jwt("bad-bytes")).json()
    cid = api["data"]["id"]
    stored = srv.get(f"/api/kefu/message/list?conversation_id={cid}", srv.host_jwt("bad-bytes"))
    assert stored.json()["data"] == []
    fine = form.encode() + b"%E5%AD%97&conversation_id=" + str(cid).encode()
    sent = user.post(srv.url("/chat/send"), data=fine, headers=kind)
    assert sent.status_code == 200 and "字" in sent.text
    # An unknown address or method keeps its own answer.
    assert requests.post(srv.url("/no/such/page"), data=b"a=%FF", headers=kind).status_code == 404
    assert requests.put(srv.url("/chat"), data=b"a=%FF", headers=kind).status_code == 405


def upload(srv, files, **kw):
    return requests.post(srv.url("/api/kefu/upload"), files=files, timeout=10, **kw)


def test_upload_limits_and_types(srv, agents):
    bearer = {"Authorization": "Bearer " + agents[0]["token"]}
    assert upload(srv, {"file": ("a.png", PNG, "image/png")}).status_code == 401
    ok = upload(srv, {"file": ("a.png", PNG, "image/png")}, headers=bearer)
    assert ok.status_code == 200 and ok.json()["data"]["message_type"] == 2
    too_big = upload(srv, {"file": ("a.txt", b"x" * 5000, "text/plain")}, headers=bearer)
    assert too_big.json() == {"code": 413, "message": "File is too large (max 4000 bytes)"}
    huge = upload(srv, {"file": ("h.txt", b"x" * 200_000, "text/plain")}, headers=bearer)
    assert huge.status_code == 413  # refused before the body is parsed
    svg = b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>'
    assert upload(srv, {"file": ("a.svg", svg, "image/svg+xml")}, headers=bearer).status_code == 422
    html_as_png = upload(srv, {"file": ("a.png", b"<html><script>", "image/png")}, headers=bearer)
    assert html_as_png.status_code == 422
    assert upload(srv, {"file": ("a.html", b"<p>", "text/html")}, headers=bearer).status_code == 422
    # A page session must send its CSRF token.
    user = user_session(srv, "cust-4")
    files = {"file": ("a.png", PNG, "image/png")}
    assert user.post(srv.url("/api/kefu/upload"), files=files).status_code == 403
    r = user.post(srv.url("/api/kefu/upload"), files=files, headers={"X-CSRF-Token": user.csrf})
    assert r.status_code == 200
    # Visitors: images only, and a smaller limit.
    visitor = {"visitor_id": "v_" + "a" * 32}
    assert upload(srv, files, data=visitor).status_code == 200
    pdf = {"file": ("a.pdf", b"%PDF-1.4", "application/pdf")}
    assert upload(srv, pdf, data=visitor).status_code == 403
    big_png = {"file": ("b.png", PNG + b"\0" * 1200, "image/png")}
    assert upload(srv, big_png, data=visitor).status_code == 413


def test_an_empty_file_is_refused_and_nothing_is_stored(srv, agents):
    """A file of no bytes was stored and could be sent as a message's attachment."""
    bearer = {"Authorization": "Bearer " + agents[0]["token"]}
    folder = srv.env["KEFU_UPLOAD_DIR"]
    before = sorted(os.listdir(folder)) if os.path.isdir(folder) else []
    for name, kind in (
        ("a.txt", "text/plain"),
        ("a.pdf", "application/pdf"),
        ("a.png", "image/png"),
    ):
        empty = upload(srv, {"file": (name, b"", kind)}, headers=bearer)
        assert empty.status_code == 422, name
        assert empty.json() == {"code": 422, "message": "The file is empty"}, name
    assert (sorted(os.listdir(folder)) if os.path.isdir(folder) else []) == before


def test_uploads_are_served_inert(srv, agents):
    bearer = {"Authorization": "Bearer " + agents[0]["token"]}
    image = upload(srv, {"file": ("a.png", PNG, "image/png")}, headers=bearer).json()["data"]
    text = upload(srv, {"file": ("n.txt", b"<script>1</script>", "text/plain")}, headers=bearer)
    text = text.json()["data"]
    assert text["message_type"] == 3 and text["url"].endswith(".txt")
    got = requests.get(srv.url(image["url"]))
    assert got.headers["Content-Type"] == "image/png"
    assert "attachment" not in got.headers.get("Content-Disposition", "")
    got = requests.get(srv.url(text["url"]))
    assert got.headers["Content-Type"] == "application/octet-stream"
    assert got.headers["Content-Disposition"].startswith("attachment")
    for r in (got, requests.get(srv.url(image["url"]))):
        assert r.headers["X-Content-Type-Options"] == "nosniff"
        assert "sandbox" in r.headers["Content-Security-Policy"]
    assert requests.get(srv.url("/uploads/..%2fkefu.db")).status_code == 404
    assert requests.get(srv.url("/uploads/nope.png")).status_code == 404


def test_password_change_and_disabling_end_page_sessions(srv, agents):
    srv.create_agent("cleo", password="cleo-pass-1")
    cleo = agent_session(srv, "cleo", "cleo-pass-1")
    assert cleo.get(srv.url("/agent"), allow_redirects=False).status_code == 200
    srv.cli("kefu", "set-password", "cleo", "--password", "cleo-pass-2")
    assert cleo.get(srv.url("/agent"), allow_redirects=False).status_code == 302
    cleo = agent_session(srv, "cleo", "cleo-pass-2")
    assert cleo.get(srv.url("/agent"), allow_redirects=False).status_code == 200
    srv.cli("kefu", "disable", "cleo")
    assert cleo.get(srv.url("/agent"), allow_redirects=False).status_code == 302


def test_a_chat_page_learns_on_hello_of_a_conversation_started_elsewhere(srv, agents):
    """A conversation started while the page's socket was down (in another tab, or over
    ds/kefu) was unknown to the page until its next push: the hello's reply now carries
    the header of the user's open conversation, whose data-conv makes the page load it."""
    user = user_session(srv, "cust-elsewhere")
    token = srv.host_jwt("cust-elsewhere")
    conv = srv.get("/api/kefu/message/getConversation", token).json()["data"]
    time.sleep(0.5)  # the queue's update for that arrival has gone out: no push is due
    page = live_socket(srv, user, role="user")
    page.settimeout(5)
    try:
        page.send(json.dumps({"type": "hello"}))  # what a page showing no conversation says
        reply = page.recv()
    finally:
        page.close()
    assert 'id="chat-head"' in reply and f'data-conv="{conv["id"]}"' in reply


def test_refusals_on_the_pages_are_shown_in_the_layout_with_the_way_back(srv, agents):
    """A bad address, a stale form or the wrong kind of account: the pages' error page
    (it was Werkzeug's bare one), with the status kept; htmx gets the one-line toast.
    Outside the pages the way back is the server's own address; a plain GET of a
    WebSocket endpoint says what the address is for (Werkzeug blamed the browser)."""
    ann = agent_session(srv, "ann", "ann-pass-1")
    stranger = requests.Session()
    agent_token = srv.create_agent("page-refusals")["token"]
    for session, method, path, kwargs, status, text, back in (
        (ann, "get", "/agent/c/abc", {}, 404, "Not Found", "/agent"),
        (stranger, "post", "/agent/sign-in", {"data": {"username": "ann"}}, 403, "CSRF", "/agent"),
        (
            stranger,
            "get",
            f"/chat?token={agent_token}",
            {},
            403,
            "Agents use the dashboard",
            "/chat",
        ),
        (ann, "get", "/agent/sign-out", {}, 405, "Method Not Allowed", "/agent"),
        (stranger, "get", "/nope", {}, 404, "Not Found", "/"),
        (stranger, "get", "/ws", {}, 400, "takes WebSocket connections only", "/"),
        (stranger, "get", "/v1/ws/connect/user", {}, 400, "WebSocket connections only", "/"),
    ):
        r = getattr(session, method)(srv.url(path), allow_redirects=False, **kwargs)
        assert r.status_code == status, (path, r.text)
        assert 'class="card error-page"' in r.text and text in r.text, path
        assert f'href="{back}"' in r.text, path
    assert "POST" in ann.get(srv.url("/agent/sign-out")).headers["Allow"]
    icon = stranger.get(srv.url("/favicon.ico"))  # browsers ask for it: no 404 in the log
    assert icon.status_code == 200 and icon.headers["Content-Type"].startswith("image/svg")
    toast = ann.get(srv.url("/agent/c/abc"), headers={"HX-Request": "true"})
    assert toast.status_code == 404 and "error-page" not in toast.text
    api = requests.get(srv.url("/api/kefu/nothing"), timeout=10)
    assert api.json()["code"] == 404  # the API keeps its envelope


def test_a_head_request_reads_nothing(srv, agents):
    """Opening a conversation marks its customer's messages read; a HEAD (a link
    checker or a prefetch holding the cookie) did too, once HEAD stopped being a 403."""
    people = {"ann": agent_session(srv, "ann", "ann-pass-1")}
    people["ben"] = agent_session(srv, "ben", "ben-pass-1")
    online = [agent_online(srv, s) for s in people.values()]
    customer = user_session(srv, "head-reader")
    sent = customer.post(srv.url("/chat/send"), data={"content": "hi", "csrf_token": customer.csrf})
    assert sent.status_code in (200, 204)
    conv_id, kefu_id = srv.sql("SELECT id, kefu_id FROM conversation ORDER BY id DESC")[0]
    name = next(a["username"] for a in agents if a["kefu_id"] == kefu_id)
    unread = "SELECT kefu_unread_count FROM conversation WHERE id = ?"
    assert people[name].head(srv.url(f"/agent/c/{conv_id}")).status_code == 200
    assert srv.sql(unread, conv_id) == [(1,)]
    assert people[name].get(srv.url(f"/agent/c/{conv_id}")).status_code == 200
    assert srv.sql(unread, conv_id) == [(0,)]
    for ws in online:
        ws.close()


def test_a_page_opened_for_someone_else_sends_nothing_as_the_new_person(srv, agents):
    """A customer signing in where an agent is keeps the session's CSRF token (the
    dashboard's forms must go on working), so an open /chat tab of the customer before
    could post as the new one. The pages name whose page they are; another's is refused."""
    dave = user_session(srv, "page-owner")
    mine = re.search(r'data-person="([^"]+)"', dave.get(srv.url("/chat")).text).group(1)
    before = srv.sql("SELECT COUNT(*) FROM message")[0][0]
    form = {"content": "typed for someone else", "csrf_token": dave.csrf}
    stale = dave.post(srv.url("/chat/send"), data=form, headers={"X-Kefu-Person": "not-" + mine})
    assert stale.status_code == 409 and "opened for another account" in stale.text
    assert srv.sql("SELECT COUNT(*) FROM message")[0][0] == before
    own = dave.post(srv.url("/chat/send"), data=form, headers={"X-Kefu-Person": mine})
    assert own.status_code in (200, 204)
    assert srv.sql("SELECT COUNT(*) FROM message")[0][0] == before + 1
