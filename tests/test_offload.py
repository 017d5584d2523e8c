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
