"""WAL checkpoints off the hub (kefu/checkpoint.py) on a real SQLite file, under gevent.

As in test_groupcommit, the script runs in a subprocess because gevent must patch
``threading`` before peewee is imported. It builds the app on a fresh file, commits
about 400 pages, and drives the app's own checkpointer by hand.
"""

import sqlite3

import pytest

from tests.support import run_python

# They measure this machine (CPU time, page cache, timers): they run alone (tests/passes.py).
pytestmark = [pytest.mark.ignores_test_database, pytest.mark.quiet_machine]

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
    # Driven by hand only: its loop has not run yet (nothing has yielded to the hub since
    # it was spawned), so its first sleep already lasts the script. A run by the clock
    # in between would add to ``runs``, and could rewind the log the script measures.
    checkpointer.interval = 3600
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
        # A reader's snapshot, taken before the next commit, keeps the PASSIVE run from
        # copying that commit's pages: it cannot catch up, so the log is not rewound.
        # (The writer alone usually does that too, by committing while the pool thread
        # copies, but not when the copy ends first: then the log was rewound, and the
        # second run found it short and took no lock.)
        reader = sqlite3.connect(path, isolation_level=None)
        reader.execute("BEGIN")
        reader.execute("SELECT count(*) FROM blob_row").fetchone()
        with db.write():
            db.database.execute_sql("INSERT INTO blob_row (data) VALUES (?)", (b"x" * 4000,))
        writer = gevent.spawn(keep_writing)
        gevent.sleep(0)
        # Out of reach: the writer commits on the hub in a loop while the checkpoint's
        # thread starts, and under load it had added 7,588 pages by then. A bound it
        # passed sends this run on to the locked run, which the script tests below.
        checkpointer.rewind_pages = 10**9
        checkpointer.run()  # below rewind_pages: one PASSIVE run, without the lock
        out["log_after_first"] = checkpointer.log_pages
        out["runs_after_first"] = checkpointer.runs
        reader.execute("COMMIT")
        reader.close()
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
        # The rows, the commit past the reader's snapshot, the writer's, and the "y".
        total = ROWS + 1 + out["extra_rows"] + 1
        assert conn.execute("SELECT count(*) FROM blob_row").fetchone() == (total,)


def test_without_gevent_sqlite_checkpoints_itself(tmp_path):
    out, path = run_script(tmp_path, "plain")
    assert out == {"checkpointer": False, "autocheckpoint": 1000}
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT count(*) FROM blob_row").fetchone() == (ROWS,)


WARM_SCRIPT = r"""
import ctypes
import json
import mmap
import os
import sys
import time

from gevent import monkey

monkey.patch_all()

import kefu
from kefu import db
from kefu.checkpoint import _in_own_thread

path, uploads = sys.argv[1:3]
libc = ctypes.CDLL(None, use_errno=True)
MB = 2**20


def resident(start, length=MB):
    # mincore: the share of these bytes of the log the OS holds in memory right now.
    with open(path + "-wal", "rb") as fh:
        view = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_COPY)
        page = mmap.PAGESIZE
        first, last = start // page, (start + length - 1) // page
        flags = (ctypes.c_ubyte * (last - first + 1))()
        base = ctypes.addressof(ctypes.c_char.from_buffer(view)) + first * page
        assert libc.mincore(ctypes.c_void_p(base), (last - first + 1) * page, flags) == 0
        del base
        view.close()
    return sum(f & 1 for f in flags) / len(flags)


def drop_log_from_memory():  # what the OS may do to clean pages at any time
    fd = os.open(path + "-wal", os.O_RDONLY)
    os.fsync(fd)
    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    os.close(fd)


def settle(start):  # the reads are asynchronous
    deadline = time.monotonic() + 5
    while resident(start) < 0.9 and time.monotonic() < deadline:
        time.sleep(0.05)


app = kefu.create_app({"DATABASE_URL": "sqlite:///" + path, "JWT_SECRET": "x",
                       "UPLOAD_DIR": uploads})
checkpointer = app.extensions["kefu.checkpoint"]
checkpointer.warm_bytes = 2 * MB
with app.app_context():
    with db.write():
        db.database.execute_sql("CREATE TABLE blob_row (id INTEGER PRIMARY KEY, data BLOB)")
    for _ in range(120):  # about 10 MB of log
        with db.write():
            for _ in range(20):
                db.database.execute_sql("INSERT INTO blob_row (data) VALUES (?)", (b"x" * 4000,))
    size = os.stat(path + "-wal").st_size
    _in_own_thread(checkpointer._checkpoint)  # copies (and so reads) the whole log
    drop_log_from_memory()
    out = {"size": size, "dropped": resident(0, size)}
    # Nothing new to copy: the log is caught up, so the next commit writes over its start.
    log_pages, copied = _in_own_thread(checkpointer._checkpoint)
    settle(0)
    out.update(caught_up=copied >= log_pages, start=resident(0, 2 * MB),
               middle=resident(size // 2))
    # A log of 1,000 pages, far from a rewind: what is read back is past its end.
    drop_log_from_memory()
    end = 32 + 1000 * (4096 + 24)
    _in_own_thread(lambda: checkpointer._warm(1000, caught_up=False))
    settle(end)
    out.update(past_end=resident(end, 2 * MB), start_later=resident(0, 2 * MB))
app.extensions["kefu.db"].close_all()
print(json.dumps(out))
"""


def test_the_log_is_read_back_where_commits_write_next(tmp_path):
    """A page of the log the OS dropped would be read from disk inside a commit, on the
    hub's thread. The checkpointer has the kernel read back what is written next: the
    log's start once it is caught up (the next commit rewinds it), otherwise what lies
    past its end; and nothing else."""
    args = (str(tmp_path / "warm.db"), str(tmp_path / "uploads"))
    out = run_python(tmp_path, WARM_SCRIPT, *args)
    assert out["size"] > 8 * 2**20
    assert out["dropped"] < 0.1
    assert out["caught_up"] is True
    assert out["start"] >= 0.9
    assert out["middle"] < 0.1
    assert out["past_end"] >= 0.9
    assert out["start_later"] < 0.1
