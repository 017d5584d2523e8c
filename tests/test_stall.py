"""The stall monitor (kefu/realtime/stall.py) and its opt-in culprit finder
(kefu/realtime/culprits.py), in a real gevent process. The finder names the greenlet
that held the hub by CPU time and the one that held it blocked off the CPU, and does not
blame the hub for waiting idle; the monitor splits a stall into time on a core, waiting
for one, stolen by the host, and blocked."""

import pytest

from tests.support import run_python

# They measure this machine (CPU time, page cache, timers): they run alone (tests/passes.py).
pytestmark = [pytest.mark.ignores_test_database, pytest.mark.quiet_machine]

SCRIPT = r"""
import json
import time

from gevent import monkey

monkey.patch_all()

import gevent

from kefu.realtime.culprits import Culprits

culprits = Culprits().start()


def burn():
    started = time.thread_time()
    while time.thread_time() - started < 0.03:  # 30 ms of CPU without a switch
        pass
    gevent.sleep(0)  # let go mid-way, as a handler does


def nap():
    gevent.sleep(0.1)  # the hub waits idle meanwhile


def block():
    blocking_sleep(0.04)  # a call that does not yield: holds the hub off the CPU
    gevent.sleep(0)


blocking_sleep = monkey.get_original("time", "sleep")
gevent.joinall([gevent.spawn(nap), gevent.spawn(burn), gevent.spawn(block)])
print(json.dumps(culprits.report()))
"""


def test_culprits_name_the_greenlets_that_held_the_hub_and_not_the_idle_hub(tmp_path):
    report = run_python(tmp_path, SCRIPT)
    by_cpu, off_cpu = report["by_cpu"], report["off_cpu"]
    assert "burn" in by_cpu[0]["where"]
    assert by_cpu[0]["cpu_ms"] >= 25
    # The hub slept about 30 ms waiting for the nap's timer: wall time, not CPU, and
    # the hub's idle wait is never counted as off-CPU holding.
    assert all(s["cpu_ms"] < 20 for s in by_cpu if "hub" in s["where"])
    assert not any("hub" in s["where"] for s in off_cpu)
    assert "block" in off_cpu[0]["where"]
    assert off_cpu[0]["off_ms"] >= 30


SPLIT_SCRIPT = r"""
import json
import time

from gevent import monkey

monkey.patch_all()

import gevent

from kefu.realtime.stall import StallMonitor

monitor = StallMonitor(tick=0.005).start()
blocking_sleep = monkey.get_original("time", "sleep")


def burn():
    started = time.thread_time()
    while time.thread_time() - started < 0.04:  # 40 ms on the CPU without a switch
        pass


reports = []
for hold in (burn, lambda: blocking_sleep(0.04)):  # then 40 ms off it, not yielding
    gevent.sleep(0.05)  # the monitor is ticking
    monitor.reset()
    gevent.sleep(0.02)
    gevent.spawn(hold).join()
    gevent.sleep(0.02)
    reports.append(monitor.report())
print(json.dumps(reports))
"""


def test_the_worst_stall_is_split_into_cpu_and_blocked_time(tmp_path):
    """A stall spent computing is counted on the core; one spent in a call that does
    not yield, as blocked. (Waiting for a core needs a busy machine: not asserted.)

    On a VM the host may take the CPU mid-burn: the thread's own counters do not see
    that, and the split reads it from the system's steal, in 10 ms ticks. So what is
    left unexplained of the burn may be up to one such tick, plus up to one 5 ms tick
    of the hub idle before the burn began. (CI saw 21.9 ms unexplained before steal was
    read: a bound of 10 ms failed.)"""
    burned, blocked = run_python(tmp_path, SPLIT_SCRIPT)
    assert burned["worst_ms"] >= 30
    assert burned["worst_split_ms"]["on_core"] >= 30
    assert burned["worst_split_ms"]["blocked_or_idle"] < 16
    assert blocked["worst_ms"] >= 30
    split = blocked["worst_split_ms"]
    # Steal on the other CPU while the hub slept may be counted as stolen, not blocked.
    assert split["blocked_or_idle"] + split["stolen_by_host"] >= 30
    assert split["on_core"] < 10
    # Both were over 10 ms: the sum over such stalls holds that one, split alike. (It
    # may hold another too: a loaded host can delay any tick by more than 10 ms.)
    for report in (burned, blocked):
        summed = report["over_10ms_split_ms"]
        assert summed["overshoot"] >= report["worst_ms"]
        for cause, ms in report["worst_split_ms"].items():
            assert summed[cause] >= ms - 0.002  # each rounded to the microsecond


def test_time_the_host_stole_is_counted_up_to_what_the_thread_left_unexplained():
    """Steal is read for all CPUs, so it may exceed what this thread lost: the split
    gives it at most the time the thread's own counters do not explain."""
    from kefu.realtime.stall import StallMonitor

    monitor = StallMonitor()
    # slept 40 ms: 10 on a core, 5 waiting for one, 20 stolen, 5 left (blocked or idle)
    monitor._split(0.035, 0.040, 0.010, 0.005, 0.020)
    assert monitor.report()["worst_split_ms"] == {
        "on_core": 10.0,
        "waiting_for_core": 5.0,
        "stolen_by_host": 20.0,
        "blocked_or_idle": 5.0,
    }
    # Another CPU's steal (60 ms) is not this thread's beyond the 25 ms unexplained.
    monitor._split(0.045, 0.050, 0.020, 0.005, 0.060)
    split = monitor.report()["worst_split_ms"]
    assert (split["stolen_by_host"], split["blocked_or_idle"]) == (25.0, 0.0)
    summed = monitor.report()["over_10ms_split_ms"]
    assert summed["overshoot"] == 80.0 and summed["stolen_by_host"] == 45.0
