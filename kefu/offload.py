"""Calls that must not freeze the gevent hub: run in a native thread instead.

A password check costs hundreds of milliseconds of CPU; run inline it would stall every
socket of the worker; a WAL checkpoint copies pages for milliseconds. Under gevent they
run in the hub's thread pool or in a thread of their own (the call must release the
GIL for that to help: SQLite and OpenSSL's PBKDF2 do, scrypt does not, see
accounts.PASSWORD_METHOD). Outside gevent (CLI, unit tests) they simply run.
"""

import contextlib
import os
from collections import deque

from gevent import monkey
from gevent.hub import Waiter, get_hub

_own_threads = {}  # name -> an OwnThread, made in the worker at its first use


def off_hub(fn, *args, own_thread: str | None = None):
    """``fn(*args)`` in a pool thread; the calling greenlet waits, the hub does not.

    ``own_thread`` names a thread of its own for such calls instead of the hub's shared
    pool, whose ten threads a burst of password checks can fill: a checkpoint must not
    wait behind them. A greenlet killed (or timed out) while it waits still waits for
    ``fn`` to finish before the exception is raised in it: its cleanup must not touch
    what ``fn`` is still using, such as a connection half-way through a checkpoint."""
    if not monkey.is_module_patched("threading"):
        return fn(*args)
    if own_thread is not None:
        if (thread := _own_threads.get(own_thread)) is None:
            thread = _own_threads[own_thread] = OwnThread()
        call = thread.hand(fn, args)
        value, error = _outlast(call.waiter.get, call.is_done)
    else:
        result = get_hub().threadpool.spawn(_returning_error, fn, args)
        value, error = _outlast(result.get, result.ready)
    if error is not None:
        raise error
    return value


def _outlast(wait, done):
    """``wait()``'s (value, error), waiting on through whatever is thrown into the
    caller while the call still runs (``done()`` is false), and raising that then."""
    interrupted = None
    while True:
        try:
            value, error = wait()
        except BaseException as exc:
            if not done():  # thrown into this greenlet: fn still runs
                interrupted = interrupted or exc
                continue
            if interrupted is None:
                raise
            raise interrupted from exc
        if interrupted is not None:
            if error is not None:
                raise interrupted from error
            raise interrupted
        return value, error


class _Call:
    __slots__ = ("args", "fn", "result", "waiter")

    def __init__(self, fn, args, waiter):
        self.fn, self.args, self.waiter = fn, args, waiter
        self.result = None  # (value, error) once the thread has run it

    def is_done(self) -> bool:
        return self.result is not None


class OwnThread:
    """One native thread that runs the calls handed to it, in turn.

    gevent's ``ThreadPool(1)`` did this for about 45-50 us of CPU per call on this
    kind of machine (an AsyncResult, a ThreadResult with an async watcher of its own, a
    task queue on condition variables, a hub in the thread), and the group commit hands
    over its COMMIT hundreds of times a second. Here a call is a deque entry, the thread
    sleeps on one native lock, and one async watcher wakes the hub when calls are done.
    The thread holds the GIL only to take a call and to hand back its result."""

    def __init__(self):
        self._hub = get_hub()  # Waiter() would look it up each time (a thread-local)
        self._loop = self._hub.loop
        self._calls = deque()  # handed, not yet taken by the thread
        self._finished = deque()  # run, not yet handed back to their callers
        self._out = 0  # handed, not yet handed back: the watcher keeps the loop alive
        self._wake = monkey.get_original("_thread", "allocate_lock")()
        self._wake.acquire()  # held while the thread has nothing to do
        self._watcher = self._loop.async_()
        self._watcher.start(self._hand_back)
        self._watcher.ref = False
        monkey.get_original("_thread", "start_new_thread")(self._run, ())

    def hand(self, fn, args) -> _Call:
        """Queue ``fn(*args)``; the caller waits on the call's waiter (from the hub's
        thread only, as gevent's waiters are)."""
        call = _Call(fn, args, Waiter(self._hub))
        self._calls.append(call)
        if not self._out:
            self._watcher.ref = True
        self._out += 1
        try:  # noqa: SIM105 (contextlib.suppress: an object and two calls per COMMIT)
            self._wake.release()
        except RuntimeError:  # already released: the thread looks anyway
            pass
        return call

    def _run(self) -> None:
        """The thread: sleep on the lock (without the GIL), then run every queued call.
        A release that comes while it runs leaves the lock free, so the thread looks at
        the queue once more before it sleeps: no call is left behind."""
        _not_preempting()
        calls, finished, wake, watcher = self._calls, self._finished, self._wake, self._watcher
        while True:
            wake.acquire()
            while calls:
                call = calls.popleft()
                try:
                    call.result = call.fn(*call.args), None
                except BaseException as exc:  # the caller raises it; the thread lives on
                    call.result = None, exc
                finished.append(call)
                watcher.send()  # thread-safe: wakes the hub's loop

    def _hand_back(self) -> None:
        """In the hub: resume the callers whose calls are done. A caller killed
        meanwhile has left its waiter, which then just keeps the result."""
        finished = self._finished
        while finished:
            call = finished.popleft()
            self._out -= 1
            self._loop.run_callback(call.waiter.switch, call.result)
        if not self._out:
            self._watcher.ref = False


def _returning_error(fn, args):
    """In the pool's thread: (value, None) or (None, the exception). gevent's pool
    prints the traceback of every exception its task raises, to stderr, before the
    caller gets it: a COMMIT that failed on a full disk printed it once there and once
    more where the caller logged it."""
    try:
        return fn(*args), None
    except Exception as exc:
        return None, exc


def _not_preempting() -> None:
    """Make the calling thread a batch thread (Linux): waking it no longer preempts
    whatever runs on its core, the hub's thread most of all. The scheduler runs it on
    the other core when that has time, else after the running thread's time slice.

    At full load the group commit wakes its thread 1,300-1,800 times a second, and each
    wake-up took the core from the hub, which holds the GIL the thread then waits for:
    the hub waited for a core 6-9% of the time. As a batch thread: 2-4% (bench/README.md,
    thirteenth round). Nothing else changes: a batch thread has the same share of the
    CPU as any other."""
    if hasattr(os, "sched_setscheduler") and hasattr(os, "SCHED_BATCH"):
        with contextlib.suppress(OSError):
            os.sched_setscheduler(0, os.SCHED_BATCH, os.sched_param(0))
