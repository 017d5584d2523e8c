"""WAL checkpoints off the hub (kefu/checkpoint.py) on a real SQLite file, under gevent.

As in test_groupcommit, the script runs in a subprocess because gevent must patch
``threading`` before peewee is imported. It builds the app on a fresh file, commits
about 400 pages, and drives the app's own checkpointer by hand.
"""

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ROWS = 400  # of 4,000 bytes: about a page each

SCRIPT = r"""
import json
import sys

mode, path, uploads, rows = sys.argv[1:5]
if mode == "gevent":
    from gevent import monkey

    monkey.patch_all()

import gevent

import kefu
from kefu import db


def keep_writing():
    while True:
        with db.write():
            db.database.execute_sql("INSERT INTO blob_row (data) VALUES (?)", (b"w" * 4000,))
        gevent.sleep(0)

app = kefu.create_app({"DATABASE_URL": "sqlite:///" + path, "JWT_SECRET": "x",
                       "UPLOAD_DIR": uploads})
checkpointer = app.extensions.get("kefu.checkpoint")
out = {"checkpointer": checkpointer is not None}
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
        checkpointer.rewind_pages = 200
        checkpointer.run()  # PASSIVE: copies the log, which stays as long as it was
        out["log_after_first"] = checkpointer._log_pages
        writer = gevent.spawn(keep_writing)  # would keep the log from ever being caught up
        gevent.sleep(0)
        checkpointer.run()  # past rewind_pages: under the writer lock, so it catches up
        writer.kill()
        with db.read():
            out["extra_rows"] = db.database.execute_sql(
                "SELECT count(*) FROM blob_row WHERE data = ?", (b"w" * 4000,)).fetchone()[0]
        with db.write():  # the first commit after a complete checkpoint rewinds the log
            db.database.execute_sql("INSERT INTO blob_row (data) VALUES (?)", (b"y",))
        checkpointer.run()
        out["log_after_rewind"] = checkpointer._log_pages
        out["runs"] = checkpointer.runs
app.extensions["kefu.db"].close_all()
print(json.dumps(out))
"""


def run_script(tmp_path, mode):
    script = tmp_path / "checkpoint_script.py"
    script.write_text(SCRIPT)
    path = tmp_path / f"{mode}.db"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, str(script), mode, str(path), str(tmp_path / "uploads"), str(ROWS)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1]), path


def test_checkpoints_leave_the_hub_and_keep_the_log_bounded(tmp_path):
    out, path = run_script(tmp_path, "gevent")
    assert out["checkpointer"] is True
    assert out["autocheckpoint"] == 0  # commits never checkpoint on the hub's thread
    assert out["log_after_first"] >= ROWS  # a passive run cannot rewind the log
    # The locked run caught up although a writer was committing, so the next commit
    # rewound the log: what is left is the last few commits.
    # The writer committed once before the run, then waited for the lock until the
    # run was over (it is stopped right after): no commit can race the locked run.
    assert 1 <= out["extra_rows"] <= 2
    assert out["log_after_rewind"] <= 10
    assert out["runs"] == 3
    with sqlite3.connect(path) as conn:  # nothing lost on the way
        total = ROWS + out["extra_rows"] + 1
        assert conn.execute("SELECT count(*) FROM blob_row").fetchone() == (total,)


def test_without_gevent_sqlite_checkpoints_itself(tmp_path):
    out, path = run_script(tmp_path, "plain")
    assert out == {"checkpointer": False, "autocheckpoint": 1000}
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT count(*) FROM blob_row").fetchone() == (ROWS,)
