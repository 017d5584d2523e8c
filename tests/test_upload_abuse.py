"""Abuse through files: a message's local ``file_url`` must be one of our uploads, and
anonymous uploads are limited and never kept by a shared cache.

A customer's image of ``/chat?token=<own token>`` was shown as ``<img>`` on the agent's
dashboard; the agent's browser fetched it with the agent's cookies, was signed in as the
customer, and its CSRF token was replaced, so every send from the dashboard got a 403.
Visitors could upload 60 × 2 MB in a second from one address with new visitor ids.
"""

import os
import socket

import pytest
import requests
from markupsafe import escape

from kefu.db import make_database
from kefu.web.render import safe_url
from tests.test_pages_security import PNG, agent_session, user_session
from tests.test_waiter_support import agent as waiter_agent
from tests.test_waiter_support import user, waiter

REFUSED = "file_url must be an http(s) URL or an upload's path (/uploads/<name>)"
TOO_MANY = {"code": 429, "message": "Too many uploads from this address; wait a moment"}
# Local paths that are no upload: each GET could act with the viewer's cookies, or is
# not a path the upload API hands out.
NOT_UPLOADS = [
    "/chat?token=TOKEN",
    "/agent/sign-out",
    "/static/pages.js",
    "/uploads/a.png?x=1",
    "/uploads/../kefu.db",
    "/uploads/",
]


@pytest.fixture(scope="module")
def desk(server):
    """An agent on /ws and a customer on /ws with a conversation between them."""
    agent = server.create_agent("abuse-agent", password="abuse-pass-1")
    agent_ws = server.ws()
    agent_ws.request({"action": "login", "data": {"token": agent["token"]}})
    token = server.host_jwt("abuse-customer")
    cid = server.get("/api/kefu/message/getConversation", token).json()["data"]["id"]
    agent_ws.recv()  # kefu_conversation_assigned
    user_ws = server.ws()
    user_ws.request({"action": "login", "data": {"token": token}})
    yield {"agent_ws": agent_ws, "user_ws": user_ws, "token": token, "cid": cid}
    agent_ws.close()
    user_ws.close()


def message_count(server) -> int:
    return server.sql("SELECT count(*) FROM message")[0][0]


def send_file(ws, cid, file_url, op_id, message_type=2, sender_type=None):
    data = {"conversation_id": cid, "content": "", "message_type": message_type}
    data["file_url"] = file_url
    if sender_type:
        data["sender_type"] = sender_type
    return ws.request({"action": "kefu_message_send", "data": data, "op_id": op_id})


def upload_png(server, token) -> str:
    files = {"file": ("a.png", PNG, "image/png")}
    headers = {"Authorization": f"Bearer {token}"}
    r = requests.post(server.url("/api/kefu/upload"), files=files, headers=headers, timeout=10)
    assert r.status_code == 200, r.text
    return r.json()["data"]["url"]


@pytest.mark.parametrize("url", NOT_UPLOADS)
def test_local_file_url_that_is_no_upload_is_refused_on_ws(server, desk, url):
    url = url.replace("TOKEN", desk["token"])
    before = message_count(server)
    for ws, sender, op_id in ((desk["user_ws"], None, "u1"), (desk["agent_ws"], 2, "a1")):
        for message_type in (2, 3):
            reply = send_file(ws, desk["cid"], url, op_id, message_type, sender)
            assert reply == {"success": False, "message": REFUSED, "op_id": op_id}
    assert message_count(server) == before


# Remote URLs no page would show as given (safe_url drops them): refused when sent, so
# what is stored is what is shown.
NOT_URLS = [
    "https://",
    "https://exa mple.com/a.png",
    "https://example.com/a.png\n<script>",
    "https:\\\\evil.example/a.png",
    "http://[::1/a.png",
]


@pytest.mark.parametrize("url", NOT_URLS)
def test_a_remote_url_no_page_would_show_is_refused(server, desk, url):
    before = message_count(server)
    reply = send_file(desk["user_ws"], desk["cid"], url, "odd-url")
    assert reply == {"success": False, "message": REFUSED, "op_id": "odd-url"}
    assert message_count(server) == before


def test_a_url_scheme_in_capitals_is_a_url(server, desk):
    reply = send_file(desk["user_ws"], desk["cid"], "HTTPS://EXAMPLE.COM/A.PNG", "caps")
    assert reply["success"] is True, reply


def test_an_upload_url_is_accepted_and_shown(server, desk):
    url = upload_png(server, desk["token"])
    reply = send_file(desk["user_ws"], desk["cid"], url, "good-upload")
    assert reply["success"] is True, reply
    stored = server.sql("SELECT file_url FROM message WHERE id = ?", reply["data"]["message_id"])
    assert stored == [(url,)]
    # Refused too, beside it (fails before the fix, so this test guards both halves).
    bad = send_file(desk["user_ws"], desk["cid"], "/chat?token=" + desk["token"], "bad")
    assert bad == {"success": False, "message": REFUSED, "op_id": "bad"}
    page = agent_session(server, "abuse-agent", "abuse-pass-1").get(
        server.url(f"/agent/c/{desk['cid']}")
    )
    assert f'<img src="{url}"' in page.text


def test_pages_refuse_a_local_file_url_that_is_no_upload(server, desk):
    """The pages' forms reach the same check (a precise flash message, HTTP 422)."""
    bad = "/chat?token=" + desk["token"]
    before = message_count(server)
    chat = user_session(server, "abuse-customer")
    form = {"content": "", "message_type": "2", "file_url": bad, "csrf_token": chat.csrf}
    r = chat.post(server.url("/chat/send"), data=form)
    assert r.status_code == 422 and str(escape(REFUSED)) in r.text
    ann = agent_session(server, "abuse-agent", "abuse-pass-1")
    form = {"content": "", "message_type": "2", "file_url": bad, "csrf_token": ann.csrf}
    r = ann.post(server.url(f"/agent/c/{desk['cid']}/send"), data=form)
    assert r.status_code == 422 and str(escape(REFUSED)) in r.text
    assert message_count(server) == before


def test_waiter_refuses_a_local_image_that_is_no_upload(server):
    w = waiter(server, waiter_agent(server))
    w.request("ready")
    u = user(server)
    assert u.request("connect")["type"] == "connect_success"
    w.expect("new_connection")
    before = message_count(server)
    got = u.request("message_image", {"image": "/agent/sign-out"}, op_id="img")
    refused = {"message": REFUSED.replace("file_url", "image")}  # the protocol's field
    assert got["type"] == "error" and got["payload"] == refused
    got = w.request("message_image", {"image": "/chat?token=x"}, op_id="img2", to=u.uuid)
    assert got["type"] == "error" and got["payload"] == refused
    assert message_count(server) == before


def write_sql(server, query: str, *params) -> None:
    """Change a stored row behind the services' back (a row stored before the fix)."""
    db = make_database(server.env["KEFU_DATABASE_URL"], pool_size=1)
    try:
        with db.atomic():
            db.execute_sql(query.replace("?", db.param), params)
    finally:
        db.close()  # back to the pool, so that close_all closes it now
        db.close_all()


def test_an_old_row_with_a_local_non_upload_url_is_not_rendered(server, desk):
    url = upload_png(server, desk["token"])
    reply = send_file(desk["user_ws"], desk["cid"], url, "old-row")
    assert reply["success"] is True, reply
    bad = "/chat?token=" + desk["token"]
    write_sql(
        server, "UPDATE message SET file_url = ? WHERE id = ?", bad, reply["data"]["message_id"]
    )
    pages = (
        agent_session(server, "abuse-agent", "abuse-pass-1").get(
            server.url(f"/agent/c/{desk['cid']}")
        ),
        user_session(server, "abuse-customer").get(server.url("/chat")),
    )
    for page in pages:
        assert page.status_code == 200
        assert "/chat?token=" not in page.text
        assert "attachment hidden: unsafe link" in page.text


@pytest.mark.ignores_test_database
@pytest.mark.parametrize("url", [*NOT_UPLOADS, "/uploads/a.png/", "/uploads/%2e%2e"])
def test_safe_url_passes_no_local_path_but_an_upload(url):
    assert safe_url(url) is None
    assert safe_url("/uploads/Ab-_9.png") == "/uploads/Ab-_9.png"


def post_upload(srv, address=None, **kw):
    headers = kw.pop("headers", {})
    if address:
        headers["X-Forwarded-For"] = address
    files = {"file": ("a.png", PNG, "image/png")}
    return requests.post(
        srv.url("/api/kefu/upload"), files=files, headers=headers, timeout=10, **kw
    )


def test_visitor_uploads_are_limited_per_client_address(make_server, tmp_path):
    folder = tmp_path / "up"
    srv = make_server(
        upload_dir=str(folder), visitor_uploads_per_address_per_minute=3, proxy_count=1
    )
    for i in range(3):  # a new visitor id each time, as the finding's script did
        r = post_upload(srv, "203.0.113.7", data={"visitor_id": f"v-new-{i}"})
        assert r.status_code == 200, r.text
    for visitor_id in ("v-new-3", "v-new-0"):
        r = post_upload(srv, "203.0.113.7", data={"visitor_id": visitor_id})
        assert (r.status_code, r.json()) == (429, TOO_MANY)
    assert len(os.listdir(folder)) == 3  # nothing written for a refused upload
    # Refused before the body is read: a megabyte announced and never sent is not waited
    # for (the form was parsed for its visitor_id first, the file spooled to disk).
    with socket.create_connection(("127.0.0.1", srv.port), timeout=5) as raw:
        raw.sendall(
            b"POST /api/kefu/upload HTTP/1.1\r\nHost: kefu\r\nX-Forwarded-For: 203.0.113.7\r\n"
            b"Content-Type: multipart/form-data; boundary=b\r\nContent-Length: 1000000\r\n\r\n"
        )
        assert raw.recv(4096).startswith(b"HTTP/1.1 429")
    # Another client behind the same proxy has its own budget (KEFU_PROXY_COUNT=1).
    assert post_upload(srv, "203.0.113.8", data={"visitor_id": "v-other"}).status_code == 200
    # Members (a token or a page session) are not limited by it.
    member = {"Authorization": "Bearer " + srv.host_jwt("uploader")}
    assert post_upload(srv, "203.0.113.7", headers=member).status_code == 200
    assert len(os.listdir(folder)) == 5


def test_uploads_are_cached_by_the_browser_only(server, desk):
    url = upload_png(server, desk["token"])
    got = requests.get(server.url(url), timeout=10)
    assert got.status_code == 200 and got.content == PNG
    assert got.headers["Cache-Control"] == "private, max-age=86400"
