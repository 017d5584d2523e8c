"""SQLite WAL checkpoints in a native thread, not in the hub's.

SQLite copies the write-ahead log back into the database file (a checkpoint) from
inside the commit that fills the log past 1,000 pages. That copy, and the fsyncs around
it, were two thirds of the cost of committing a message, paid on the hub's thread while
every socket waited. Under gevent the server turns that off (``wal_autocheckpoint=0``
on its connections) and runs this instead: every ``interval`` seconds a PASSIVE
checkpoint on a connection of its own, in a native thread of its own (not gevent's
shared pool, which a burst of password checks can fill). SQLite releases the GIL
while it copies, and PASSIVE never waits for readers or writers, so the hub serves
sockets and the batcher commits meanwhile.

A checkpoint that runs while others commit cannot catch up with the log's end, and the
log is only rewound once one has, so under sustained writes it would grow without
bound. When it has grown past ``rewind_pages``, a second checkpoint follows at once
under the in-process writer lock (writes wait, the hub does not): it has only the
commits made while the first one copied to catch up with, and the next commit rewinds
the log. (Taking the lock for the whole copy instead held every send for 14-22 ms at
4,000 messages/s, twice every 1.4 s: the slowest one percent of the messages.) Both
files are flushed to disk before the lock is taken, so the locked run's own fsync has
only its few pages left to write. The rewind length is a setting
(``KEFU_SQLITE_WAL_REWIND_PAGES``, 32,768 pages or 128 MB of log by default): every
rewind holds writes for a locked run and makes the rewinding commit sync the log's new
header (in the commit's thread since the group commit moved there; sends wait for it),
and at 8,192 pages that happened every second at 4,000 messages/s.
"""

import logging
import os
import sqlite3
import time

import gevent

from kefu import failures
from kefu.offload import off_hub

log = logging.getLogger(__name__)
WAL_HEADER_BYTES = 32  # then frames: a 24-byte header and one database page each
WAL_FRAME_HEADER_BYTES = 24
# How much of the log to have read back: about 0.8 s of commits at 4,000 messages/s.
WARM_BYTES = 32 * 2**20
WARM_CHUNK_BYTES = 2**20
_active = {"checkpointer": None}


def active_checkpointer():
    """The worker's checkpointer, once started (the stall monitor reads its counters)."""
    return _active["checkpointer"]


class Checkpointer:
    def __init__(self, path: str, writer_lock, rewind_pages: int, interval: float = 0.25):
        self.path = path
        self.writer_lock = writer_lock
        self.interval = interval
        self.rewind_pages = rewind_pages
        self.warm_bytes = WARM_BYTES
        self._page_size = 4096  # read from the database with the first checkpoint
        self._connection = None
        self.log_pages = 0  # pages the last run left in the log (tests read it)
        self.runs = 0
        # How often, and at most how long, writes waited for a catch-up run (the stall
        # monitor reports them: the hub runs meanwhile, but every send waits).
        self.locked_runs = 0
        self.locked_worst = 0.0

    def start(self) -> "Checkpointer":
        _active["checkpointer"] = self
        gevent.spawn(self._loop)
        return self

    def _loop(self) -> None:
        """Every ``interval``: a failed checkpoint leaves the log to the next one. A full
        disk fails four times a second: said once, then counted (``kefu.failures``)."""
        while True:
            gevent.sleep(self.interval)
            try:
                self.run()
            except Exception as exc:
                failures.repeated(log, "WAL checkpoint failed", exc)
            else:
                failures.recovered(log, "WAL checkpoint failed")

    def run(self) -> None:
        log_pages, _copied = _in_own_thread(self._checkpoint)
        if log_pages >= self.rewind_pages:
            _in_own_thread(self._flush_files)
            with self.writer_lock:  # no commit can add to the log: this one catches up
                started = time.perf_counter()
                log_pages, copied = _in_own_thread(self._checkpoint)
                self.locked_worst = max(self.locked_worst, time.perf_counter() - started)
                self.locked_runs += 1
            if copied >= log_pages:  # caught up: the next commit starts the log over
                log_pages = 0
        self.log_pages = log_pages

    def _flush_files(self) -> None:
        """In the checkpoint's thread, before the locked run: write the database and
        the log to disk. The locked run ends with an fsync of the database, which would
        otherwise flush every page the unlocked run copied (it could not sync them: a
        run that does not reach the log's end leaves that to a later one) and made
        writes wait 10-130 ms while the disk was busy. Now it flushes only what was
        copied under the lock. An fsync more is never less safe."""
        for name in (self.path, self.path + "-wal"):
            try:
                fd = os.open(name, os.O_RDONLY)
            except FileNotFoundError:
                continue
            try:
                os.fsync(fd)
            finally:
                os.close(fd)

    def _checkpoint(self) -> tuple[int, int]:
        """In a pool thread: one PASSIVE checkpoint. The log's length in pages when it
        started, and how many of them are now copied back into the database."""
        if self._connection is None:
            self._connection = sqlite3.connect(
                self.path, isolation_level=None, check_same_thread=False, timeout=5
            )
            self._page_size = self._connection.execute("PRAGMA page_size").fetchone()[0]
        _busy, log_pages, copied = self._connection.execute(
            "PRAGMA wal_checkpoint(PASSIVE)"
        ).fetchone()
        self.runs += 1
        log_pages, copied = max(log_pages, 0), max(copied, 0)
        self._warm(log_pages, caught_up=copied >= log_pages)
        return log_pages, copied

    def _warm(self, log_pages: int, caught_up: bool) -> None:
        """Have the kernel read back, in the background, the parts of the log file that
        commits write next: past the log's end, and its start once a rewind is near.

        SQLite writes the log over from its start after a rewind, and a frame (a 24-byte
        header and a page) never starts on a page of the file, so a write into a page
        the OS no longer holds must first read it from disk, in the committing thread
        (the hub's, until the group commit's COMMIT moved to a thread of its own). At
        4,000 messages/s ``perf`` showed the hub blocked in exactly such reads (ext4's
        ``ext4_block_write_begin``) at the start of the log after each rewind, for 126-339
        ms when the disk was busy."""
        if not hasattr(os, "posix_fadvise"):  # not on macOS: a hint, never a failure
            return
        past_end = WAL_HEADER_BYTES + log_pages * (self._page_size + WAL_FRAME_HEADER_BYTES)
        if caught_up:  # the next commit rewinds: nothing is written past the end soon
            ahead = [0]
        elif log_pages >= self.rewind_pages // 2:
            ahead = [past_end, 0]
        else:
            ahead = [past_end]
        try:
            fd = os.open(self.path + "-wal", os.O_RDONLY)
        except OSError:
            return
        try:
            for start in ahead:
                # One call reads no more than the device's readahead window (8 MB here).
                for offset in range(start, start + self.warm_bytes, WARM_CHUNK_BYTES):
                    os.posix_fadvise(fd, offset, WARM_CHUNK_BYTES, os.POSIX_FADV_WILLNEED)
        except OSError:
            pass  # a file system without the hint: commits just read what they need
        finally:
            os.close(fd)


def _in_own_thread(fn):
    """``fn()`` in the checkpointer's native thread, not gevent's shared pool."""
    return off_hub(fn, own_thread="sqlite-checkpoint")
