"""Work off the hub's thread (kefu/offload.py), in a real gevent process.

The script runs in a subprocess because the test process is not monkey-patched. Threads
are told apart by the OS thread id (gevent's patched ``get_ident`` names greenlets).
"""

import pytest

from tests.support import run_python

pytestmark = pytest.mark.ignores_test_database

POOL_SCRIPT = r"""
import json
import time

from gevent import monkey

monkey.patch_all()

import gevent

from kefu.offload import off_hub

real_sleep = monkey.get_original("time", "sleep")
native_id = monkey.get_original("threading", "get_native_id")
finished = []


def block(seconds, tag):
    real_sleep(seconds)  # a native sleep: holds its pool thread, not the GIL
    finished.append((tag, time.monotonic()))
    return native_id()


# Fill gevent's shared pool (ten threads) with slow calls, then ask for a call on a
# thread of its own: it must not wait behind them.
started = time.monotonic()
slow = [gevent.spawn(off_hub, block, 1.0, "slow") for _ in range(10)]
gevent.sleep(0.05)
own = gevent.spawn(off_hub, block, 0.01, "own", own_thread="test-own")
own.join()
own_done = time.monotonic() - started
again = off_hub(block, 0.01, "again", own_thread="test-own")  # the same thread again
# An own thread is a batch thread for the scheduler (its wake-ups do not preempt the hub);
# the hub's thread is left as it was.
import os

own_policy = off_hub(os.sched_getscheduler, 0, own_thread="test-own")


# A greenlet killed while it waits: the kill reaches it only after the call is over.
def waits():
    try:
        off_hub(block, 0.3, "killed-call", own_thread="test-kill")
    except gevent.GreenletExit:
        finished.append(("kill-raised", time.monotonic()))
        raise


victim = gevent.spawn(waits)
gevent.sleep(0.05)
victim.kill(block=True)
gevent.joinall(slow)
times = {tag: t for tag, t in finished}
print(json.dumps({"own_done": own_done, "same_thread": own.value == again,
                  "hub_thread": own.value == native_id(),
                  "own_policy": own_policy == os.SCHED_BATCH,
                  "hub_policy": os.sched_getscheduler(0) == os.SCHED_OTHER,
                  "kill_after_call": times["kill-raised"] >= times["killed-call"],
                  "victim_dead": victim.dead,
                  "killed": isinstance(victim.value, gevent.GreenletExit)}))
"""


def test_an_own_thread_does_not_wait_for_the_shared_pool_and_a_kill_waits_for_the_call(
    tmp_path,
):
    result = run_python(tmp_path, POOL_SCRIPT)
    assert result["own_done"] < 0.8  # the shared pool's calls take 1 s
    assert result["same_thread"] is True
    assert result["hub_thread"] is False
    assert result["own_policy"] is True
    assert result["hub_policy"] is True
    assert result["kill_after_call"] is True
    assert result["victim_dead"] is True
    assert result["killed"] is True


BURST_SCRIPT = r"""
import json

from gevent import monkey

monkey.patch_all()

import gevent

from kefu.offload import off_hub

real_sleep = monkey.get_original("time", "sleep")
native_id = monkey.get_original("threading", "get_native_id")
running = []  # calls inside fn at once: never more than one on one own thread
overlaps = []


def work(i):
    running.append(i)
    overlaps.append(len(running))
    real_sleep(0.0005 if i % 7 == 0 else 0)  # some calls long enough to queue others
    running.remove(i)
    if i % 10 == 3:
        raise ValueError(f"call {i} failed")
    return i * 2, native_id()


def caller(i):
    try:
        return off_hub(work, i, own_thread="burst")
    except ValueError as exc:
        return str(exc)


# Many greenlets hand calls at once, and more while earlier ones run: each gets its own
# result or its own exception, every call runs on the one thread, one at a time.
callers = [gevent.spawn(caller, i) for i in range(300)]
gevent.sleep(0.001)
callers += [gevent.spawn(caller, i) for i in range(300, 400)]
gevent.joinall(callers, raise_error=True)
values = [g.value for g in callers]
threads = {v[1] for v in values if isinstance(v, tuple)}
failed = [v for v in values if isinstance(v, str)]
good = [v[0] for v in values if isinstance(v, tuple)]
after = off_hub(work, 1, own_thread="burst")  # the thread outlived the exceptions
print(json.dumps({
    "good": good, "failed": failed, "threads": len(threads),
    "hub_thread": native_id() in threads, "most_at_once": max(overlaps),
    "after": after[0], "same_thread_after": after[1] in threads,
}))
"""


def test_an_own_thread_runs_a_burst_of_calls_one_at_a_time_and_survives_their_errors(
    tmp_path,
):
    result = run_python(tmp_path, BURST_SCRIPT)
    assert result["good"] == [i * 2 for i in range(400) if i % 10 != 3]
    assert result["failed"] == [f"call {i} failed" for i in range(400) if i % 10 == 3]
    assert result["threads"] == 1
    assert result["hub_thread"] is False
    assert result["most_at_once"] == 1
    assert result["after"] == 2
    assert result["same_thread_after"] is True
