"""Group commit (kefu/groupcommit.py) on a real SQLite file, in a real gevent process.

Each case runs a small script in a subprocess, because gevent must patch ``threading``
before peewee is imported (kefu.db refuses otherwise) and the test process is not
patched. The script builds the app on a fresh database file, creates a table of its
own, and has 50 callers hand a job each to ``groupcommit.run``: most insert a row and
return its id, a few insert rows and then raise, and one raises ``Conflict`` before
writing. What the callers got back is printed as JSON; what was committed is read from
the file by this process after the script has exited.
"""

import sqlite3

import pytest

from tests.support import run_python

# They measure this machine (CPU time, page cache, timers): they run alone (tests/passes.py).
pytestmark = [pytest.mark.ignores_test_database, pytest.mark.quiet_machine]

CALLERS = 50
BAD = {3, 17, 28, 49}  # insert two rows, then raise
CONFLICT = 11  # raises kefu.errors.Conflict before writing
GOOD = set(range(CALLERS)) - BAD - {CONFLICT}

SCRIPT = r"""
import json
import sys

mode, path, uploads, callers, bad, conflict = sys.argv[1:7]
if mode == "gevent":
    from gevent import monkey

    monkey.patch_all()

import gevent

import kefu
from kefu import db, groupcommit
from kefu.errors import Conflict

callers, conflict = int(callers), int(conflict)
bad = {int(n) for n in bad.split(",")}
app = kefu.create_app({"DATABASE_URL": "sqlite:///" + path, "JWT_SECRET": "x",
                       "UPLOAD_DIR": uploads})


class Boom(Exception):
    pass


caller_of = {}  # n -> the greenlet that called run() for job n
raised = {}  # n -> the exception job n raised


def insert(n, tag):
    sql = "INSERT INTO gc_row (n, tag) VALUES (?, ?)"
    return db.database.execute_sql(sql, (n, tag)).lastrowid


def good(n):
    return {"n": n, "rowid": insert(n, "good"),
            "in_transaction": db.database.in_transaction(),
            "in_caller": gevent.getcurrent() is caller_of[n]}


def broken(n):
    insert(n, "bad")
    insert(n, "bad again")
    raised[n] = Boom(f"boom {n}")
    raise raised[n]


def conflicting(n):
    raised[n] = Conflict(f"conversation {n} ended")
    raise raised[n]


def call(n):
    caller_of[n] = gevent.getcurrent()
    job = conflicting if n == conflict else broken if n in bad else good
    try:
        value = groupcommit.run(job, n)
    except Exception as exc:
        return {"n": n, "error": type(exc).__name__, "message": str(exc),
                "same_object": exc is raised.get(n)}
    return {"n": n, "value": value}


with app.app_context():
    with db.write():
        db.database.execute_sql(
            "CREATE TABLE gc_row (id INTEGER PRIMARY KEY, n INTEGER NOT NULL, tag TEXT NOT NULL)")
    batcher = groupcommit._batcher()
    if mode == "gevent":
        greenlets = [gevent.spawn(call, n) for n in range(callers)]
        gevent.joinall(greenlets, raise_error=True)
        outcomes = [g.value for g in greenlets]
        # A second round in which the only failure wrote nothing: no second run needed.
        redos = batcher.redos
        bad.clear()
        conflict = callers + 5
        round_two = [gevent.spawn(call, n) for n in range(callers, callers + 10)]
        gevent.joinall(round_two, raise_error=True)
        outcomes += [g.value for g in round_two]
        counters = {"transactions": batcher.transactions, "jobs": batcher.jobs,
                    "redos_first_round": redos, "redos_second_round": batcher.redos - redos}
    else:
        outcomes = [call(n) for n in range(callers)]
        counters = None
app.extensions["kefu.db"].close_all()
print(json.dumps({"outcomes": outcomes, "batcher": counters}))
"""


def run_script(tmp_path, mode):
    path = tmp_path / f"{mode}.db"
    bad = ",".join(map(str, sorted(BAD)))
    result = run_python(
        tmp_path,
        SCRIPT,
        mode,
        str(path),
        str(tmp_path / "uploads"),
        str(CALLERS),
        bad,
        str(CONFLICT),
    )
    with sqlite3.connect(path) as conn:  # what was committed, read from the file
        rows = conn.execute("SELECT id, n, tag FROM gc_row ORDER BY id").fetchall()
    return result, rows


def check_outcomes(outcomes, rows, in_caller):
    by_n = {o["n"]: o for o in outcomes}
    assert sorted(by_n) == list(range(CALLERS))
    # Every good job's row is stored exactly once, and nothing of the failed jobs.
    assert sorted(n for _, n, _ in rows) == sorted(GOOD)
    assert {tag for _, _, tag in rows} == {"good"}
    # Each good caller got its own job's return value: the id of its own row.
    stored = {row_id: n for row_id, n, _ in rows}
    for n in GOOD:
        assert by_n[n] == {
            "n": n,
            "value": {
                "n": n,
                "rowid": by_n[n]["value"]["rowid"],
                "in_transaction": True,
                "in_caller": in_caller,
            },
        }
        assert stored[by_n[n]["value"]["rowid"]] == n
    # Each failing caller got exactly the exception its own job raised.
    for n in BAD:
        assert by_n[n] == {"n": n, "error": "Boom", "message": f"boom {n}", "same_object": True}
    assert by_n[CONFLICT] == {
        "n": CONFLICT,
        "error": "Conflict",
        "message": f"conversation {CONFLICT} ended",
        "same_object": True,
    }


def test_gevent_jobs_share_transactions_and_fail_alone(tmp_path):
    result, rows = run_script(tmp_path, "gevent")
    first_round = [o for o in result["outcomes"] if o["n"] < CALLERS]
    first_rows = [row for row in rows if row[1] < CALLERS]
    # Jobs ran in the batcher's greenlet, not their callers'.
    check_outcomes(first_round, first_rows, in_caller=False)
    batcher = result["batcher"]
    assert batcher is not None, "monkey-patched SQLite must use the batcher"
    assert batcher["jobs"] == CALLERS + 10
    assert 2 <= batcher["transactions"] < CALLERS, batcher
    # Jobs that wrote and then raised made their batch run again, in savepoints ...
    assert batcher["redos_first_round"] >= 1, batcher
    # ... but a job that raised before writing needs no second run: the other nine
    # of the second round were stored once each, and it got its own error.
    assert batcher["redos_second_round"] == 0, batcher
    second = {o["n"]: o for o in result["outcomes"] if o["n"] >= CALLERS}
    assert second.pop(CALLERS + 5)["error"] == "Conflict"
    assert sorted(n for _, n, _ in rows if n >= CALLERS) == sorted(second)
    assert all(o["value"]["in_transaction"] for o in second.values())


def test_without_gevent_run_is_a_plain_transaction(tmp_path):
    result, rows = run_script(tmp_path, "plain")
    assert result["batcher"] is None
    # Each job ran inline in its caller, in its own transaction: a failing job's
    # rows are rolled back with that transaction, the others are committed.
    check_outcomes(result["outcomes"], rows, in_caller=True)


FAILING_COMMIT_SCRIPT = r"""
import json
import sys

from gevent import monkey

monkey.patch_all()

import gevent

import kefu
from kefu import db, groupcommit

path, uploads = sys.argv[1:3]
app = kefu.create_app({"DATABASE_URL": "sqlite:///" + path, "JWT_SECRET": "x",
                       "UPLOAD_DIR": uploads})
groupcommit.MAX_SECONDS = 60  # each round's jobs in one batch, however slow the machine


def insert(n, parent):
    return db.database.execute_sql(
        "INSERT INTO gc_child (n, parent) VALUES (?, ?)", (n, parent)).lastrowid


def call(n, parent):
    try:
        return {"n": n, "rowid": groupcommit.run(insert, n, parent)}
    except Exception as exc:
        return {"n": n, "error": f"{type(exc).__module__}.{type(exc).__name__}"}


def round_of(calls):
    greenlets = [gevent.spawn(call, n, parent) for n, parent in calls]
    gevent.joinall(greenlets, raise_error=True)
    return [g.value for g in greenlets]


with app.app_context():
    with db.write():
        db.database.execute_sql("CREATE TABLE gc_parent (id INTEGER PRIMARY KEY)")
        db.database.execute_sql(
            "CREATE TABLE gc_child (id INTEGER PRIMARY KEY, n INTEGER NOT NULL, parent INTEGER"
            " REFERENCES gc_parent (id) DEFERRABLE INITIALLY DEFERRED)")
        db.database.execute_sql("INSERT INTO gc_parent (id) VALUES (1)")
    # Round one shares one transaction; job 4's row has no parent, which a deferred
    # key reports only at COMMIT. Round two comes after.
    first = round_of([(n, 99 if n == 4 else 1) for n in range(8)])
    second = round_of([(n, 1) for n in range(100, 105)])
    batcher = groupcommit._batcher()
app.extensions["kefu.db"].close_all()
print(json.dumps({"first": first, "second": second, "transactions": batcher.transactions}))
"""


def test_a_failed_commit_fails_every_job_of_its_batch_and_the_next_batch_commits(tmp_path):
    path = tmp_path / "failing.db"
    result = run_python(tmp_path, FAILING_COMMIT_SCRIPT, str(path), str(tmp_path / "up"))
    # Every caller of the failed batch heard of the failure, none was left waiting.
    # peewee's error, as from any transaction, not the sqlite3 module's.
    assert result["first"] == [{"n": n, "error": "peewee.IntegrityError"} for n in range(8)]
    assert [o["n"] for o in result["second"]] == list(range(100, 105))
    assert all("rowid" in o for o in result["second"]), result["second"]
    assert result["transactions"] == 1  # only the second round's batch committed
    with sqlite3.connect(path) as conn:
        stored = [n for (n,) in conn.execute("SELECT n FROM gc_child ORDER BY n")]
    assert stored == list(range(100, 105))


GAP_SCRIPT = r"""
import json
import sys
import time

from gevent import monkey

monkey.patch_all()

import gevent

import kefu
from kefu import db, groupcommit

path, uploads = sys.argv[1:3]
app = kefu.create_app({"DATABASE_URL": "sqlite:///" + path, "JWT_SECRET": "x",
                       "UPLOAD_DIR": uploads, "GROUP_COMMIT_GAP_MS": 500})


def insert(n):
    return db.database.execute_sql("INSERT INTO gc_gap (n) VALUES (?)", (n,)).lastrowid


def timed(n):
    started = time.monotonic()
    groupcommit.run(insert, n)
    return time.monotonic() - started


with app.app_context():
    with db.write():
        db.database.execute_sql("CREATE TABLE gc_gap (id INTEGER PRIMARY KEY, n INTEGER)")
    batcher = groupcommit._batcher()
    first = timed(1)  # the batcher's first job: committed at once
    # Two jobs 0.1 s apart, right after that commit: both wait for the 0.5 s gap and
    # share one commit.
    second = gevent.spawn(timed, 2)
    gevent.sleep(0.1)
    third = gevent.spawn(timed, 3)
    gevent.joinall([second, third], raise_error=True)
    after_burst = batcher.transactions
    gevent.sleep(0.8)  # a quiet spell, longer than the gap
    quiet = timed(4)
app.extensions["kefu.db"].close_all()
print(json.dumps({"first": first, "second": second.value, "third": third.value,
                  "after_burst": after_burst, "quiet": quiet,
                  "transactions": batcher.transactions}))
"""


def test_under_load_jobs_gather_for_the_gap_and_after_a_quiet_spell_run_at_once(tmp_path):
    path = tmp_path / "gap.db"
    result = run_python(tmp_path, GAP_SCRIPT, str(path), str(tmp_path / "up"))
    assert result["after_burst"] == 2  # the first job alone, then the two together
    assert result["second"] >= 0.4  # waited for the gap (0.5 s after the first commit)
    assert result["third"] >= 0.3
    assert result["transactions"] == 3  # the job after the quiet spell: its own commit
    assert result["quiet"] < result["second"]  # ran without waiting for a gap
    with sqlite3.connect(path) as conn:
        assert [n for (n,) in conn.execute("SELECT n FROM gc_gap ORDER BY id")] == [1, 2, 3, 4]


THREAD_SCRIPT = r"""
import json
import sys

mode, path, uploads = sys.argv[1:4]
if mode == "gevent":
    from gevent import monkey

    monkey.patch_all()

from gevent.monkey import get_original

import kefu
from kefu import db, groupcommit

os_thread = get_original("threading", "get_ident")  # the OS thread, not the greenlet
app = kefu.create_app({"DATABASE_URL": "sqlite:///" + path, "JWT_SECRET": "x",
                       "UPLOAD_DIR": uploads})
statements = []  # (first word of each statement, the OS thread that ran it)


def traced(sql):
    statements.append((sql.split()[0].upper(), os_thread()))


def insert(n):
    db.database.connection().set_trace_callback(traced)  # after BEGIN, before the rest
    return db.database.execute_sql("INSERT INTO gc_thread (n) VALUES (?)", (n,)).lastrowid


with app.app_context():
    with db.write():
        db.database.execute_sql("CREATE TABLE gc_thread (id INTEGER PRIMARY KEY, n INTEGER)")
    rowid = groupcommit.run(insert, 7)
app.extensions["kefu.db"].close_all()
print(json.dumps({"main": os_thread(), "statements": statements, "rowid": rowid}))
"""


def test_under_gevent_the_commit_runs_in_a_thread_of_its_own(tmp_path):
    outcomes = {}
    for mode in ("gevent", "plain"):
        path = tmp_path / f"{mode}-thread.db"
        result = run_python(tmp_path, THREAD_SCRIPT, mode, str(path), str(tmp_path / "up"))
        threads = dict(result["statements"])
        assert sorted(threads) == ["COMMIT", "INSERT"], result["statements"]
        assert threads["INSERT"] == result["main"]  # the job runs in the hub's thread
        outcomes[mode] = threads["COMMIT"] == result["main"]
        with sqlite3.connect(path) as conn:
            assert conn.execute("SELECT id, n FROM gc_thread").fetchall() == [(result["rowid"], 7)]
    # In the server the COMMIT (the log writes that can wait for the disk) leaves the
    # hub's thread; outside gevent there is no hub to keep free and it runs inline.
    assert outcomes == {"gevent": False, "plain": True}


NESTED_SCRIPT = r"""
import json
import sys

from gevent import monkey

monkey.patch_all()

import gevent

import kefu
from kefu import db, groupcommit

path, uploads = sys.argv[1:3]
app = kefu.create_app({"DATABASE_URL": "sqlite:///" + path, "JWT_SECRET": "x",
                       "UPLOAD_DIR": uploads})


class Boom(Exception):
    pass


def insert(n):
    db.database.execute_sql("INSERT INTO gc_nested (n) VALUES (?)", (n,))
    return gevent.getcurrent() is caller["greenlet"]


def insert_then_raise(n):
    insert(n)
    raise Boom


def nesting(n):  # a job that hands another job in: it joins its batch's transaction
    return groupcommit.run(insert, n), groupcommit.run(insert, n + 1)


caller = {"greenlet": gevent.getcurrent()}
with app.app_context():
    with db.write():
        db.database.execute_sql("CREATE TABLE gc_nested (id INTEGER PRIMARY KEY, n INTEGER)")
    batcher = groupcommit._batcher()
    with gevent.Timeout(10):  # a caller waiting for the batcher it blocks: fail, not hang
        with db.write():  # the caller's own transaction, holding the writer lock
            db.database.execute_sql("INSERT INTO gc_nested (n) VALUES (1)")
            in_caller = groupcommit.run(insert, 2)
            try:
                groupcommit.run(insert_then_raise, 3)  # undone alone, in its savepoint
            except Boom:
                raised = True
        try:
            with db.write():
                groupcommit.run(insert, 4)
                raise Boom  # the caller's rollback takes the job's row with it
        except Boom:
            pass
        in_batch = groupcommit.run(nesting, 5)
app.extensions["kefu.db"].close_all()
print(json.dumps({"in_caller": in_caller, "raised": raised, "in_batch": in_batch,
                  "transactions": batcher.transactions}))
"""


def test_a_caller_in_a_transaction_and_a_job_in_a_batch_run_their_jobs_in_it(tmp_path):
    path = tmp_path / "nested.db"
    result = run_python(tmp_path, NESTED_SCRIPT, str(path), str(tmp_path / "up"))
    assert result["in_caller"] is True  # in the caller's greenlet, not the batcher's
    assert result["raised"] is True
    assert result["in_batch"] == [False, False]  # in the batcher's greenlet
    assert result["transactions"] == 1  # only the nesting job went to the batcher
    with sqlite3.connect(path) as conn:
        stored = [n for (n,) in conn.execute("SELECT n FROM gc_nested ORDER BY id")]
    assert stored == [1, 2, 5, 6]
