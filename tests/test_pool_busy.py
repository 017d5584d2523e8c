"""Every pooled database connection busy: a clear "Server busy" answer, nothing lost.

The server's pool is two connections with a one-second wait. The test holds the
conversation's row lock from a connection of its own, so two message sends wait on it,
each holding one of the pool's connections. Requests and frames that need a connection
meanwhile are answered "Server busy, try again shortly" (HTTP 503 with Retry-After) and
do nothing; once the lock goes, the waiting sends are stored, each once.

Row locks need PostgreSQL or MySQL: the suite's database when it is one of them, else a
PostgreSQL database of the test's own (SQLite has no row locks, and a lock held from
outside would stop the server's whole worker, not two requests).
"""

import json
import time

import psycopg2
import pytest
import requests
import websocket

from kefu.db import make_database
from tests.support import (
    PG_ADMIN,
    TEST_DATABASE,
    Server,
    drop_database,
    fresh_database_url,
    own_postgres_database,
    retire,
    run_python,
)
from tests.test_pages_security import live_socket, user_session
from tests.test_queue import login, open_conversation

BUSY = "Server busy, try again shortly"


def _database_url(workdir) -> str:
    if TEST_DATABASE in ("postgresql", "mysql"):
        return fresh_database_url(workdir)
    return own_postgres_database("row locks need it")


@pytest.fixture
def busy_server(tmp_path):
    server = Server(
        tmp_path,
        _database_url(tmp_path),
        db_pool_size=2,
        db_pool_wait_seconds=1,
        agent_grace_seconds=1,
    ).start()
    yield server
    retire(server)


def _send(ws, cid, op_id):
    data = {"conversation_id": cid, "content": f"message {op_id}"}
    ws.send({"action": "kefu_message_send", "op_id": op_id, "data": data})


def _open_conversation(server):
    """An agent online, a customer's conversation assigned to it, three customer sockets."""
    agent_ws = login(server, server.create_agent("busy-agent")["token"])
    owner = server.host_jwt("busy-owner")
    cid = open_conversation(server, owner)["id"]
    senders = [server.ws(timeout=15) for _ in range(3)]
    for ws in senders:
        assert ws.request({"action": "login", "data": {"token": owner}})["success"] is True
    return owner, cid, agent_ws, senders


def _lock_and_drain_the_pool(server, cid, senders, owner):
    """Lock the conversation's row; sends "a" and "b" then hold the pool's two
    connections while they wait for it. Returns the locking connection once a request
    finds the pool drained (until then the probe is answered as usual, changing nothing)."""
    locker = make_database(server.env["KEFU_DATABASE_URL"], pool_size=1)
    locker.connect()
    locker.begin()
    locker.execute_sql(f"SELECT id FROM conversation WHERE id = {cid} FOR UPDATE")
    try:
        _send(senders[0], cid, "a")
        _send(senders[1], cid, "b")
        deadline = time.monotonic() + 20
        while server.get("/api/kefu/message/getConversation", owner).status_code != 503:
            assert time.monotonic() < deadline, "the two sends never drained the pool"
    except BaseException:  # a lock left held would stop the database's DROP for good
        _release(locker)
        raise
    return locker


def _release(locker):
    locker.rollback()
    locker.close_all()


def _stored(server, owner, cid):
    listed = server.get(f"/api/kefu/message/list?conversation_id={cid}&page_size=50", owner)
    assert listed.status_code == 200
    return sorted(m["content"] for m in listed.json()["data"])


def test_a_full_pool_answers_busy_and_loses_nothing(busy_server):
    server = busy_server
    owner, cid, agent_ws, senders = _open_conversation(server)
    chat = user_session(server, "busy-owner")  # the same customer's chat page
    page = live_socket(server, chat, role="user")
    page.settimeout(10)
    locker = _lock_and_drain_the_pool(server, cid, senders, owner)
    try:
        started = time.monotonic()
        reply = server.get("/api/kefu/message/getConversation", owner)
        assert reply.status_code == 503
        assert reply.json() == {"code": 503, "message": BUSY}
        assert reply.headers["Retry-After"] == "1"
        assert 0.9 < time.monotonic() - started < 10  # the pool's wait (1 s), not 30 s

        _send(senders[2], cid, "c")
        assert senders[2].recv() == {"success": False, "message": BUSY, "op_id": "c"}
        end = {"action": "kefu_message_end", "op_id": "end", "data": {"conversation_id": cid}}
        senders[2].send(end)  # not "Failed to end conversation…", which says it is not yours
        assert senders[2].recv() == {"success": False, "message": BUSY, "op_id": "end"}
        signing_in = requests.get(server.url(f"/chat?token={owner}"), timeout=10)
        assert signing_in.status_code == 503 and BUSY in signing_in.text

        # The chat page's live channel: its hello is closed with 1013, which the page
        # retries; a handshake meanwhile is refused with 503 (retried alike).
        page.send(json.dumps({"type": "hello", "conversation_id": cid, "after_seq": 0}))
        opcode, payload = page.recv_data(control_frame=True)
        assert opcode == websocket.ABNF.OPCODE_CLOSE
        assert int.from_bytes(payload[:2], "big") == 1013 and payload[2:] == b"Server busy"
        with pytest.raises(websocket.WebSocketBadStatusException) as refused:
            live_socket(server, chat, role="user")
        assert refused.value.status_code == 503
        assert senders[0].silent(0.2) and senders[1].silent(0.2)  # still waiting
    finally:
        _release(locker)

    for ws, op_id in ((senders[0], "a"), (senders[1], "b")):
        reply = ws.recv_until(lambda frame, op_id=op_id: frame.get("op_id") == op_id)
        assert reply["success"] is True and reply["op_id"] == op_id
    _send(senders[2], cid, "c")  # the same frame again, now that a connection is free
    retried = senders[2].recv_until(lambda frame: frame.get("op_id") == "c")
    assert retried["success"] is True
    assert _stored(server, owner, cid) == ["message a", "message b", "message c"]
    page = live_socket(server, chat, role="user")  # the page's retry
    page.settimeout(10)
    page.send(json.dumps({"type": "hello", "conversation_id": cid, "after_seq": 0}))
    assert "message c" in page.recv()
    page.close()
    assert "Traceback" not in server.log()
    for ws in (*senders, agent_ws):
        ws.close()


def test_an_agent_away_while_the_pool_is_busy_is_still_requeued(busy_server):
    """The agent's grace ends while every pooled connection is taken: re-queueing its
    customers is tried again until a connection is free, not given up."""
    server = busy_server
    owner, cid, agent_ws, senders = _open_conversation(server)
    locker = _lock_and_drain_the_pool(server, cid, senders, owner)
    try:
        agent_ws.close()
        deadline = time.monotonic() + 15  # the grace (1 s), then the pool's wait (1 s)
        while "re-queueing" not in server.log():  # it ran, and found the pool busy
            assert time.monotonic() < deadline, "the agent's grace never ended"
            time.sleep(0.1)
    finally:
        _release(locker)
    deadline = time.monotonic() + 10
    while server.sql("SELECT kefu_id FROM conversation WHERE id = ?", cid)[0][0] is not None:
        assert time.monotonic() < deadline, "the conversation stayed with the absent agent"
        time.sleep(0.1)
    assert _stored(server, owner, cid) == ["message a", "message b"]
    assert "Traceback" not in server.log()
    for ws in senders:
        ws.close()


# A gevent process on PostgreSQL with a pool of two; hold() takes a pooled connection.
GEVENT_PREAMBLE = r"""
import json
import sys

from gevent import monkey

monkey.patch_all()

import gevent
import psycopg2

from kefu import create_app, db
from kefu.migrate import upgrade

url = sys.argv[1]
upgrade(url)
create_app({"DATABASE_URL": url, "DB_POOL_SIZE": 2, "DB_POOL_WAIT_SECONDS": 0.5})


def hold(seconds):
    with db.read():
        db.database.execute_sql("SELECT 1")
        gevent.sleep(seconds)
"""

BROKER_SCRIPT = (
    GEVENT_PREAMBLE
    + r"""
from kefu.realtime.events import SignedOut
from kefu.realtime.pg_broker import PgBroker

broker = PgBroker(url)
delivered = []
broker.subscribe(lambda events, origin: delivered.extend(e.user_id for e in events))
gevent.sleep(0.3)  # the listener is listening

holders = [gevent.spawn(hold, 1.5) for _ in range(2)]  # the whole pool, for 1.5 s
gevent.sleep(0.1)
for user_id in (1, 2, 3):
    broker.publish([SignedOut(user_id, "test")], None)
gevent.sleep(1.0)
during = list(delivered)
gevent.joinall(holders)
for _ in range(50):
    if len(delivered) >= 3:
        break
    gevent.sleep(0.1)
gevent.sleep(0.3)  # a fourth would arrive by now
print(json.dumps({"during": during, "after": delivered}))
"""
)

HEARTBEAT_SCRIPT = (
    GEVENT_PREAMBLE
    + r"""
from kefu.realtime.presence_db import DbRegistry

registry = DbRegistry("drained-worker", url, ttl=1.0, beat=0.3)
registry.start(publish=lambda events: None)
gevent.sleep(0.5)


def alive():
    check = psycopg2.connect(url)
    try:
        with check.cursor() as cur:
            cur.execute(
                "SELECT expires_at > extract(epoch from now()) FROM worker_presence "
                "WHERE worker_id = 'drained-worker'"
            )
            return [row[0] for row in cur.fetchall()]
    finally:
        check.close()


before = alive()
holders = [gevent.spawn(hold, 3.0) for _ in range(2)]  # the whole pool, three TTLs
gevent.sleep(2.5)
during = alive()
gevent.joinall(holders)
registry.stop()
print(json.dumps({"before": before, "during": during, "after_stop": alive()}))
"""
)


@pytest.mark.ignores_test_database  # a PostgreSQL database of its own, whatever the suite's
def test_the_broker_publishes_what_found_the_pool_busy(tmp_path):
    """The PostgreSQL broker's publisher found no pooled connection (every one held for
    longer than the pool's wait): its events are published once one is free, in order
    and each once, instead of being dropped for live clients to miss."""
    url = own_postgres_database("the PostgreSQL broker needs it")
    try:
        result = run_python(tmp_path, BROKER_SCRIPT, url)
    finally:
        drop_database(url)
    assert result == {"during": [], "after": [1, 2, 3]}


@pytest.mark.ignores_test_database  # a PostgreSQL database of its own, whatever the suite's
def test_a_drained_pool_does_not_stop_the_heartbeat(tmp_path):
    """With every pooled connection held for three TTLs, the worker's heartbeat still
    keeps it alive (it has a connection of its own): other workers must not take a
    worker that still serves its sockets for dead and re-queue its agents' customers."""
    url = own_postgres_database("the PostgreSQL broker's presence needs it")
    try:
        result = run_python(tmp_path, HEARTBEAT_SCRIPT, url)
    finally:
        drop_database(url)
    assert result == {"before": [True], "during": [True], "after_stop": []}


@pytest.mark.ignores_test_database  # a PostgreSQL database of its own, whatever the suite's
def test_healthz_says_when_the_database_cannot_be_reached(pg_server):
    """It said ok while every request failed (operations tester): a load balancer kept
    sending clients to a worker that could not reach its database."""
    assert pg_server.get("/healthz").json()["ok"] is True
    name = pg_server.env["KEFU_DATABASE_URL"].rsplit("/", 1)[-1]
    admin = psycopg2.connect(**PG_ADMIN)
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
        cur.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,)
        )
    try:
        down = pg_server.get("/healthz")
        assert down.status_code == 503
        assert down.json()["ok"] is False and "not currently accepting" in down.json()["database"]
    finally:
        with admin.cursor() as cur:
            cur.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
        admin.close()
    assert pg_server.get("/healthz").json()["ok"] is True
