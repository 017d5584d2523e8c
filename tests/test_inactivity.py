"""Conversations whose customer left without a word end by themselves
(``KEFU_INACTIVE_END_SECONDS``), so they stop holding their agent's slot."""

import time

from tests.support import Server
from tests.test_queue import concurrent_of, login, open_conversation

IDLE = 3  # seconds without a message; the worker sweeps every 0.75 s


def _status(server, conversation_id) -> int:
    return server.sql("SELECT status FROM conversation WHERE id = ?", conversation_id)[0][0]


def _send(ws, conversation_id, text):
    reply = ws.request(
        {
            "action": "kefu_message_send",
            "data": {"conversation_id": conversation_id, "content": text},
        }
    )
    assert reply["success"], reply


def test_a_conversation_its_customer_left_ends_and_frees_the_agent(make_server):
    server = make_server(inactive_end_seconds=IDLE)
    agent = server.create_agent("slot", max_concurrent=1)
    agent_ws = login(server, agent["token"])
    gone_token, staying_token = Server.host_jwt("gone"), Server.host_jwt("staying")
    gone = open_conversation(server, gone_token)
    assert gone["kefu_id"] == agent["kefu_id"]
    gone_ws = login(server, gone_token)
    _send(gone_ws, gone["id"], "are you there?")
    last_message_at = time.monotonic()
    gone_ws.close()
    staying_ws = login(server, staying_token)  # online, silent, and queued behind
    waiting = open_conversation(server, staying_token)
    assert waiting["kefu_id"] is None

    time.sleep(1.0)  # well within the period: a recent message keeps it open
    assert time.monotonic() - last_message_at < IDLE
    assert _status(server, gone["id"]) == 1

    ended = agent_ws.recv_until(lambda f: f["action"] == "kefu_message_end", timeout=IDLE + 5)
    assert ended["conversation_id"] == gone["id"]
    assert ended["operator_type"] == 1  # as if the customer had left
    assert time.monotonic() - last_message_at >= IDLE
    assigned = agent_ws.recv_until(lambda f: f["action"] == "kefu_conversation_assigned")
    assert assigned["conversation_id"] == waiting["id"]  # the freed slot went to the queue
    assert concurrent_of(server, agent["kefu_id"]) == (1, 1)

    # The customer who stays connected keeps its conversation, however quiet.
    time.sleep(IDLE + 2)
    assert _status(server, waiting["id"]) == 1
    resumed = server.ws()
    assert resumed.request({"action": "login", "data": {"token": gone_token}})["success"]
    again = open_conversation(server, gone_token)  # the customer who left starts anew
    assert again["id"] != gone["id"]
    assert "Traceback" not in server.log()
    for ws in (agent_ws, staying_ws, resumed):
        ws.close()


def _bind(server, visitor_id):
    ws = server.ws()
    bound = ws.request({"action": "kefu_message_visitor_bind_fd", "data": {"bind_key": visitor_id}})
    assert bound["success"], bound
    return ws


def _visitor_send(ws, visitor_id, kefu_id, text):
    reply = ws.request(
        {
            "action": "kefu_message_visitor_send",
            "data": {"visitor_id": visitor_id, "kefu_id": str(kefu_id), "content": text},
        }
    )
    assert reply["success"], reply


def test_a_visitor_who_left_stops_counting_against_the_agent(make_server):
    server = make_server(inactive_end_seconds=IDLE)
    agent = server.create_agent("widget", max_concurrent=5)
    agent_ws = login(server, agent["token"])
    left, stays = _bind(server, "visitor-left"), _bind(server, "visitor-stays")
    _visitor_send(left, "visitor-left", agent["kefu_id"], "hello?")
    _visitor_send(stays, "visitor-stays", agent["kefu_id"], "hi")
    assert concurrent_of(server, agent["kefu_id"]) == (2, 2)
    left.close()

    ended = agent_ws.recv_until(
        lambda f: f["action"] == "kefu_visitor_conversation_end", timeout=IDLE + 5
    )
    assert ended["visitor_id"] == "visitor-left"
    assert ended["sender_type"] == 1
    time.sleep(2)  # more sweeps: the visitor still bound is not ended
    assert concurrent_of(server, agent["kefu_id"]) == (1, 1)
    [(still_open,)] = server.sql(
        "SELECT COUNT(*) FROM conversation c JOIN visitor v ON v.id = c.visitor_id "
        "WHERE v.key = ? AND c.status = 1",
        "visitor-stays",
    )
    assert still_open == 1
    assert "Traceback" not in server.log()
    for ws in (agent_ws, stays):
        ws.close()


def test_a_disabled_users_conversations_end_and_free_the_agent(make_server):
    """Disabling an account closed its sockets but left its open conversation holding
    the agent's slot until the inactivity sweep (an hour by default). Now it ends within
    a revalidation pass, as if the user had left: assigned or still in the queue."""
    server = make_server(revalidate_seconds=0.3)
    agent = server.create_agent("disabling-desk", max_concurrent=1)
    agent_ws = login(server, agent["token"])
    served, queued = server.create_user("served-then-off"), server.create_user("queued-off")
    waiting_token = Server.host_jwt("waits-behind")
    talking = open_conversation(server, served["token"])
    in_queue = open_conversation(server, queued["token"])
    waiting = open_conversation(server, waiting_token)
    assert talking["kefu_id"] == agent["kefu_id"] and waiting["kefu_id"] is None
    agent_ws.recv_until(lambda f: f["action"] == "kefu_conversation_assigned")

    server.cli("kefu", "disable", "queued-off")
    deadline = time.monotonic() + 10
    while _status(server, in_queue["id"]) == 1 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _status(server, in_queue["id"]) == 2  # it leaves the queue
    server.cli("kefu", "disable", "served-then-off")
    ended = agent_ws.recv_until(lambda f: f["action"] == "kefu_message_end", timeout=10)
    assert ended["conversation_id"] == talking["id"]
    assert ended["operator_type"] == 1  # as if the user had left
    assigned = agent_ws.recv_until(lambda f: f["action"] == "kefu_conversation_assigned")
    assert assigned["conversation_id"] == waiting["id"]  # the freed slot went to the queue
    assert concurrent_of(server, agent["kefu_id"]) == (1, 1)
    # An enabled user's conversation is left alone: the waiting one is still open.
    time.sleep(1.0)
    assert _status(server, waiting["id"]) == 1
    assert "Traceback" not in server.log()
