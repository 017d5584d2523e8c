"""An agent who signs in again just as its grace period ends keeps its users.

Found by a script: in about one try in fifteen the new waiter socket was sent
``new_connection`` for its user while the requeue, already past its presence check,
moved the user to another agent; the waiter was never told and its next message was
refused ("This user is not connected to you"). The test makes that moment last: it
holds the conversation's row lock from outside, so the requeue job waits on it after
the grace, while the agent signs in again. Row locks need PostgreSQL: a database of
the test's own, whatever the suite's.
"""

import time

import pytest

from kefu.db import make_database
from tests.support import WAITING_FOR_A_LOCK
from tests.test_waiter_support import Peer, agent, rows, user, waiter


@pytest.mark.ignores_test_database  # a PostgreSQL database of its own, whatever the suite's
def test_an_agent_back_as_its_grace_ends_keeps_its_user(pg_server):
    server = pg_server
    first = agent(server, max_concurrent=1)
    w = waiter(server, first)
    u = user(server)
    assert u.request("connect", op_id="c")["type"] == "connect_success"
    w.expect("new_connection")
    [(cid,)] = rows(server, "SELECT id FROM conversation")
    other = waiter(server, agent(server, max_concurrent=1))  # would take the user

    locker = make_database(server.env["KEFU_DATABASE_URL"], pool_size=1)
    locker.connect()
    locker.begin()
    locker.execute_sql(f"SELECT id FROM conversation WHERE id = {cid} FOR UPDATE")
    try:
        w.close()
        deadline = time.monotonic() + 15  # the grace (1 s), then the requeue's lock wait
        while server.sql(WAITING_FOR_A_LOCK)[0][0] < 1:
            assert time.monotonic() < deadline, "the requeue never waited for the row"
            time.sleep(0.05)
        back = Peer(server, "/v1/ws/connect/waiter", first["token"])
        announced = back.expect("new_connection")
        assert announced["from"] == u.uuid
    finally:
        locker.rollback()
        locker.close_all()

    assert back.silent(1.0)  # no "disconnected": the user stays
    assert rows(server, "SELECT kefu_id FROM conversation WHERE id = ?", cid) == [
        (first["kefu_id"],)
    ]
    reply = back.request("message_text", {"text": "still with you"}, to=u.uuid)
    assert reply["type"] == "message_text_success", reply
    assert u.expect("message_text")["payload"]["text"] == "still with you"
    assert other.silent(0.2)
    assert "Traceback" not in server.log()
