"""WAL checkpoints off the hub (kefu/checkpoint.py) on a real SQLite file, under gevent.

As in test_groupcommit, the script runs in a subprocess because gevent must patch
``threading`` before peewee is imported. It builds the app on a fresh file, commits
about 400 pages, and drives the app's own checkpointer by hand.
"""

import sqlite3

from tests.support import run_python

ROWS = 400  # of 4,000 bytes: about a page each

SCRIPT = r"""
import json
import sys

mode, path, uploads, rows = sys.argv[1:5]
if mode == "gevent":
    from gevent import monkey

    monkey.patch_all()

import sqlite3

import gevent

import kefu
from kefu import db


def log_length():  # pages in the write-ahead log, read on a connection of its own
    with sqlite3.connect(path) as conn:
        return conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()[1]


def keep_writing():
    while True:
        with db.write():
            db.database.execute_sql("INSERT INTO blob_row (data) VALUES (?)", (b"w" * 4000,))
        gevent.sleep(0)

app = kefu.create_app({"DATABASE_URL": "sqlite:///" + path, "JWT_SECRET": "x",
                       "UPLOAD_DIR": uploads, "SQLITE_WAL_REWIND_PAGES": 12345})
checkpointer = app.extensions.get("kefu.checkpoint")
out = {"checkpointer": checkpointer is not None}
if checkpointer is not None:
    out["configured_rewind_pages"] = checkpointer.rewind_pages
with app.app_context():
    with db.write():
        db.database.execute_sql("CREATE TABLE blob_row (id INTEGER PRIMARY KEY, data BLOB)")
    with db.read():
        sql = "PRAGMA wal_autocheckpoint"
        out["autocheckpoint"] = db.database.execute_sql(sql).fetchone()[0]
    for start in range(0, int(rows), 20):
        with db.write():
            for _ in range(20):
                db.database.execute_sql("INSERT INTO blob_row (data) VALUES (?)", (b"x" * 4000,))
    if checkpointer is not None:
        # A writer commits while the pool thread copies, so no PASSIVE run catches up
        # with the log, and the log is never rewound.
        writer = gevent.spawn(keep_writing)
        gevent.sleep(0)
        checkpointer.rewind_pages = 10 * int(rows)
        checkpointer.run()  # below rewind_pages: one PASSIVE run, without the lock
        out["log_after_first"] = checkpointer.log_pages
        out["runs_after_first"] = checkpointer.runs
        # Past rewind_pages: a second run follows under the writer lock.
        checkpointer.rewind_pages = 200
        checkpointer.run()
        out["left_after_rewind_run"] = checkpointer.log_pages
        out["runs"] = checkpointer.runs
        writer.kill()
        with db.read():
            out["extra_rows"] = db.database.execute_sql(
                "SELECT count(*) FROM blob_row WHERE data = ?", (b"w" * 4000,)).fetchone()[0]
        with db.write():  # the first commit after a complete checkpoint rewinds the log
            db.database.execute_sql("INSERT INTO blob_row (data) VALUES (?)", (b"y",))
        out["log_after_rewind"] = log_length()
app.extensions["kefu.db"].close_all()
print(json.dumps(out))
"""


def run_script(tmp_path, mode):
    path = tmp_path / f"{mode}.db"
    args = (mode, str(path), str(tmp_path / "uploads"), str(ROWS))
    return run_python(tmp_path, SCRIPT, *args), path


def test_checkpoints_leave_the_hub_and_keep_the_log_bounded(tmp_path):
    out, path = run_script(tmp_path, "gevent")
    assert out["checkpointer"] is True
    assert out["autocheckpoint"] == 0  # commits never checkpoint on the hub's thread
    assert out["configured_rewind_pages"] == 12345
    assert out["log_after_first"] >= ROWS  # a PASSIVE run does not shorten the log
    assert out["runs_after_first"] == 1
    # The locked run caught up although the writer kept committing (it waited for the
    # lock), so the next commit rewound the log: what is left is that one commit.
    assert out["runs"] == 3
    assert out["left_after_rewind_run"] == 0
    assert out["extra_rows"] >= 1
    assert out["log_after_rewind"] <= 10
    with sqlite3.connect(path) as conn:  # nothing lost on the way
        total = ROWS + out["extra_rows"] + 1
        assert conn.execute("SELECT count(*) FROM blob_row").fetchone() == (total,)


def test_without_gevent_sqlite_checkpoints_itself(tmp_path):
    out, path = run_script(tmp_path, "plain")
    assert out == {"checkpointer": False, "autocheckpoint": 1000}
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT count(*) FROM blob_row").fetchone() == (ROWS,)
