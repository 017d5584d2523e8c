"""Odd numbers sent to the pages, checked over HTTP and the live channel against a live
server: an id in a query or form that is no number, or one past 64 bits, gets a 422
that says what is wrong with it (as the API's parameters do), one that names nothing
the 404 of any unknown conversation; a paging bound past 64 bits means what it says;
nothing becomes an internal error or loses what is stored. And page views give their
database connections back."""

import json
import re

import pytest
import requests

from tests.support import Server, retire
from tests.test_pages_security import agent_session, live_socket, user_session

HUGE = [str(2**63), str(2**64), "9" * 30]
NOT_IDS = ["²", "-1", "0", "abc", ""]
NO_ACCESS = "Conversation not found or no permission"


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    server = Server(tmp_path_factory.mktemp("pages-input")).start()
    yield server
    retire(server)


@pytest.fixture(scope="module")
def desk(srv):
    """An agent with her dashboard open, and a customer whose conversation she serves,
    holding two messages."""
    agent = srv.create_agent("dee", password="dee-pass-1")
    dee = agent_session(srv, "dee", "dee-pass-1")
    online = live_socket(srv, dee)
    user = user_session(srv, "odd-1")
    for text in ("first", "second"):
        r = user.post(srv.url("/chat/send"), data={"content": text, "csrf_token": user.csrf})
        assert r.status_code in (200, 204), r.text
    conv_id = int(re.search(r'id="thread-(\d+)"', user.get(srv.url("/chat")).text).group(1))
    yield {"agent": agent, "dee": dee, "user": user, "conv_id": conv_id}
    online.close()


@pytest.fixture
def log_mark(srv):
    """Where the server's log ends before the test."""
    return len(srv.log())


def no_internal_error(srv, desk, log_mark):
    """Nothing the test sent failed in the server, and the messages are as they were."""
    log = srv.log()[log_mark:]
    assert "Exception on" not in log and "pages frame failed" not in log
    rows = srv.sql(
        "SELECT content FROM message WHERE conversation_id = ? ORDER BY seq", desk["conv_id"]
    )
    assert rows == [("first",), ("second",)]


def what_is_wrong(value: str) -> tuple[int, str]:
    """The customer pages' answer to ``conversation_id=value``."""
    if value == "":
        return 422, "conversation_id is required"
    if value in HUGE:
        return 422, "conversation_id is too large (max 9223372036854775807)"
    if value in ("-1", "0"):
        return 422, "conversation_id must be 1 or more"
    if value in ("²", "abc", " 5", "+5", "5_0"):
        return 422, "conversation_id must be an integer"
    return 404, NO_ACCESS


@pytest.mark.parametrize("value", HUGE + NOT_IDS + [" 5", "+5", "5_0", "4242"])
def test_customer_pages_say_what_is_wrong_with_an_id(srv, desk, value, log_mark):
    user = desk["user"]
    status, text = what_is_wrong(value)
    older = user.get(srv.url("/chat/older"), params={"conversation_id": value})
    assert older.status_code == status and text in older.text
    form = {"conversation_id": value, "rating": "5", "csrf_token": user.csrf}
    rated = user.post(srv.url("/chat/rate"), data=form)
    assert rated.status_code == status and text in rated.text
    no_internal_error(srv, desk, log_mark)


@pytest.mark.parametrize("value", HUGE)
def test_agent_pages_answer_ids_past_64_bits(srv, desk, value, log_mark):
    """Such an address names no conversation: 404, as for any other unknown one."""
    dee, headers = desk["dee"], {"X-CSRF-Token": desk["dee"].csrf}
    for path in ("", "/older"):
        assert dee.get(srv.url(f"/agent/c/{value}{path}")).status_code == 404, path
    for path in ("/send", "/read", "/end"):
        r = dee.post(srv.url(f"/agent/c/{value}{path}"), data={"content": "x"}, headers=headers)
        assert r.status_code == 404, path
    assert dee.get(srv.url(f"/agent/c/{desk['conv_id']}")).status_code == 200
    no_internal_error(srv, desk, log_mark)


@pytest.mark.parametrize("value", HUGE)
def test_paging_bounds_past_64_bits(srv, desk, value, log_mark):
    """ "Older than" a number past any sequence number is every message; one below the
    first (1) is refused, saying so (it was answered with nothing, as was a negative
    ``after`` on the visitor's page with everything)."""
    conv_id, user, dee = desk["conv_id"], desk["user"], desk["dee"]
    page = user.get(srv.url("/chat/older"), params={"conversation_id": conv_id, "before": value})
    assert page.status_code == 200
    assert page.text.index("first") < page.text.index("second")
    page = dee.get(srv.url(f"/agent/c/{conv_id}/older"), params={"before": value})
    assert page.status_code == 200 and "second" in page.text
    none = user.get(
        srv.url("/chat/older"), params={"conversation_id": conv_id, "before": "-" + value}
    )
    assert none.status_code == 422 and "before must be 1 or more" in none.text
    for bound in ("0", "-1"):
        page = dee.get(srv.url(f"/agent/c/{conv_id}/older"), params={"before": bound})
        assert page.status_code == 422 and "before must be 1 or more" in page.text
    visitor = requests.get(
        srv.url("/visitor/messages"),
        params={"kefu_id": desk["agent"]["kefu_id"], "visitor_id": "v-odd", "after": "-1"},
    )
    assert visitor.status_code == 422 and "after must be 0 or more" in visitor.text
    no_internal_error(srv, desk, log_mark)


@pytest.mark.parametrize("value", HUGE + NOT_IDS)
def test_visitor_page_needs_a_kefu_id_that_can_name_an_agent(srv, desk, value, log_mark):
    r = requests.get(srv.url("/visitor"), params={"kefu_id": value})
    expected = "kefu_id is required" if value == "" else "kefu_id must be a positive integer"
    assert r.status_code == 422 and expected in r.text
    ok = requests.get(srv.url("/visitor"), params={"kefu_id": desk["agent"]["kefu_id"]})
    assert ok.status_code == 200
    no_internal_error(srv, desk, log_mark)


def test_live_channel_resync_with_numbers_past_64_bits(srv, desk, log_mark):
    """The page's hello with a conversation id no row can have is answered like one that
    names nothing (the agent's lists, no thread); a sequence number past 64 bits means
    what it says."""
    dee = live_socket(srv, desk["dee"])
    dee.settimeout(5)
    try:
        for conversation_id in (2**63, 2**70, -(2**70), "²"):
            dee.send(
                json.dumps({"type": "hello", "conversation_id": conversation_id, "after_seq": 0})
            )
            reply = dee.recv()
            assert 'id="open-list"' in reply and "thread-" not in reply
    finally:
        dee.close()
    user, conv_id = live_socket(srv, desk["user"], role="user"), desk["conv_id"]
    user.settimeout(5)
    try:
        user.send(json.dumps({"type": "hello", "conversation_id": conv_id, "after_seq": -(2**70)}))
        every = user.recv()
        assert every.index("first") < every.index("second")
        # Nothing after a number past every sequence number: only the header, then the next.
        user.send(json.dumps({"type": "hello", "conversation_id": conv_id, "after_seq": 2**70}))
        nothing = user.recv()
        assert 'id="chat-head"' in nothing and "first" not in nothing and "second" not in nothing
        user.send(json.dumps({"type": "hello", "conversation_id": conv_id, "after_seq": 1}))
        later = user.recv()
        assert "second" in later and "first" not in later
    finally:
        user.close()
    no_internal_error(srv, desk, log_mark)


def test_page_views_give_their_connections_back(tmp_path):
    """Each view of the visitor page used to keep a pooled connection (its agent's
    account was read lazily, outside any ``db.read()``, so the request's greenlet took a
    connection that nothing returned): with a pool of two, the third view waited the
    pool's 30 s and failed. Now every view, and the request after them, is answered."""
    server = Server(tmp_path, db_pool_size=2).start()
    try:
        kefu_id = server.create_agent("eve")["kefu_id"]
        token = server.create_user("frank")["token"]
        for _ in range(6):
            page = requests.get(server.url("/visitor"), params={"kefu_id": kefu_id}, timeout=5)
            assert page.status_code == 200 and "eve" in page.text
        opened = server.get("/api/kefu/message/getConversation", token=token)
        assert opened.status_code == 200 and opened.json()["data"]["id"] > 0
    finally:
        server.destroy()  # its database too
    assert "Exception on" not in server.log()


def test_forms_say_what_is_wrong_and_store_nothing(srv, desk, log_mark):
    """Garbage in a form is refused with what is wrong with it, where it became a
    default (``message_type=abc`` a text message, ``accepting=yes`` Not ready), and an
    op_id the API refuses (over 64 characters) is refused here too."""
    dee, headers = desk["dee"], {"X-CSRF-Token": desk["dee"].csrf}
    send = srv.url(f"/agent/c/{desk['conv_id']}/send")
    for form, message in (
        ({"content": "x", "message_type": "abc"}, "message_type must be an integer"),
        ({"content": "x", "op_id": "o" * 65}, "op_id is too long (max 64 characters)"),
    ):
        refused = dee.post(send, data=form, headers=headers)
        assert refused.status_code == 422 and message in refused.text, refused.text
    ready = dee.post(srv.url("/agent/ready"), data={"accepting": "yes"}, headers=headers)
    assert ready.status_code == 422 and "accepting must be 0 or 1" in ready.text
    accepting = srv.sql("SELECT accepting FROM agent WHERE id = ?", desk["agent"]["kefu_id"])
    assert bool(accepting[0][0]) is True  # still Ready
    no_internal_error(srv, desk, log_mark)


def test_a_refused_first_message_opens_no_conversation(srv, desk, log_mark):
    """A customer without a conversation whose first message is refused gets the reason,
    and no conversation is opened (nor handed to an agent) for it."""
    user = user_session(srv, "refused-first")
    before = srv.sql("SELECT COUNT(*) FROM conversation")[0][0]
    for form, message in (
        ({"content": ""}, "content is required"),
        ({"content": "x" * 5001}, "content is too long"),
        ({"content": "", "message_type": "2"}, "file_url is required"),
        ({"content": "x", "op_id": "o" * 65}, "op_id is too long (max 64 characters)"),
    ):
        refused = user.post(srv.url("/chat/send"), data={**form, "csrf_token": user.csrf})
        assert refused.status_code == 422 and message in refused.text, refused.text
    assert srv.sql("SELECT COUNT(*) FROM conversation")[0][0] == before
    sent = user.post(srv.url("/chat/send"), data={"content": "now", "csrf_token": user.csrf})
    assert sent.status_code in (200, 204)
    assert srv.sql("SELECT COUNT(*) FROM conversation")[0][0] == before + 1
    no_internal_error(srv, desk, log_mark)


def test_a_reused_op_id_or_a_resend_after_the_end_opens_no_conversation(srv, desk, log_mark):
    """With no conversation open, a send whose op_id is stored is answered from what is
    stored: a resend with the stored message (its conversation ended since), another
    message with the op_id refusal. Neither opens a conversation; each did, left
    queued for an agent, before the refusal came."""
    user = user_session(srv, "reused-op")

    def send(text, **shown):
        form = {"content": text, "op_id": "op-once", "csrf_token": user.csrf, **shown}
        return user.post(srv.url("/chat/send"), data=form)

    assert send("first").status_code in (200, 204)
    stored = srv.sql("SELECT id, conversation_id FROM message WHERE op_id = 'op-once'")
    assert user.post(srv.url("/chat/end"), data={"csrf_token": user.csrf}).status_code < 400
    before = srv.sql("SELECT COUNT(*) FROM conversation")[0][0]
    refused = send("second")
    assert refused.status_code == 409 and "op_id was already used" in refused.text
    resent = send("first", conversation_id=stored[0][1])  # the page shows the ended one
    assert resent.status_code == 200 and f'id="msg-{stored[0][0]}"' in resent.text
    assert srv.sql("SELECT COUNT(*) FROM conversation")[0][0] == before
    assert srv.sql("SELECT id, conversation_id FROM message WHERE op_id = 'op-once'") == stored
    no_internal_error(srv, desk, log_mark)
