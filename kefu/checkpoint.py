"""SQLite WAL checkpoints in a native thread, not in the hub's.

SQLite copies the write-ahead log back into the database file (a checkpoint) from
inside the commit that fills the log past 1,000 pages. That copy, and the fsyncs around
it, were two thirds of the cost of committing a message, paid on the hub's thread while
every socket waited. Under gevent the server turns that off (``wal_autocheckpoint=0``
on its connections) and runs this instead: every ``interval`` seconds a PASSIVE
checkpoint on a connection of its own, in gevent's thread pool. SQLite releases the GIL
while it copies, and PASSIVE never waits for readers or writers, so the hub serves
sockets and the batcher commits meanwhile.

A checkpoint that runs while others commit cannot catch up with the log's end, and the
log is only rewound once one has, so under sustained writes it would grow without
bound. When it has grown past ``rewind_pages`` the next checkpoint holds the in-process
writer lock (writes wait, the hub does not), catches up, and the next commit rewinds
the log.
"""

import logging
import sqlite3

import gevent

from kefu.offload import off_hub

log = logging.getLogger(__name__)


class Checkpointer:
    def __init__(self, path: str, writer_lock, interval: float = 0.25, rewind_pages=8192):
        self.path = path
        self.writer_lock = writer_lock
        self.interval = interval
        self.rewind_pages = rewind_pages
        self._connection = None
        self._log_pages = 0  # pages in the log after the last checkpoint
        self.runs = 0

    def start(self) -> "Checkpointer":
        gevent.spawn(self._loop)
        return self

    def _loop(self) -> None:
        while True:
            gevent.sleep(self.interval)
            try:
                self.run()
            except Exception:  # a failed checkpoint leaves the log to the next one
                log.exception("WAL checkpoint failed")

    def run(self) -> None:
        if self._log_pages < self.rewind_pages:
            self._log_pages = off_hub(self._checkpoint)
            return
        with self.writer_lock:  # no commit can add to the log: this one catches up
            self._log_pages = off_hub(self._checkpoint)

    def _checkpoint(self) -> int:
        """In a pool thread: one PASSIVE checkpoint; the log's length in pages."""
        if self._connection is None:
            self._connection = sqlite3.connect(
                self.path, isolation_level=None, check_same_thread=False, timeout=5
            )
        _busy, log_pages, _copied = self._connection.execute(
            "PRAGMA wal_checkpoint(PASSIVE)"
        ).fetchone()
        self.runs += 1
        return log_pages if log_pages > 0 else 0
