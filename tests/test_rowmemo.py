"""The group commit's row memo (kefu/rowmemo.py): a send reads its conversation's row
from the memo only while that is what the database holds.

Each case runs a script in a gevent process (as in test_groupcommit.py), so that sends
go through the batcher and its memo. The script opens a conversation, sends two
messages (the memo then holds the row), changes the conversation in one of the ways
the memo must notice, sends again and prints what each send returned. This process
then reads the file: every message's sequence number and the conversation's counters
must be what the sends reported.
"""

import sqlite3

import pytest

from tests.support import run_python

pytestmark = pytest.mark.ignores_test_database

SCRIPT = r"""
import json
import sqlite3
import subprocess
import sys
import time

from gevent import monkey

monkey.patch_all()

import gevent

import kefu
from kefu import db, groupcommit, rowmemo
from kefu.principal import principal_for
from kefu.errors import KefuError
from kefu.migrate import upgrade
from kefu.models import ENDED, SENDER_USER
from kefu.services import accounts, conversations, message_pages, messages, presence, targets

case, path, uploads = sys.argv[1:4]
url = "sqlite:///" + path
upgrade(url)
app = kefu.create_app({"DATABASE_URL": url, "JWT_SECRET": "x", "UPLOAD_DIR": uploads})
online = set()
presence.use(lambda: frozenset(online))


agent_names = []  # as each send's event names its agent


def send(who, conversation_id, text):
    try:
        view, events, _ = messages.send(who, conversation_id, text)
    except KefuError as exc:
        return {"error": type(exc).__name__, "message": exc.message}
    ref = events[0].conversation
    agent_names.append(ref.agent.nickname)
    return {"seq": view.seq, "kefu_id": ref.kefu_id, "unread": ref.unread_count,
            "kefu_unread": ref.kefu_unread_count}


def elsewhere(sql, *params):
    # Another process, as the CLI or a second tool would be.
    code = ("import sqlite3, sys; c = sqlite3.connect(sys.argv[1]); "
            "c.execute(sys.argv[2], [int(p) for p in sys.argv[3:]]); c.commit()")
    subprocess.run([sys.executable, "-c", code, path, sql, *map(str, params)], check=True)


def write_then_fail(conversation_id):
    db.database.execute_sql(
        "UPDATE conversation SET updated_at = updated_at WHERE id = ?", (conversation_id,))
    raise RuntimeError("failed after writing")


@rowmemo.keeps_rows
def rename(user_id, nickname):
    # A profile edited on the batcher's own connection: no other connection commits, so
    # the memo is not emptied (it keeps no user row).
    db.database.execute_sql('UPDATE "user" SET nickname = ? WHERE id = ?', (nickname, user_id))


@rowmemo.keeps_rows
def keeper_that_fails(conversation_id):
    # Changes the row the memo keeps (a send's Target), which its own failure must take
    # back out of the memo.
    rowmemo.current().get(conversation_id).last_seq += 10
    write_then_fail(conversation_id)


with app.app_context():
    staff = {}
    for name in ("a", "b"):
        user, profile, _ = accounts.create_agent(name, max_concurrent=5)
        online.add(profile.id)
        staff[profile.id] = principal_for(user)
    customer, _ = accounts.create_user("u")
    who = principal_for(customer)
    conv, _ = conversations.open_for_user(who)
    agent = staff[conv.agent_id]
    other = next(kefu_id for kefu_id in staff if kefu_id != conv.agent_id)
    out = {"before": [send(who, conv.id, "one"), send(agent, conv.id, "two")],
           "other_kefu_id": other}
    batcher = groupcommit.active_batcher()
    out["memo_held_it"] = batcher.memo.get(conv.id) is not None
    if case == "ended_by_another_connection":
        raw = sqlite3.connect(path)
        raw.execute("UPDATE conversation SET status = ? WHERE id = ?", (ENDED, conv.id))
        raw.commit()
        raw.close()
        out["after"] = [send(who, conv.id, "three")]
    elif case == "reassigned_by_another_process":
        elsewhere("UPDATE conversation SET kefu_id = ? WHERE id = ?", other, conv.id)
        out["after"] = [send(who, conv.id, "three"), send(agent, conv.id, "four")]
    elif case == "ended_by_another_job":
        conversations.end(conv.id, who)
        out["after"] = [send(who, conv.id, "three")]
    elif case == "read_by_another_job":
        first = send(who, conv.id, "three")
        ids = [m.id for m in message_pages.page(agent, conv.id, 1, 10)]
        conversations.mark_read(conv.id, agent, ids, SENDER_USER)
        out["after"] = [first, send(who, conv.id, "four")]
    elif case == "people_expired":
        groupcommit.run(rename, agent.user_id, "renamed")
        targets.monotonic = lambda: time.monotonic() + 60  # every kept people's entry ends
        out["after"] = [send(who, conv.id, "three")]
        out["agent_named"] = agent_names[-1]
    elif case == "rolled_back":
        # One batch: a send, then a job that fails having written. The batch is rolled
        # back and run again, each job in a savepoint.
        redos = batcher.redos
        jobs = [gevent.spawn(send, who, conv.id, "three"),
                gevent.spawn(groupcommit.run, write_then_fail, conv.id)]
        gevent.joinall(jobs)
        out["redone"] = batcher.redos - redos
        out["after"] = [jobs[0].value, send(agent, conv.id, "four")]
    elif case == "keeper_fails_in_savepoint":
        redos = batcher.redos
        jobs = [gevent.spawn(send, who, conv.id, "three"),
                gevent.spawn(groupcommit.run, write_then_fail, conv.id),
                gevent.spawn(groupcommit.run, keeper_that_fails, conv.id)]
        gevent.joinall(jobs)
        out["redone"] = batcher.redos - redos
        out["after"] = [jobs[0].value, send(agent, conv.id, "four")]
    out["last"] = send(who, conv.id, "last")
app.extensions["kefu.db"].close_all()
print(json.dumps(out))
"""


def sent(seq, kefu_id, unread, kefu_unread) -> dict:
    """What a send reports: its sequence number and the event's agent and counters."""
    return {"seq": seq, "kefu_id": kefu_id, "unread": unread, "kefu_unread": kefu_unread}


def check_later_sends(out, row, *counters):
    """The sends after the change got sequence numbers 3, 4, ..., the same agent and
    these (unread, kefu_unread) counters, and the row holds the last of them."""
    kefu_id = out["before"][0]["kefu_id"]
    expected = [sent(seq, kefu_id, *pair) for seq, pair in enumerate(counters, 3)]
    assert [*out["after"], out["last"]] == expected
    assert row == (2 + len(counters), *counters[-1])


def run_case(tmp_path, case):
    path = tmp_path / "memo.db"
    out = run_python(tmp_path, SCRIPT, case, str(path), str(tmp_path / "uploads"))
    with sqlite3.connect(path) as conn:
        seqs = [s for (s,) in conn.execute("SELECT seq FROM message ORDER BY id")]
        row = conn.execute(
            "SELECT last_seq, unread_count, kefu_unread_count FROM conversation"
        ).fetchone()
    assert out["before"] == [
        sent(1, out["before"][0]["kefu_id"], 0, 1),
        sent(2, out["before"][0]["kefu_id"], 1, 1),
    ]
    assert out["memo_held_it"], "the sends must have gone through the memo"
    # Stored sequence numbers run without a gap, and the row's counters are the last
    # ones reported.
    assert seqs == list(range(1, len(seqs) + 1))
    assert row[0] == len(seqs)
    return out, row


def test_a_row_changed_by_another_connection_is_read_again(tmp_path):
    out, _ = run_case(tmp_path, "ended_by_another_connection")
    ended = {"error": "SentAfterEnd", "message": "Conversation has ended"}
    assert out["after"] == [ended]
    assert out["last"] == ended


def test_a_row_changed_by_another_process_is_read_again(tmp_path):
    out, row = run_case(tmp_path, "reassigned_by_another_process")
    other = out["other_kefu_id"]
    user_send, old_agent_send = out["after"]
    assert user_send == sent(3, other, 1, 2)
    assert old_agent_send == {
        "error": "NotFound",
        "message": "Conversation not found or no permission",
    }
    assert out["last"] == sent(4, other, 1, 3)
    assert row == (4, 1, 3)


def test_a_job_that_does_not_keep_the_memo_empties_it(tmp_path):
    out, _ = run_case(tmp_path, "ended_by_another_job")
    assert out["after"] == [{"error": "SentAfterEnd", "message": "Conversation has ended"}]


def test_counters_reset_by_another_job_are_read_again(tmp_path):
    out, row = run_case(tmp_path, "read_by_another_job")
    # The agent read the customer's messages between the third send and the fourth.
    check_later_sends(out, row, (1, 2), (1, 1), (1, 2))


@pytest.mark.parametrize("case", ["rolled_back", "keeper_fails_in_savepoint"])
def test_a_rolled_back_batch_or_job_leaves_nothing_in_the_memo(tmp_path, case):
    out, row = run_case(tmp_path, case)
    assert out["redone"] == 1, out
    check_later_sends(out, row, (1, 2), (2, 2), (2, 3))


def test_people_kept_with_the_row_end_when_their_entry_does(tmp_path):
    out, row = run_case(tmp_path, "people_expired")
    # The memo still held the conversation's Target, made with the old profile: once
    # the people's entry has expired, the event names the agent as the database does.
    assert out["agent_named"] == "renamed"
    check_later_sends(out, row, (1, 2), (1, 3))
