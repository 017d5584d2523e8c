"""The stall monitor's opt-in culprit finder (kefu/realtime/stall.py ``Culprits``), in a
real gevent process: it names the greenlet that held the hub, by CPU time, and does not
blame the hub for waiting idle."""

from tests.support import run_python

SCRIPT = r"""
import json
import time

from gevent import monkey

monkey.patch_all()

import gevent

from kefu.realtime.stall import Culprits

culprits = Culprits().start()


def burn():
    started = time.thread_time()
    while time.thread_time() - started < 0.03:  # 30 ms of CPU without a switch
        pass
    gevent.sleep(0)  # let go mid-way, as a handler does


def nap():
    gevent.sleep(0.1)  # the hub waits idle meanwhile


gevent.joinall([gevent.spawn(nap), gevent.spawn(burn)])
print(json.dumps(culprits.report()))
"""


def test_culprits_name_the_greenlet_that_held_the_hub_and_not_the_idle_hub(tmp_path):
    stints = run_python(tmp_path, SCRIPT)
    assert stints, "no stint was recorded"
    first = stints[0]
    assert "burn" in first["where"]
    assert first["cpu_ms"] >= 25
    # The hub slept about 70 ms waiting for the nap's timer: wall time, not CPU.
    assert all(s["cpu_ms"] < 20 for s in stints if "hub" in s["where"])
