"""A customer arriving while an agent gets room is served once its arrival commits.

An assigner that runs while another transaction's arrival is uncommitted cannot see
that customer: the row is invisible to its reads, and SKIP LOCKED passes it over. On
MySQL nothing then assigned it: the arrival's own assigner had read which agents had
room before the room came (an agent coming online, or a slot freed after the arrival
read a full agent's row, whose lock READ COMMITTED gives back), and the customer waited
while an agent had room until something else assigned. Each test holds the row of a
full agent from outside, so that the arrival waits in its assigner while the room
comes. On SQLite the arrival waits for the writer lock instead, before it reads
anything; on PostgreSQL assigners take turns (an advisory lock): the customer is served
there either way.
"""

import threading
import time

import websocket

from tests.support import TEST_DATABASE, Server, held, run_sql, wait_for_a_lock_wait
from tests.test_queue import login, open_conversation

# A row lock of the held transaction (SQLite's holds the writer lock already).
LOCK_AGENT = "SELECT id FROM agent WHERE id = ?"
if TEST_DATABASE != "sqlite":
    LOCK_AGENT += " FOR UPDATE"


def _full_agent(server, name):
    """An agent online with its one place taken; its socket."""
    agent = server.create_agent(name, max_concurrent=1)
    ws = login(server, agent["token"])
    taken = open_conversation(server, Server.host_jwt(f"{name}-customer"))
    assert taken["kefu_id"] == agent["kefu_id"]
    return agent, ws


def _arriving(server, sub):
    """A customer's arrival in a thread of its own: (thread, its reply once done)."""
    arrived, token = {}, Server.host_jwt(sub)
    arrive = threading.Thread(target=lambda: arrived.update(open_conversation(server, token)))
    return arrive, arrived


def _served(ws, conversation_id) -> bool:
    try:
        ws.recv_until(
            lambda f: (
                f.get("action") == "kefu_conversation_assigned"
                and f["conversation_id"] == conversation_id
            ),
            timeout=3,
        )
    except (TimeoutError, websocket.WebSocketTimeoutException):
        return False
    return True


def _wait_for_the_arrival(server):
    """Until the arrival waits for the held agent row (MySQL) or the writer lock."""
    if TEST_DATABASE == "postgresql":
        time.sleep(0.5)  # its assigner passes over a locked agent row (SKIP LOCKED)
    else:
        wait_for_a_lock_wait(server)


def test_an_agent_coming_online_during_an_arrival_gets_that_customer(make_server):
    server = make_server()
    busy, _ = _full_agent(server, "busy")
    newcomer = server.create_agent("newcomer", max_concurrent=5)
    arrival, arrived = _arriving(server, "arrives-as-agent-signs-in")
    with held(server) as other:
        run_sql(other, LOCK_AGENT, busy["kefu_id"])
        arrival.start()
        _wait_for_the_arrival(server)
        # The newcomer's sign-in assigns from the queue at once: the arrival is not in it yet.
        signed_in = {}

        def sign_in():
            signed_in["ws"] = login(server, newcomer["token"])

        signing_in = threading.Thread(target=sign_in)
        signing_in.start()
        if TEST_DATABASE != "sqlite":  # there the sign-in waits for the writer lock
            signing_in.join(10)
            time.sleep(0.3)
    arrival.join(10)
    signing_in.join(10)
    if arrived["kefu_id"] is None:  # queued: served once the arrival committed
        assert _served(signed_in["ws"], arrived["id"]), "queued while the newcomer had room"
    else:
        assert arrived["kefu_id"] == newcomer["kefu_id"]


def test_a_slot_freed_during_an_arrival_takes_that_customer(make_server):
    server = make_server()
    freeing, freeing_ws = _full_agent(server, "freeing")  # its row is read first, and let go
    busy, _ = _full_agent(server, "busy")
    [(ending,)] = server.sql("SELECT id FROM conversation WHERE kefu_id = ?", freeing["kefu_id"])
    arrival, arrived = _arriving(server, "arrives-as-a-slot-frees")
    with held(server) as other:
        run_sql(other, LOCK_AGENT, busy["kefu_id"])
        arrival.start()
        _wait_for_the_arrival(server)
        # The freeing agent ends its conversation; the refill cannot see the arrival yet.
        end = {"action": "kefu_message_end", "data": {"conversation_id": ending}}
        ended = {}
        ender = threading.Thread(target=lambda: ended.update(freeing_ws.request(end)))
        ender.start()
        if TEST_DATABASE != "sqlite":
            ender.join(10)
            assert ended["success"], ended
            time.sleep(0.3)
    arrival.join(10)
    ender.join(10)
    assert ended["success"], ended
    if arrived["kefu_id"] is None:  # queued: served once the arrival committed
        assert _served(freeing_ws, arrived["id"]), "queued while the freeing agent had room"
    else:
        assert arrived["kefu_id"] == freeing["kefu_id"]
