"""A customer's message sent while its queued conversation is being assigned reaches the
agent (PostgreSQL).

Found by a stress run: the send waited for the conversation's row lock while the
assignment held it. PostgreSQL then re-checks the locked row, now naming the agent, but
keeps the joined rows it had read before, where there was no agent: the message, and
every later one for as long as the conversation's people were remembered (30 s), went
to no agent. The test holds the lock from outside, as the assignment does, while the
customer sends. Row locks need PostgreSQL: a database of the test's own.
"""

import threading
import time

import pytest

from kefu.db import make_database
from tests.support import WAITING_FOR_A_LOCK, Server
from tests.test_queue import login, open_conversation


def _send(ws, conversation_id, text) -> dict:
    data = {"conversation_id": conversation_id, "content": text}
    return ws.request({"action": "kefu_message_send", "data": data})


@pytest.mark.ignores_test_database  # a PostgreSQL database of its own, whatever the suite's
def test_a_message_sent_as_its_conversation_is_assigned_reaches_the_agent(pg_server):
    server = pg_server
    agent = server.create_agent("racing", max_concurrent=1)
    agent_ws = login(server, agent["token"])
    assert open_conversation(server, Server.host_jwt("first"))["kefu_id"] == agent["kefu_id"]
    queued = open_conversation(server, Server.host_jwt("queued"))
    assert queued["kefu_id"] is None
    customer = login(server, Server.host_jwt("queued"))

    # What routing.assign_locked writes, held uncommitted while the customer sends.
    assigner = make_database(server.env["KEFU_DATABASE_URL"], pool_size=1)
    assigner.connect()
    assigner.begin()
    kefu_id, cid = agent["kefu_id"], queued["id"]
    assigner.execute_sql(
        "UPDATE agent SET max_concurrent = 2, current_concurrent = current_concurrent + 1"
        f" WHERE id = {kefu_id}"
    )
    assigner.execute_sql(
        f"UPDATE conversation SET kefu_id = {kefu_id}, queued_at = NULL WHERE id = {cid}"
    )
    sent = {}
    sender = threading.Thread(target=lambda: sent.update(_send(customer, cid, "as it is assigned")))
    try:
        sender.start()
        deadline = time.monotonic() + 10
        while server.sql(WAITING_FOR_A_LOCK)[0][0] < 1:
            assert time.monotonic() < deadline, "the send never waited for the row"
            time.sleep(0.05)
        assigner.commit()
    finally:
        assigner.close_all()
    sender.join(10)
    assert sent["success"], sent
    later = _send(customer, cid, "and after")
    assert later["success"], later

    for text in ("as it is assigned", "and after"):
        push = agent_ws.recv_until(
            lambda f, t=text: f.get("action") == "kefu_message" and f.get("content") == t,
            timeout=5,
        )
        assert push["conversation_id"] == cid
    assert "Traceback" not in server.log()
