"""Calls that must not freeze the gevent hub: run in a native thread instead.

A password check costs hundreds of milliseconds of CPU; run inline it would stall every
socket of the worker; a WAL checkpoint copies pages for milliseconds. Under gevent they
run in the hub's thread pool or in a thread of their own (the call must release the
GIL for that to help: SQLite and OpenSSL's PBKDF2 do, scrypt does not, see
accounts.PASSWORD_METHOD). Outside gevent (CLI, unit tests) they simply run.
"""

import contextlib
import os

_own_pools = {}  # name -> a pool of one thread, made in the worker at its first use


def off_hub(fn, *args, own_thread: str | None = None):
    """``fn(*args)`` in a pool thread; the calling greenlet waits, the hub does not.

    ``own_thread`` names a thread of its own for such calls instead of the hub's shared
    pool, whose ten threads a burst of password checks can fill: a checkpoint must not
    wait behind them. A greenlet killed (or timed out) while it waits still waits for
    ``fn`` to finish before the exception is raised in it: its cleanup must not touch
    what ``fn`` is still using, such as a connection half-way through a checkpoint."""
    from gevent import monkey

    if not monkey.is_module_patched("threading"):
        return fn(*args)
    import gevent
    from gevent.threadpool import ThreadPool

    if own_thread is None:
        pool = gevent.get_hub().threadpool
    elif (pool := _own_pools.get(own_thread)) is None:
        pool = _own_pools[own_thread] = ThreadPool(1)
        pool.spawn(_not_preempting).get()  # its one thread lasts: gevent's pools keep idle threads
    result = pool.spawn(_returning_error, fn, args)
    interrupted = None
    while True:
        try:
            value, error = result.get()
        except BaseException as exc:
            if not result.ready():  # thrown into this greenlet: fn still runs
                interrupted = interrupted or exc
                continue
            if interrupted is None:
                raise
            raise interrupted from exc
        if interrupted is not None:
            if error is not None:
                raise interrupted from error
            raise interrupted
        if error is not None:
            raise error
        return value


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
