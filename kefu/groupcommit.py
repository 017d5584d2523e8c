"""Group commit: the write jobs of many greenlets in one SQLite transaction.

Committing is the largest single cost of storing a message on SQLite (more of the
worker's one core than the INSERT and UPDATE together). SQLite never yields to gevent,
so the writer lock is never contended and every send would otherwise commit alone. A
job handed to ``run`` waits instead for a batcher greenlet, which the hub runs after
every greenlet that was already ready (the other sockets with a frame waiting) has
handed in its own job. The batcher runs them all in one transaction, commits once, and
wakes each caller with its own result or exception.

A job must only touch the database and return what it did (events are published by the
caller after the commit): a job that raises has its writes undone and the others are
kept, so every caller sees what it would have seen alone. Jobs run without savepoints
(two statements per job) as long as every job that fails has written nothing; when one
did, the batch is rolled back and run again with each job in its own savepoint (see
``_bare``), so a job may run twice and must not act outside the database. Jobs run in the
batcher's greenlet, so they must not reach for the caller's Flask request or app
context (services never do). A batch stops taking jobs after ``MAX_SECONDS`` of work,
so it never holds the hub much longer than one slow request would. A job that wakes
the sleeping batcher less than ``gap_seconds`` (2 ms) after the last commit waits for the
rest of the gap, so more jobs share each commit (see ``Batcher._gather``); jobs that
arrived while a COMMIT ran are the next batch at once.

The COMMIT itself runs in a native thread (``db.batch_write()``): it is
SQLite's writes to the log, which wait for the disk when it is busy, and the hub serves
other sockets meanwhile. The batcher waits for it, holding the writer lock.

The batcher also keeps the rows its jobs wrote (``kefu.rowmemo``): a message's send
reads its conversation's row from there while no other connection has committed, and
from the database otherwise.

On PostgreSQL and MySQL each greenlet has its own connection and yields while the
server works, so ``run`` is a plain ``db.write()`` there, as it is outside gevent.
"""

import time
from collections import deque

import gevent
from gevent.hub import Waiter, get_hub
from greenlet import getcurrent
from peewee import DatabaseError

from kefu import db, rowmemo, sqlcache
from kefu.db_errors import rolled_back_by_deadlock
from kefu.realtime.turns import turns

MAX_SECONDS = 0.003  # of jobs per transaction, then commit and let the hub serve others


# Under load, the least time from one commit to the next: jobs gather meanwhile.
SETTINGS = {"gap_seconds": 0.002}


def configure(gap_seconds: float) -> None:
    SETTINGS["gap_seconds"] = gap_seconds


# Runs of a job whose transaction the database rolled back to break a deadlock.
DEADLOCK_RUNS = 3


def run(job, *args):
    """``job(*args)`` inside a write transaction, possibly shared with other jobs."""
    database = db.configured  # the database itself: the proxy's lookups cost
    # _batcher(database), without its call (every message)
    batcher = _state["batcher"] if _state["checked_for"] is database else _batcher(database)
    if batcher is None:
        if database.in_transaction():  # inside the caller's transaction, in a savepoint
            with db.write():
                return job(*args)
        return _in_own_transaction(job, args)
    # A caller in a transaction is inside db.write() and holds the writer lock (which
    # the batcher would wait for): the job joins that transaction, in a savepoint.
    # Asking the lock is an attribute read; asking peewee was a lookup in gevent's
    # greenlet-local storage.
    if batcher.writer_lock.holder is getcurrent():
        with db.write():
            return job(*args)
    return batcher.submit(job, args)


def _in_own_transaction(job, args):
    """The job in a transaction of its own (PostgreSQL and MySQL, and SQLite outside
    gevent). Row locks can deadlock: two requests ending and opening one customer's
    conversations lock the same rows in another order, and the database rolls one of
    them back. That job runs again, as the batcher may run a job again: a job touches
    only the database."""
    for attempt in range(1, DEADLOCK_RUNS + 1):
        try:
            with db.write():
                return job(*args)
        except DatabaseError as exc:
            if attempt == DEADLOCK_RUNS or not rolled_back_by_deadlock(exc):
                raise


_state = {"batcher": None, "checked_for": None}


def active_batcher():
    """The batcher of the configured database, if it has one (the stall monitor reads
    its counters)."""
    return _state["batcher"] if _state["checked_for"] is db.configured else None


def _batcher(database=None):
    if database is None:
        database = db.configured
    if _state["checked_for"] is not database:  # once per configured database
        _state["checked_for"] = database
        _state["batcher"] = Batcher() if db.is_sqlite() and db.gevent_patched() else None
    return _state["batcher"]


class Batcher:
    def __init__(self):
        self.writer_lock = db.writer_lock()
        # The worker's one hub: get_hub() (and Waiter() without it) reads gevent's
        # thread-local each time.
        self._hub = get_hub()
        self._pending = deque()
        self._greenlet = None  # the batcher's greenlet, started by the first job
        self._idle = None  # the Waiter it sleeps on while no job is pending
        self._committed = 0.0  # when the last batch committed
        self.transactions = 0  # committed batches, and the jobs they carried (tests read them)
        self.jobs = 0
        self.redos = 0  # batches run a second time, in savepoints (see _bare)
        self.memo = rowmemo.RowMemo()  # what the jobs wrote, for the next batches

    def submit(self, job, args):
        # A bare Waiter rather than an AsyncResult: one caller, woken once, and no link
        # machinery on the path of every message.
        waiter = Waiter(self._hub)
        self._pending.append((job, args, waiter))
        if self._greenlet is None:
            self._greenlet = gevent.spawn(self._serve)  # behind the greenlets already ready
        elif self._idle is not None:
            idle, self._idle = self._idle, None
            self._hub.loop.run_callback(idle.switch, None)  # likewise
        value = waiter.get()
        # Every caller of a batch wakes in the same loop iteration: what each does next
        # (replies, pushes) takes turns with the rest of the hub.
        turns.take()
        return value

    def _serve(self) -> None:
        """The batcher, for the worker's life. It keeps one pooled connection from batch
        to batch (checking one out and back in for each cost about as much as one of
        its statements), and takes a fresh one after a batch failed."""
        try:
            while True:
                try:
                    with db.read():
                        while self._drain():
                            self._sleep()
                            self._gather()
                except Exception as exc:  # no connection to be had: nothing can be stored
                    self._fail([], exc)
                if not self._pending:
                    self._sleep()
        finally:  # killed: fail what waits, and let the next job start a new batcher
            self._greenlet = self._idle = None
            self._fail([], RuntimeError("the group-commit batcher stopped"))

    def _gather(self) -> None:
        """Woken by a job less than the gap after the last commit (the worker is busy):
        let more jobs join it until the gap is over. A commit costs as much as a few
        messages, and a batch of 16 costs about 15% less CPU per message than one of 6
        (4,000 msgs/s: 241-244 -> 203-230 us with a 2 ms gap; median latency +1-3 ms).
        A job arriving after a quiet spell runs at once."""
        wait = self._committed + SETTINGS["gap_seconds"] - time.perf_counter()
        if wait > 0:
            gevent.sleep(wait)

    def _sleep(self) -> None:
        self._idle = Waiter(self._hub)
        self._idle.get()

    def _drain(self) -> bool:
        """Run batches until no job is pending; False once one failed to commit."""
        while self._pending:
            if not self._run_batch():
                return False
            if self._pending:
                turns.take()  # serve other sockets between transactions
        return True

    def _run_batch(self) -> bool:
        taken = []  # (job, args, waiter), in the order they ran
        try:
            try:
                results = self._transaction(taken, savepoints=False)
            except _Redo:  # rolled back: the same jobs again, each in a savepoint
                self.redos += 1
                results = self._transaction(taken, savepoints=True)
        except Exception as exc:
            # BEGIN or COMMIT failed: nothing of the batch was stored.
            self._fail(taken, exc)
            return False
        self.transactions += 1
        self.jobs += len(taken)
        self._committed = time.perf_counter()
        self._wake(taken, results)
        return True

    def _transaction(self, taken: list, savepoints: bool) -> list:
        """One transaction: the jobs in ``taken`` (a second run, in savepoints), or on a
        first run as many pending jobs as fit in ``MAX_SECONDS``, each appended to
        ``taken``. Returns each job's (value, error)."""
        memo = self.memo
        try:
            with db.batch_write() as connection:
                memo.begin(connection)
                rowmemo.activate(memo)
                sqlcache.in_batch(connection)
                try:
                    if savepoints:
                        return [_in_savepoint(connection, memo, *item[:2]) for item in taken]
                    results = _bare(connection, memo, self._pending, taken)
                finally:
                    rowmemo.activate(None)  # the COMMIT lets other greenlets run
                    sqlcache.in_batch(None)
        except BaseException:
            memo.forget()  # rolled back: what the jobs wrote is not in the database
            raise
        return results

    def _fail(self, taken: list, exc: Exception) -> None:
        """Wake the jobs ``taken`` and every job still pending with ``exc``: those would
        meet the same database, and must not be retried forever."""
        taken += self._pending
        self._pending.clear()
        self._wake(taken, [(None, exc)] * len(taken))

    def _wake(self, taken: list, results: list) -> None:
        """Resume each caller of ``taken`` with its (value, error), from the hub (a
        Waiter is switched to only from there); a caller killed meanwhile has left its
        waiter, which then just keeps the result."""
        run_callback = self._hub.loop.run_callback
        for (_, _, waiter), (value, error) in zip(taken, results, strict=True):
            if error is None:
                run_callback(waiter.switch, value)
            else:
                run_callback(waiter.throw, error)


class _Redo(Exception):
    """A job failed after it had written, outside a savepoint: the batch must be rolled
    back and run again with each job in its own savepoint."""


def _bare(connection, memo, pending: deque, taken: list) -> list:
    """As many ``pending`` jobs as fit in ``MAX_SECONDS``, each moved to ``taken``, run
    without savepoints; returns each one's (value, None), or (None, exception) for a
    job that failed having changed no row. (One loop here, not a call per job: every
    message.)

    Most jobs fail, if at all, before they write (a check, or the INSERT a unique index
    refuses, which SQLite undoes by itself), so no savepoint is set: two statements
    fewer per job. ``total_changes`` counts every row a completed statement changed, so
    a job that did write before it failed is caught, and undone by running the batch
    again (``_Redo``); jobs only touch the database, so running one twice is safe."""
    results = []
    perf_counter = time.perf_counter
    started = perf_counter()
    while pending and perf_counter() - started < MAX_SECONDS:
        item = pending.popleft()
        taken.append(item)
        job = item[0]
        before = connection.total_changes
        try:
            value = job(*item[1])
        except Exception as exc:
            memo.forget()
            if connection.total_changes != before or not connection.in_transaction:
                raise _Redo from exc
            results.append((None, exc))
            continue
        if not getattr(job, "keeps_rows", False):
            memo.forget()
        results.append((value, None))
    return results


def _in_savepoint(connection, memo, job, args):
    """(value, None), or (None, exception) with the job's writes undone."""
    connection.execute("SAVEPOINT kefu_job")
    try:
        value = job(*args)
    except Exception as exc:
        memo.forget()
        connection.execute("ROLLBACK TO kefu_job")
        connection.execute("RELEASE kefu_job")
        return None, exc
    connection.execute("RELEASE kefu_job")
    if not getattr(job, "keeps_rows", False):
        memo.forget()
    return value, None
