"""Two gunicorn processes, one PostgreSQL database, KEFU_BROKER=postgres: they behave as one.

Needs PostgreSQL on 127.0.0.1:5432 (CI starts it; elsewhere skipped without it). Every test uses its
own people, so they share the two servers (and their start-up cost).
"""

import contextlib
import signal
import time

import pytest

from tests.support import Server, drop_database, own_postgres_database, run_python
from tests.test_waiter_support import USER_PATH, Peer, closed, unique, waiter

pytestmark = pytest.mark.ignores_test_database

TTL = 3.0  # presence TTL in these tests: a dead worker stops counting within ~TTL
GRACE = 2.0  # agent grace period
SETTINGS = {
    "broker": "postgres",
    "presence_ttl_seconds": TTL,
    "agent_grace_seconds": GRACE,
    "max_connections_per_identity": 4,
    "visitor_messages_per_minute": 10,
}


@pytest.fixture(scope="module")
def db_url():
    url = own_postgres_database("the multi-worker tests need it")
    yield url
    drop_database(url)


@pytest.fixture(scope="module")
def pair(db_url, tmp_path_factory):
    """Servers A and B: separate processes sharing one database."""
    servers = []
    for name in ("a", "b"):
        servers.append(
            Server(tmp_path_factory.mktemp(name), database_url=db_url, **SETTINGS).start()
        )
    yield servers
    for srv in servers:
        srv.stop()


def ds_login(srv, token):
    ws = srv.ws()
    reply = ws.request({"action": "login", "data": {"token": token}, "op_id": "login"})
    assert reply["success"], reply
    return ws


def push(ws, action, timeout=5.0, conversation_id=None):
    def wanted(f):
        return f.get("action") == action and conversation_id in (None, f.get("conversation_id"))

    return ws.recv_until(wanted, timeout)


def ask(ws, frame) -> dict:
    """Send a frame and return its reply (pushes on the way are skipped)."""
    ws.send(frame)
    return ws.recv_until(lambda f: "success" in f and f.get("op_id") == frame.get("op_id"))


def eventually(check, timeout=10.0, step=0.1):
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(step)


# -- ds/kefu across workers --------------------------------------------------------------


def test_dskefu_agent_and_user_on_different_workers(pair):
    a, b = pair
    agent = a.create_agent(unique("mw-agent"))
    user = b.create_user(unique("mw-user"))
    agent_ws = ds_login(a, agent["token"])
    user_ws = ds_login(b, user["token"])

    conv = b.get("/api/kefu/message/getConversation", user["token"]).json()["data"]
    assert conv["kefu_id"] == agent["kefu_id"]
    cid = conv["id"]
    for ws in (agent_ws, user_ws):  # the assignment reaches both workers
        assert push(ws, "kefu_conversation_assigned")["conversation_id"] == cid

    sent = user_ws.request(
        {
            "action": "kefu_message_send",
            "op_id": "u1",
            "data": {"conversation_id": cid, "content": "hello from B"},
        }
    )
    assert sent["success"], sent
    got = push(agent_ws, "kefu_message")
    assert (got["content"], got["from_uid"], got["to_uid"]) == (
        "hello from B",
        user["id"],
        agent["kefu_id"],
    )

    reply = agent_ws.request(
        {
            "action": "kefu_message_send",
            "op_id": "a1",
            "data": {"conversation_id": cid, "content": "hello from A", "sender_type": 2},
        }
    )
    assert reply["success"], reply
    got = push(user_ws, "kefu_message")
    assert (got["content"], got["from_uid"]) == ("hello from A", agent["kefu_id"])
    assert agent_ws.silent(0.3) and user_ws.silent(0.1)  # exactly once, no echo

    listed = b.get(f"/api/kefu/message/list?conversation_id={cid}", user["token"]).json()
    assert [m["content"] for m in listed["data"]] == ["hello from B", "hello from A"]

    ended = agent_ws.request(
        {"action": "kefu_message_end", "op_id": "e", "data": {"conversation_id": cid}}
    )
    assert ended["success"], ended
    assert push(user_ws, "kefu_message_end")["conversation_id"] == cid
    assert push(agent_ws, "kefu_message_end")["conversation_id"] == cid
    agent_ws.close()
    user_ws.close()


def test_pushes_of_one_conversation_arrive_in_order_from_two_workers(pair):
    """The agent writes into one conversation from sockets on both workers at once; the
    user hears every message once, in the stored order (seq), whichever worker sent it."""
    a, b = pair
    agent = a.create_agent(unique("mw-order"))
    user = a.create_user(unique("mw-order-user"))
    on_a, on_b = ds_login(a, agent["token"]), ds_login(b, agent["token"])
    user_ws = ds_login(a, user["token"])
    cid = a.get("/api/kefu/message/getConversation", user["token"]).json()["data"]["id"]
    push(user_ws, "kefu_conversation_assigned", conversation_id=cid)
    for i in range(20):
        for name, ws in (("a", on_a), ("b", on_b)):
            ws.send(
                {
                    "action": "kefu_message_send",
                    "op_id": f"{name}{i}",
                    "data": {"conversation_id": cid, "content": f"{name}{i}", "sender_type": 2},
                }
            )
    heard = [push(user_ws, "kefu_message", conversation_id=cid)["content"] for _ in range(40)]
    stored = a.sql("SELECT content FROM message WHERE conversation_id = ? ORDER BY seq", cid)
    assert heard == [content for (content,) in stored]
    assert user_ws.silent(0.3)
    assert ask(
        user_ws, {"action": "kefu_message_end", "op_id": "end", "data": {"conversation_id": cid}}
    )["success"]
    for ws in (on_a, on_b, user_ws):
        ws.close()


def test_dskefu_visitor_across_workers(pair):
    a, b = pair
    agent = a.create_agent(unique("mw-vagent"))
    kefu = agent["kefu_id"]
    agent_ws = ds_login(a, agent["token"])
    visitor_id = unique("mw-visitor")
    visitor = b.ws()
    assert visitor.request(
        {"action": "kefu_message_visitor_bind_fd", "data": {"bind_key": visitor_id}}
    )["success"]
    sent = visitor.request(
        {
            "action": "kefu_message_visitor_send",
            "op_id": "v1",
            "data": {"visitor_id": visitor_id, "kefu_id": kefu, "content": "visitor says hi"},
        }
    )
    assert sent["success"], sent
    got = push(agent_ws, "kefu_visitor_message")
    assert (got["visitor_id"], got["content"], got["sender_type"]) == (
        visitor_id,
        "visitor says hi",
        1,
    )

    answer = agent_ws.request(
        {
            "action": "kefu_message_send",
            "op_id": "a1",
            "data": {
                "conversation_id": got["conversation_id"],
                "content": "agent answers",
                "sender_type": 2,
            },
        }
    )
    assert answer["success"], answer
    reply = push(visitor, "kefu_visitor_message")
    assert (reply["content"], reply["sender_type"]) == ("agent answers", 2)

    assert visitor.request(
        {
            "action": "kefu_message_visitor_end",
            "op_id": "e",
            "data": {"visitor_id": visitor_id, "kefu_id": kefu},
        }
    )["success"]
    end = push(agent_ws, "kefu_visitor_conversation_end")
    assert (end["visitor_id"], end["sender_type"]) == (visitor_id, 1)
    agent_ws.close()
    visitor.close()


# -- the waiter protocol across workers ---------------------------------------------------


def test_waiter_flow_across_workers(pair):
    a, b = pair
    w = waiter(a, a.create_agent(unique("mw-waiter")))
    assert w.request("ready")["type"] == "ready"
    u = Peer(b, USER_PATH, b.host_jwt(unique("mw-wu")))
    assert u.request("connect", op_id="c1")["type"] == "connect_success"
    assert w.expect("new_connection")["from"] == u.uuid

    sent = u.request("message_text", {"text": "from B"}, op_id="m1")
    assert sent["type"] == "message_text_success"
    got = w.expect("message_text")
    assert (got["from"], got["payload"]["text"]) == (u.uuid, "from B")
    reply = w.request("message_text", {"text": "from A"}, op_id="m2", to=u.uuid)
    assert reply["type"] == "message_text_success"
    assert u.expect("message_text")["payload"]["text"] == "from A"

    assert u.request("disconnect", op_id="d")["type"] == "disconnected"
    assert w.expect("disconnected")["from"] == u.uuid
    w.close()
    u.close()


def test_kickout_reaches_the_older_socket_on_another_worker(pair):
    a, b = pair
    agent = a.create_agent(unique("mw-kick"))
    old = waiter(a, agent)
    new = waiter(b, agent)
    assert old.expect("kickout")["type"] == "kickout"
    assert closed(old)
    assert new.request("ready")["type"] == "ready"  # the new socket is untouched
    new.close()


def test_two_waiters_drain_one_queue_in_order(pair):
    a, b = pair
    # Two agents, both unready: the users queue (FIFO across both servers).
    w1 = waiter(a, a.create_agent(unique("mw-q1"), max_concurrent=2))
    w2 = waiter(b, b.create_agent(unique("mw-q2"), max_concurrent=2))
    assert w1.request("unready")["type"] == "unready"
    assert w2.request("unready")["type"] == "unready"
    users = []
    try:
        _drain_queue_in_order(a, b, w1, w2, users)
    finally:
        for u in users:  # end every conversation: later tests start with an empty queue
            with contextlib.suppress(Exception):
                u.send("disconnect", op_id="bye")
                u.ws.recv_until(lambda f: f["op_id"] == "bye")
        for peer in (w1, w2, *users):
            peer.close()


def _drain_queue_in_order(a, b, w1, w2, users):
    for i in range(6):
        srv = (a, b)[i % 2]
        u = Peer(srv, USER_PATH, srv.host_jwt(unique("mw-qu")))
        queued = u.request("connect", op_id=f"c{i}")
        assert queued["type"] == "connect_queue", queued
        assert queued["payload"]["location"] == i + 1  # FIFO across both servers
        users.append(u)
    # Whatever else arrives (a queue update may race the reply) names the same place.
    for i, u in enumerate(users):
        assert set(_places(u)) <= {i + 1}

    w1.send("ready")
    w2.send("ready")
    served = {u.uuid: u.expect("connect_success")["from"] for u in users[:4]}
    assert sorted(served.values()) == sorted([w1.uuid, w1.uuid, w2.uuid, w2.uuid])
    assert [_last_place(u, 5.0) for u in users[4:]] == [1, 2]

    # A slot frees on A: the next in line (user 5, connected on A) gets it.
    first_of_w1 = next(u for u in users[:4] if served[u.uuid] == w1.uuid)
    w1.send("disconnect", {"uuid": first_of_w1.uuid}, op_id="d")
    assert w1.ws.recv_until(lambda f: f["op_id"] == "d")["type"] == "disconnected"
    assert users[4].expect("connect_success")["from"] == w1.uuid
    assert _last_place(users[5], 5.0) == 1

    counts = a.sql(
        "SELECT a.current_concurrent, (SELECT COUNT(*) FROM conversation c "
        "WHERE c.kefu_id = a.id AND c.status = 1) FROM agent a "
        'JOIN "user" u ON u.id = a.user_id WHERE u.uuid IN (?, ?)',
        w1.uuid,
        w2.uuid,
    )
    assert counts == [(2, 2), (2, 2)]


def _places(user, wait=0.3) -> list[int]:
    """Every queue place this user is told within ``wait`` seconds."""
    places = []
    with contextlib.suppress(TimeoutError, Exception):
        while True:
            got = user.ws.recv_until(lambda f: f["type"] == "connect_queue", wait)
            places.append(got["payload"]["location"])
    return places


def _last_place(user, timeout=1.0) -> int:
    """The latest queue place this user was told (drains what is pending)."""
    place = None
    with contextlib.suppress(TimeoutError, Exception):
        while True:
            got = user.ws.recv_until(
                lambda f: f["type"] == "connect_queue", timeout if place is None else 0.5
            )
            place = got["payload"]["location"]
    return place


# -- limits across workers ------------------------------------------------------------------


def test_connection_cap_counts_every_worker(pair):
    a, b = pair
    token = a.create_user(unique("mw-cap"))["token"]
    sockets = [ds_login(srv, token) for srv in (a, b, a, b)]
    extra = b.ws()
    refused = extra.request({"action": "login", "data": {"token": token}, "op_id": "x"})
    assert not refused["success"] and "Too many connections" in refused["message"]
    sockets[0].close()
    assert eventually(lambda: _try_login(a, token))
    for ws in [*sockets, extra]:
        ws.close()


def _try_login(srv, token) -> bool:
    ws = srv.ws()
    try:
        return ws.request({"action": "login", "data": {"token": token}})["success"]
    finally:
        ws.close()


def test_visitor_message_rate_counts_every_worker(pair):
    a, b = pair
    kefu = a.create_agent(unique("mw-rate"))["kefu_id"]
    visitor_id = unique("mw-rate-visitor")
    results = []
    for i in range(12):  # the limit is 10 a minute, alternating workers
        ws = (a, b)[i % 2].ws()
        reply = ws.request(
            {
                "action": "kefu_message_visitor_send",
                "op_id": f"r{i}",
                "data": {"visitor_id": visitor_id, "kefu_id": kefu, "content": f"m{i}"},
            }
        )
        results.append(reply["success"])
        ws.close()
    assert results == [True] * 10 + [False, False]


# -- a worker dies ------------------------------------------------------------------------------


def test_sigkill_clients_resume_on_the_other_worker(pair, db_url, tmp_path):
    a, _ = pair
    c = Server(tmp_path / "c", database_url=db_url, **SETTINGS).start()
    try:
        agent = c.create_agent(unique("mw-kill"))
        user = a.create_user(unique("mw-kill-user"))
        agent_ws = ds_login(c, agent["token"])
        user_ws = ds_login(a, user["token"])
        conv = a.get("/api/kefu/message/getConversation", user["token"]).json()["data"]
        cid = conv["id"]
        assert conv["kefu_id"] == agent["kefu_id"], conv
        push(agent_ws, "kefu_conversation_assigned", conversation_id=cid)
        push(user_ws, "kefu_conversation_assigned", conversation_id=cid)

        def agent_send(ws, i):
            ws.send(
                {
                    "action": "kefu_message_send",
                    "op_id": f"k{i}",
                    "data": {"conversation_id": cid, "content": f"agent {i}", "sender_type": 2},
                }
            )

        for i in range(10):  # fired without waiting; the kill lands somewhere among them
            agent_send(agent_ws, i)
        c.stop(signal.SIGKILL)
        agent_ws.close()

        # Meanwhile the user keeps talking on A.
        assert ask(
            user_ws,
            {
                "action": "kefu_message_send",
                "op_id": "u1",
                "data": {"conversation_id": cid, "content": "are you there?"},
            },
        )["success"]

        # C's presence is gone within the TTL (+ one heartbeat).
        alive = "SELECT COUNT(*) FROM worker_presence WHERE expires_at > extract(epoch from now())"
        assert eventually(lambda: a.sql(alive) == [(2,)], timeout=TTL + 3)

        # The agent reconnects to A and resends everything with the same op_ids.
        agent_ws = ds_login(a, agent["token"])
        for i in range(10):
            agent_send(agent_ws, i)
            op_id = f"k{i}"
            assert agent_ws.recv_until(lambda f, op_id=op_id: f.get("op_id") == op_id)["success"]
        listed = a.get(
            f"/api/kefu/message/list?conversation_id={cid}&page_size=100", agent["token"]
        ).json()["data"]
        agent_lines = [m["content"] for m in listed if m["sender_type"] == 2]
        assert agent_lines == [f"agent {i}" for i in range(10)]  # each once, in order
        assert [m["content"] for m in listed if m["sender_type"] == 1] == ["are you there?"]
        seqs = a.sql("SELECT seq FROM message WHERE conversation_id = ? ORDER BY seq", cid)
        assert [s for (s,) in seqs] == list(range(1, 12))

        # The user heard each agent line at most once, in order; the list fills any gap.
        heard = []
        with contextlib.suppress(Exception):
            while True:
                heard.append(push(user_ws, "kefu_message", timeout=1.0)["content"])
        assert len(heard) == len(set(heard))
        assert heard == [line for line in agent_lines if line in heard]
        assert ask(
            user_ws,
            {"action": "kefu_message_end", "op_id": "end", "data": {"conversation_id": cid}},
        )["success"]
        agent_ws.close()
        user_ws.close()
    finally:
        c.stop(signal.SIGKILL)


def test_dead_workers_agent_is_requeued_by_a_sweeper(pair, db_url, tmp_path):
    a, _ = pair
    c = Server(tmp_path / "c", database_url=db_url, **SETTINGS).start()
    try:
        agent = c.create_agent(unique("mw-gone"))
        waiter(c, agent)
        user = Peer(a, USER_PATH, a.host_jwt(unique("mw-gone-user")))
        assert user.request("connect")["type"] == "connect_success"
        c.stop(signal.SIGKILL)
        # Nobody closed a socket on C, so no grace timer runs anywhere: A's sweeper
        # notices C's presence expired and re-queues after the grace period.
        assert user.expect("connect_queue", timeout=TTL + GRACE + 8)["payload"]["location"] == 1
        user.send("disconnect", op_id="bye")
        user.ws.recv_until(lambda f: f["op_id"] == "bye")
        user.close()
    finally:
        c.stop(signal.SIGKILL)


def test_the_grace_counts_from_the_agents_last_socket_on_any_worker(pair):
    """A socket closing on A armed a timer there. The agent went on on B and left B
    later, and A's timer then re-queued its users at once, counted from the first close
    (5 s of a 20 s grace, a tester saw). The grace now runs from the last socket
    anywhere: the presence registry's sweep is what re-queues with several workers."""
    a, b = pair
    agent = a.create_agent(unique("mw-grace"))
    first = waiter(a, agent)
    assert first.request("ready")["type"] == "ready"
    user = Peer(b, USER_PATH, b.host_jwt(unique("mw-grace-user")))
    assert user.request("connect")["type"] == "connect_success"
    first.close()
    time.sleep(0.5)
    back = waiter(b, agent)  # within the grace, on the other worker
    assert back.expect("new_connection")["from"] == user.uuid
    time.sleep(0.5)
    back.close()  # its last socket anywhere
    left = time.monotonic()
    assert user.expect("connect_queue", timeout=TTL + GRACE + 8)["payload"]["location"] == 1
    assert time.monotonic() - left >= GRACE - 0.2  # not A's timer, 1 s after it left
    user.send("disconnect", op_id="bye")  # later tests start with an empty queue
    user.ws.recv_until(lambda f: f["op_id"] == "bye")
    user.close()


PRESENCE_SCRIPT = """
from gevent import monkey
monkey.patch_all()
import json, sys
import gevent, gevent.event
from kefu import create_app, db
from kefu.errors import Busy
from kefu.migrate import upgrade

upgrade(sys.argv[1])
app = create_app({"DATABASE_URL": sys.argv[1], "BROKER": "postgres", "SECRET_KEY": "k" * 40,
                  "DB_POOL_SIZE": 2, "DB_POOL_WAIT_SECONDS": 0.2})
live, key = app.extensions["kefu.live"], "a:41"
with app.app_context():
    class Socket:
        pass
    staying, refused = Socket(), Socket()
    live._count(staying, key)  # the agent's socket that stays
    drained = gevent.event.Event()
    def hold():
        with db.read():
            drained.wait()
    holders = [gevent.spawn(hold) for _ in range(2)]
    gevent.sleep(0.1)
    try:
        live._count(refused, key)  # another socket signs in: no connection free
        outcome = "counted"
    except Busy:
        outcome = "busy"
    drained.set()
    gevent.joinall(holders)
    live._uncount(refused)  # the refused socket closes
    print(json.dumps({"outcome": outcome, "count": live.registry.count(key)}))
"""


def test_a_sign_in_refused_for_a_drained_pool_uncounts_nothing(db_url, tmp_path):
    """A socket whose count failed (no pooled connection free) was noted as counted, so
    its close took back the count of the agent's socket that stayed: the agent looked
    offline on every worker, and after the grace its customers were requeued."""
    result = run_python(tmp_path, PRESENCE_SCRIPT, db_url)
    assert result == {"outcome": "busy", "count": 1}


def test_new_connection_echoes_the_request_that_caused_it(pair):
    """The queue's head, given to a waiter by its ``disconnect``, is announced with that
    request's op_id. Through the PostgreSQL broker the push comes back after the socket
    has begun its next request, whose op_id it echoed (a chaos tester's case)."""
    a, _ = pair
    w = waiter(a, a.create_agent(unique("mw-echo"), max_concurrent=1))
    assert w.request("ready")["type"] == "ready"
    first, second = (Peer(a, USER_PATH, a.host_jwt(unique("mw-echo-u"))) for _ in range(2))
    assert first.request("connect")["type"] == "connect_success"
    assert w.expect("new_connection")["from"] == first.uuid
    second.send("connect")
    assert second.expect("connect_queue")["type"] == "connect_queue"
    w.send("disconnect", {"uuid": first.uuid}, op_id="end")
    w.send("get_history_session", op_id="list")  # a read: the broker's push arrives meanwhile
    announced = w.expect("new_connection")
    assert (announced["from"], announced["op_id"]) == (second.uuid, "end")
    second.send("disconnect", op_id="bye")
    second.ws.recv_until(lambda f: f["op_id"] == "bye")
    for peer in (w, first, second):
        peer.close()
