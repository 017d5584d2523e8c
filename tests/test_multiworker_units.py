"""The multi-worker pieces that need no PostgreSQL: events on the wire, per-conversation
order of message pushes, and refusing deployments that cannot work."""

import json
import os
from datetime import UTC, datetime

import pytest

from kefu.db import make_database
from kefu.deployment import deployment_problem, weak_secrets
from kefu.realtime import events as ev
from kefu.realtime import wire
from kefu.realtime.seq_order import SeqOrder
from tests.support import BIN, free_port, run, run_python

pytestmark = pytest.mark.ignores_test_database

PERSON = ev.Person(7, "uuid-7", "ada", "Ada", "")
CONV = ev.ConversationRef(3, 1, PERSON, None, 2, PERSON, 1, 0)
NOW = datetime(2026, 11, 21, 23, 59, 58, 123456, tzinfo=UTC)


def message(seq: int, conv: int = 3) -> ev.MessageCreated:
    view = ev.MessageView(100 + seq, seq, conv, 1, 7, f"m{seq}", 1, None, 0, None, NOW, NOW)
    return ev.MessageCreated(ev.ConversationRef(conv, 1, PERSON, None, 2, PERSON), view)


def test_every_event_survives_the_wire():
    sample = [
        message(1),
        ev.ConversationAssigned(CONV),
        ev.ConversationEnded(CONV, 2, 9),
        ev.ConversationRated(CONV, 4),
        ev.ConversationRequeued(CONV, PERSON),
        ev.QueueChanged(((3, 7), (4, 8))),
        ev.MessagesRead(CONV, 1, (4, 5)),
        ev.AgentChanged(2, PERSON, True, 5, 1),
        ev.WaiterSignedIn(7, "host:1:ab", "1:2", NOW),
        ev.SignedOut(7, "Signed out"),
        ev.SignedOut(7, "Signed out", "ab" * 32),
    ]
    payload = wire.dumps(sample, "123:4")
    assert wire.loads(payload) == (sample, "123:4")
    assert len(payload.encode()) < 8000  # (the row id, not this, goes through NOTIFY)


def test_wire_names_only_event_classes():
    with pytest.raises(KeyError):
        wire.loads('{"origin": null, "events": [{"@": "Popen", "args": "sh"}]}')


def batch(seq, conv=3):
    return ([message(seq, conv)], None)


def seqs(batches):
    return [events[0].message.seq for events, _ in batches]


def test_in_order_messages_pass_straight_through():
    order = SeqOrder(hold_seconds=1.0)
    assert seqs(order.offer(batch(1), 0.0)) == [1]
    assert seqs(order.offer(batch(2), 0.0)) == [2]
    assert not order.holding()


def test_a_message_waits_for_its_predecessor_then_both_go_in_order():
    order = SeqOrder(hold_seconds=1.0)
    order.offer(batch(1), 0.0)
    assert order.offer(batch(3), 0.0) == []  # 2 not delivered yet: held
    assert order.offer(batch(4), 0.1) == []
    assert seqs(order.offer(batch(2), 0.2)) == [2, 3, 4]
    assert not order.holding()


def test_the_hold_is_bounded():
    order = SeqOrder(hold_seconds=1.0)
    order.offer(batch(1), 0.0)
    order.offer(batch(3), 0.0)
    assert order.due(0.5) == []
    assert seqs(order.due(1.0)) == [3]  # 2 never came (its worker died): 3 goes anyway
    assert seqs(order.offer(batch(2), 1.2)) == [2]  # late, but still delivered once


def test_a_swapped_first_pair_is_put_right():
    order = SeqOrder(hold_seconds=1.0)
    assert order.offer(batch(2), 0.0) == []  # seq 1 of a new conversation may be behind
    assert seqs(order.offer(batch(1), 0.01)) == [1, 2]


def test_a_conversation_from_before_this_worker_waits_only_briefly():
    order = SeqOrder(hold_seconds=1.0)
    assert order.offer(batch(57), 0.0) == []
    assert order.due(0.05) == []
    assert seqs(order.due(0.1)) == [57]
    assert seqs(order.offer(batch(58), 0.2)) == [58]


def test_conversations_do_not_wait_for_each_other():
    order = SeqOrder(hold_seconds=1.0)
    order.offer(batch(1, conv=3), 0.0)
    assert order.offer(batch(3, conv=3), 0.0) == []
    assert seqs(order.offer(batch(1, conv=4), 0.0)) == [1]
    other = ([ev.ConversationEnded(CONV, 2, 9)], None)
    assert order.offer(other, 0.0) == [other]


def test_deployment_problems():
    assert deployment_problem("memory", 1, "sqlite:///k.db", 8) is None
    assert deployment_problem("memory", 1, "mysql://root@h/k", 8) is None
    assert deployment_problem("postgres", 4, "postgresql://u@h/k", 8) is None
    assert "PostgreSQL" in deployment_problem("postgres", 1, "mysql://root@h/k", 8)
    assert "PostgreSQL" in deployment_problem("postgres", 1, "sqlite:///k.db", 8)
    assert "2 workers (KEFU_WORKERS or gunicorn -w)" in deployment_problem(
        "memory", 2, "postgresql://u@h/k", 8
    )
    assert "KEFU_BROKER" in deployment_problem("redis", 1, "sqlite:///k.db", 8)
    assert deployment_problem("memory", 1, "sqlite:///k.db", 2) is None
    assert "KEFU_DB_POOL_SIZE=1" in deployment_problem("memory", 1, "sqlite:///k.db", 1)


def test_short_secrets_are_warned_about(make_server):
    strong = "k" * 32
    assert weak_secrets({"SECRET_KEY": strong, "JWT_SECRET": strong}) == []
    assert weak_secrets({"SECRET_KEY": strong, "JWT_SECRET": ""}) == []  # JWT sign-in off
    warned = weak_secrets({"SECRET_KEY": "s", "JWT_SECRET": "secret"})
    assert [w.split(" is ")[0] for w in warned] == ["KEFU_SECRET_KEY", "KEFU_JWT_SECRET"]
    server = make_server(secret_key="short")  # the master says so when it starts
    assert "kefu: KEFU_SECRET_KEY is 5 bytes: use at least 32 random bytes" in server.log()
    assert "KEFU_JWT_SECRET is" not in server.log()


@pytest.mark.parametrize(
    "env, says",
    [
        # (The CLI is one process, not a worker: it has nothing to refuse here.)
        ({"KEFU_WORKERS": "2"}, "2 workers (KEFU_WORKERS or gunicorn -w) with KEFU_BROKER=memory"),
        (
            {
                "KEFU_BROKER": "postgres",
                "KEFU_DATABASE_URL": "mysql://root@127.0.0.1/x",
                "KEFU_SECRET_KEY": "shared",
            },
            "KEFU_BROKER=postgres needs a PostgreSQL",
        ),
        # Each worker made up its own key: agents were signed out at random.
        (
            {
                "KEFU_BROKER": "postgres",
                "KEFU_DATABASE_URL": "postgresql://postgres@127.0.0.1/x",
                "KEFU_SECRET_KEY": "",
            },
            "kefu: KEFU_BROKER=postgres needs KEFU_SECRET_KEY",
        ),
        # With one, the group commit kept it and every other request failed after 30 s.
        ({"KEFU_DB_POOL_SIZE": "1"}, "KEFU_DB_POOL_SIZE='1': must be a whole number, from 2 to"),
        # Settings that are not numbers, or below 0, are named (not a bare traceback).
        ({"KEFU_DB_POOL_SIZE": "eight"}, "kefu: KEFU_DB_POOL_SIZE='eight': must be a whole"),
        ({"KEFU_WS_PING_SECONDS": "-1"}, "KEFU_WS_PING_SECONDS='-1': must be a number, 0 or"),
        ({"KEFU_USER_IDLE_SECONDS": "nan"}, "KEFU_USER_IDLE_SECONDS='nan': must be a number"),
        ({"KEFU_WORKERS": "two"}, "kefu: KEFU_WORKERS='two': must be a whole number"),
        # Values the server cannot work with (tests/test_settings.py has every range).
        ({"KEFU_WORKERS": "0"}, "kefu: KEFU_WORKERS='0': must be a whole number, 1 or more"),
        ({"KEFU_BIND": ""}, "kefu: KEFU_BIND='': must be an address, e.g. 127.0.0.1:8000"),
        ({"KEFU_REVALIDATE_SECONDS": "0"}, "kefu: KEFU_REVALIDATE_SECONDS='0': must be a number"),
        ({"KEFU_LOG_LEVEL": "loud"}, "kefu: KEFU_LOG_LEVEL='loud': must be one of debug"),
        ({"KEFU_GROUP_COMMIT_GAP_MS": "1e9"}, "kefu: KEFU_GROUP_COMMIT_GAP_MS='1e9'"),
        # gunicorn's own settings: the CLI holds no sockets and does not read them.
        ({"KEFU_WORKER_CONNECTIONS": "0"}, "kefu: KEFU_WORKER_CONNECTIONS='0': must be a whole"),
        # Checked by gunicorn only: every upload was a 500 and a traceback.
        (
            {"KEFU_UPLOAD_DIR": "/proc/kefu-uploads"},
            "kefu: KEFU_UPLOAD_DIR='/proc/kefu-uploads': uploads cannot be stored there",
        ),
        # A database that cannot be opened (a page of chained tracebacks from both).
        (
            {"KEFU_DATABASE_URL": "sqlite:////nonexistent-dir/k.db"},
            "KEFU_DATABASE_URL (sqlite:////nonexistent-dir/k.db): unable to open database file",
        ),
    ],
)
def test_gunicorn_and_the_cli_refuse_to_start(tmp_path, env, says):
    """The same one line from gunicorn's master and from ``flask kefu`` (which printed
    a traceback), and nothing else but gunicorn's own "[time] [pid] [INFO] …" lines."""
    commands = [[str(BIN / "gunicorn"), "-c", "gunicorn.conf.py", "app:app"]]
    gunicorn_only = {"KEFU_WORKER_CONNECTIONS", "KEFU_UPLOAD_DIR"}
    if env != {"KEFU_WORKERS": "2"} and not env.keys() & gunicorn_only:
        commands.append([str(BIN / "flask"), "--app", "app", "kefu", "create-user", "nobody"])
    for command in commands:
        done = _run(command, tmp_path, env)
        assert done.returncode != 0
        assert "Traceback" not in done.stderr
        said = [line for line in (done.stdout + done.stderr).splitlines() if line[:1] != "["]
        assert len(said) == 1 and says in said[0], said


def test_the_cli_works_before_the_server_ever_ran(tmp_path):
    """A fresh database gets its tables first (it was "no such table: user")."""
    done = _run(
        [str(BIN / "flask"), "--app", "app", "kefu", "create-agent", "ann", "--json"], tmp_path, {}
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["username"] == "ann"


@pytest.mark.parametrize(
    "args, says",
    [
        (["--max-concurrent", "0"], "max_concurrent must be an integer from 1 to 1000"),  # was 5
        (["--max-concurrent", "99999999999"], "max_concurrent must be an integer from 1 to 1000"),
        (["--nickname", "n" * 151], "nickname must be at most 150 characters"),  # a traceback
    ],
)
def test_the_cli_refuses_bad_agent_settings_in_one_line(tmp_path, args, says):
    command = [str(BIN / "flask"), "--app", "app", "kefu", "create-agent", "ann", *args]
    done = _run(command, tmp_path, {})
    assert done.returncode == 1
    assert done.stderr.strip() == f"Error: {says}"


def test_the_cli_refuses_a_taken_name_and_stores_nothing_more(tmp_path):
    for command in ("create-user", "create-agent"):
        args = [str(BIN / "flask"), "--app", "app", "kefu", command, "taken"]
        done = _run(args, tmp_path, {})
        assert done.returncode == (0 if command == "create-user" else 1), done.stderr
    assert done.stderr.strip() == "Error: username 'taken' is taken"
    database = make_database(f"sqlite:///{tmp_path}/k.db", pool_size=1)
    counts = [
        database.execute_sql(f"SELECT COUNT(*) FROM {t}").fetchone()[0] for t in ("user", "agent")
    ]
    database.close_all()
    assert counts == [1, 0]  # the agent's account was not kept without its profile


def _run(command, tmp_path, env):
    env = {
        **os.environ,
        "KEFU_DATABASE_URL": f"sqlite:///{tmp_path}/k.db",
        "KEFU_BIND": f"127.0.0.1:{free_port()}",
        **env,
    }
    return run(command, env, timeout=30)


SAME_PID_SCRIPT = r"""
import json
import os

os.getpid = lambda: 3  # what every container's worker may be

from kefu.realtime.connection import Connection

print(json.dumps({"id": Connection(None, None).id}))
"""


def test_connection_ids_differ_between_hosts_whose_workers_share_a_pid(tmp_path):
    """Two hosts in containers both ran their worker as pid 3: their k-th sockets had the
    same id, the origin every worker compares to skip a sender's own socket, so each
    took the other's messages for its own echo and pushed them to nobody."""
    ids = {run_python(tmp_path, SAME_PID_SCRIPT)["id"] for _ in range(2)}
    assert len(ids) == 2
    assert all(i.startswith("3.") for i in ids)
