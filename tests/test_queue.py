"""Assignment and the shared FIFO queue, end to end."""

import threading
import time

from kefu.db import make_database
from tests.support import LOCK_WAITS, TEST_DATABASE, Server, held, run_sql, wait_for_a_lock_wait


def login(server, token):
    ws = server.ws()
    reply = ws.request({"action": "login", "data": {"token": token}})
    assert reply["success"], reply
    return ws


def open_conversation(server, token) -> dict:
    return server.get("/api/kefu/message/getConversation", token).json()["data"]


def concurrent_of(server, kefu_id) -> tuple[int, int]:
    """(stored current_concurrent, open conversations actually assigned)."""
    [(stored,)] = server.sql("SELECT current_concurrent FROM agent WHERE id = ?", kefu_id)
    [(actual,)] = server.sql(
        "SELECT COUNT(*) FROM conversation WHERE kefu_id = ? AND status = 1", kefu_id
    )
    return stored, actual


def test_full_agent_means_fifo_wait_then_assignment_on_end(make_server):
    server = make_server()
    agent = server.create_agent("solo", max_concurrent=1)
    agent_ws = login(server, agent["token"])
    tokens = [Server.host_jwt(f"q{n}") for n in range(4)]
    first = open_conversation(server, tokens[0])
    assert first["kefu_id"] == agent["kefu_id"]
    waiting = [open_conversation(server, t) for t in tokens[1:]]
    assert [c["kefu_id"] for c in waiting] == [None, None, None]
    user_ws = [login(server, t) for t in tokens]
    assert agent_ws.recv()["conversation_id"] == first["id"]

    # A message into a waiting conversation is kept for whoever takes it.
    user_ws[1].request(
        {
            "action": "kefu_message_send",
            "data": {"conversation_id": waiting[0]["id"], "content": "still here"},
        }
    )
    assert agent_ws.silent()

    served = [first["id"]]
    for position, conv in enumerate(waiting, start=1):
        end = user_ws[position - 1].request(
            {"action": "kefu_message_end", "data": {"conversation_id": served[-1]}}
        )
        assert end["success"]
        assigned = agent_ws.recv_until(lambda f: f["action"] == "kefu_conversation_assigned")
        assert assigned["conversation_id"] == conv["id"]  # strictly in arrival order
        pushed = user_ws[position].recv_until(lambda f: f["action"] == "kefu_conversation_assigned")
        assert pushed["kefu_id"] == agent["kefu_id"]
        served.append(conv["id"])
        assert concurrent_of(server, agent["kefu_id"]) == (1, 1)
    history = server.get(
        f"/api/kefu/message/list?conversation_id={waiting[0]['id']}", agent["token"]
    ).json()["data"]
    assert [m["content"] for m in history] == ["still here"]


def test_least_busy_agent_wins_and_offline_agents_get_nothing(make_server):
    server = make_server()
    busy = server.create_agent("busy", max_concurrent=5)
    idle = server.create_agent("idle", max_concurrent=5)
    offline = server.create_agent("offline", max_concurrent=5)
    busy_ws, idle_ws = login(server, busy["token"]), login(server, idle["token"])
    kefu_ids = [open_conversation(server, Server.host_jwt(f"lb{n}"))["kefu_id"] for n in range(6)]
    assert sorted(kefu_ids) == sorted([busy["kefu_id"], idle["kefu_id"]] * 3)
    assert offline["kefu_id"] not in kefu_ids
    for agent in (busy, idle, offline):
        stored, actual = concurrent_of(server, agent["kefu_id"])
        assert stored == actual
    busy_ws.close()
    idle_ws.close()


def test_agent_coming_online_drains_the_queue_in_order(make_server):
    server = make_server()
    agent = server.create_agent("late", max_concurrent=2)
    ids = [open_conversation(server, Server.host_jwt(f"late{n}"))["id"] for n in range(3)]
    agent_ws = login(server, agent["token"])
    got = [agent_ws.recv()["conversation_id"] for _ in range(2)]
    assert got == ids[:2]
    assert agent_ws.silent()
    assert server.sql("SELECT id FROM conversation WHERE kefu_id IS NULL AND status = 1") == [
        (ids[2],)
    ]


def test_queue_order_survives_a_restart(make_server):
    server = make_server()
    agent = server.create_agent("after-restart", max_concurrent=10)
    ids = [open_conversation(server, Server.host_jwt(f"rs{n}"))["id"] for n in range(5)]
    server.restart()
    agent_ws = login(server, agent["token"])
    assert [agent_ws.recv()["conversation_id"] for _ in range(5)] == ids
    assert concurrent_of(server, agent["kefu_id"]) == (5, 5)


def test_agent_gone_past_grace_requeues_users_to_the_head(make_server):
    server = make_server(agent_grace_seconds=1)
    leaving = server.create_agent("leaving", max_concurrent=2)
    other = server.create_agent("other", max_concurrent=1)
    leaving_ws = login(server, leaving["token"])
    mine = [open_conversation(server, Server.host_jwt(f"g{n}"))["id"] for n in range(2)]
    queued = open_conversation(server, Server.host_jwt("g-late"))
    assert queued["kefu_id"] is None
    leaving_ws.close()
    # Within the grace period nothing moves.
    assert server.sql(
        "SELECT COUNT(*) FROM conversation WHERE kefu_id = ? AND status = 1", leaving["kefu_id"]
    ) == [(2,)]
    other_ws = login(server, other["token"])  # capacity 1: takes the head of the queue
    first = other_ws.recv_until(lambda f: f["action"] == "kefu_conversation_assigned", timeout=5)
    assert first["conversation_id"] == queued["id"]
    other_ws.request({"action": "kefu_message_end", "data": {"conversation_id": queued["id"]}})
    nxt = other_ws.recv_until(lambda f: f["action"] == "kefu_conversation_assigned", timeout=5)
    assert nxt["conversation_id"] == mine[0]  # re-queued at the head, in their order
    waiting = server.sql(
        "SELECT id FROM conversation WHERE kefu_id IS NULL AND status = 1 ORDER BY queued_at"
    )
    assert waiting == [(mine[1],)]
    assert concurrent_of(server, leaving["kefu_id"]) == (0, 0)


def test_an_agent_who_does_not_return_after_a_restart_is_requeued(make_server):
    """No socket of the agent closes in the new worker to start its grace period: the
    worker starts it itself. Before, the customers stayed with the absent agent."""
    server = make_server(agent_grace_seconds=1)
    gone = server.create_agent("gone-at-restart", max_concurrent=2)
    other = server.create_agent("after-restart-2", max_concurrent=1)
    gone_ws = login(server, gone["token"])
    cid = open_conversation(server, Server.host_jwt("stranded"))["id"]
    assert concurrent_of(server, gone["kefu_id"]) == (1, 1)
    gone_ws.close()
    server.restart()  # within the grace: only the new worker can notice the absence
    other_ws = login(server, other["token"])
    taken = other_ws.recv_until(lambda f: f["action"] == "kefu_conversation_assigned", timeout=10)
    assert taken["conversation_id"] == cid
    assert concurrent_of(server, gone["kefu_id"]) == (0, 0)
    assert concurrent_of(server, other["kefu_id"]) == (1, 1)


def test_an_agent_back_within_the_grace_after_a_restart_keeps_its_customers(make_server):
    server = make_server(agent_grace_seconds=2)
    agent = server.create_agent("back-after-restart", max_concurrent=2)
    agent_ws = login(server, agent["token"])
    cid = open_conversation(server, Server.host_jwt("kept"))["id"]
    server.restart()
    agent_ws = login(server, agent["token"])
    told = agent_ws.recv()  # a ds/kefu agent's login lists its open conversations
    assert (told["action"], told["conversation_id"]) == ("kefu_conversation_assigned", cid)
    time.sleep(3)  # past the grace, counted from the restart
    assert server.sql("SELECT kefu_id FROM conversation WHERE id = ?", cid) == [(agent["kefu_id"],)]
    assert agent_ws.silent()  # nothing was taken away and given back


def test_concurrent_senders_keep_counters_exact(make_server):
    server = make_server()
    agent = server.create_agent("counter", max_concurrent=50)
    agent_ws = login(server, agent["token"])
    users = [Server.host_jwt(f"c{n}") for n in range(20)]
    convs = [open_conversation(server, t)["id"] for t in users]
    errors = []

    def blast(token, cid):
        try:
            ws = login(server, token)
            for n in range(25):
                reply = ws.request(
                    {
                        "action": "kefu_message_send",
                        "op_id": f"{cid}-{n}",
                        "data": {"conversation_id": cid, "content": f"#{n}"},
                    }
                )
                assert reply["success"], reply
            ws.close()
        except Exception as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=blast, args=a) for a in zip(users, convs, strict=True)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    pushes = [agent_ws.recv() for _ in range(20 + 500)]
    messages = [p for p in pushes if p["action"] == "kefu_message"]
    assert len(messages) == 500
    assert len({p["message_id"] for p in messages}) == 500
    rows = server.sql("SELECT conversation_id, COUNT(*), MAX(seq) FROM message GROUP BY 1")
    assert sorted(rows) == sorted((cid, 25, 25) for cid in convs)
    counters = server.sql("SELECT id, kefu_unread_count, last_seq FROM conversation")
    assert sorted(counters) == sorted((cid, 25, 25) for cid in convs)
    assert concurrent_of(server, agent["kefu_id"]) == (20, 20)


def test_the_head_is_served_first_while_a_message_is_written_into_it(make_server):
    """A queued customer who writes as a slot frees holds its conversation's row lock.
    On MySQL the assigner skipped that row (SKIP LOCKED): the second in line was served,
    or, with nobody behind, no one until something else assigned (stress tester). Now
    PostgreSQL's assigner waits for the head, MySQL's tries again shortly; either way
    nobody else is served meanwhile. The test holds the head's lock from outside while
    the agent's slot frees. (SQLite has no row locks: the order is checked alone.)"""
    server = make_server()
    agent = server.create_agent("fifo-lock", max_concurrent=1)
    agent_ws = login(server, agent["token"])
    served_token = Server.host_jwt("served-first")
    served = open_conversation(server, served_token)
    head = open_conversation(server, Server.host_jwt("head-writing"))
    second = open_conversation(server, Server.host_jwt("second-in-line"))
    assert (served["kefu_id"], head["kefu_id"], second["kefu_id"]) == (agent["kefu_id"], None, None)
    customer = login(server, served_token)
    ended = {}
    end = {"action": "kefu_message_end", "data": {"conversation_id": served["id"]}}
    ender = threading.Thread(target=lambda: ended.update(customer.request(end)))
    query = "SELECT id, kefu_id FROM conversation WHERE id IN (?, ?) ORDER BY id"

    writer = None
    if TEST_DATABASE in LOCK_WAITS:
        writer = make_database(server.env["KEFU_DATABASE_URL"], pool_size=1)
        writer.connect()
        writer.begin()
        writer.execute_sql(f"SELECT id FROM conversation WHERE id = {head['id']} FOR UPDATE")
    ender.start()
    try:
        if writer is not None:
            deadline = time.monotonic() + 10
            while ender.is_alive() and server.sql(LOCK_WAITS[TEST_DATABASE])[0][0] < 1:
                assert time.monotonic() < deadline, "the end neither finished nor waited"
                time.sleep(0.15)  # see support.wait_for_a_lock_wait
            time.sleep(0.3)  # a deferred assignment runs again meanwhile (every 0.05 s)
            assert server.sql(query, head["id"], second["id"]) == [
                (head["id"], None),
                (second["id"], None),
            ]
    finally:
        if writer is not None:
            writer.rollback()
            writer.close_all()
    ender.join(10)
    assert ended["success"], ended
    assigned = agent_ws.recv_until(
        lambda f: (
            f["action"] == "kefu_conversation_assigned" and f["conversation_id"] != served["id"]
        )
    )
    assert assigned["conversation_id"] == head["id"]
    assert server.sql(query, head["id"], second["id"]) == [
        (head["id"], agent["kefu_id"]),
        (second["id"], None),
    ]


def test_a_user_arriving_while_the_agents_row_is_locked_is_still_served(make_server):
    """PostgreSQL's assigner passes over a locked agent row (SKIP LOCKED), and a
    visitor's conversation opening with that agent holds it and assigns nothing after:
    a user who arrived meanwhile stayed queued while the agent had room (a chaos
    tester's case). MySQL's assigner waits for the row, SQLite's for the writer lock."""
    server = make_server()
    agent = server.create_agent("row-held", max_concurrent=5)
    agent_ws = login(server, agent["token"])
    token = Server.host_jwt("arrives-meanwhile")
    arrived = {}
    arrival = threading.Thread(target=lambda: arrived.update(open_conversation(server, token)))
    with held(server) as other:  # what a visitor's opening writes: its agent takes one
        took_one = "UPDATE agent SET current_concurrent = current_concurrent + 1 WHERE id = ?"
        run_sql(other, took_one, agent["kefu_id"])
        arrival.start()
        if TEST_DATABASE == "postgresql":
            arrival.join(10)
            assert arrived["kefu_id"] is None  # queued: the agent's row was passed over
        else:
            wait_for_a_lock_wait(server)
    arrival.join(10)
    assigned = agent_ws.recv_until(lambda f: f["action"] == "kefu_conversation_assigned")
    assert assigned["conversation_id"] == arrived["id"]
    [(kefu_id,)] = server.sql("SELECT kefu_id FROM conversation WHERE id = ?", arrived["id"])
    assert kefu_id == agent["kefu_id"]
