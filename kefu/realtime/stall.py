"""An opt-in monitor of the gevent hub's stalls, for benchmarks and diagnosis.

With ``KEFU_STALL_MONITOR=1`` gunicorn's ``post_worker_init`` starts one greenlet in the
worker that sleeps ``KEFU_STALL_TICK_MS`` (default 5 ms) in a loop and records by how
much each sleep overshot: while some greenlet holds the hub (CPU work, a blocking call)
no other socket is served, and the overshoot is how long that lasted. The worker's WSGI
app is wrapped so ``GET /_kefu/stall`` returns the figures as JSON (``?reset=1`` starts a
new measuring window, ``?collect=1`` times a full garbage collection, ``?types=1`` counts
the tracked objects by type). The worst stall, and all over 10 ms together, are split
by the hub thread's own scheduler counters into time on a core, time waiting for one
(the OS ran other threads), time the hypervisor took the CPUs (a VM's steal, which
neither counter sees), and the rest (blocked in a call that does not yield). When the
variable is unset nothing is started or wrapped.
"""

import gc
import json
import os
import threading
import time
from collections import Counter

import gevent

from kefu import config, groupcommit
from kefu.checkpoint import active_checkpointer
from kefu.realtime.culprits import Culprits
from kefu.realtime.turns import turns

PATH = "/_kefu/stall"
BUCKETS_MS = (1, 2, 5, 10, 20, 50, 100, 250, 1000)


class StallMonitor:
    def __init__(self, tick: float = 0.005):
        self.tick = tick
        self.culprits = None  # a Culprits tracer, when asked for
        self.reset()
        self._greenlet = None

    def reset(self) -> None:
        # A sleep that began before this moment spans whatever ran meanwhile, such as
        # the report that asked for the reset (counting 10,000 sockets' objects takes
        # 100 ms): not this window's stall.
        self._window_start = time.perf_counter()
        self.gc_worst = 0.0
        self.gc_worst_cpu = 0.0  # the worker thread's CPU time in that collection
        self.gc_total = 0.0
        self.gc_runs = [0, 0, 0]
        self.started = time.monotonic()
        self.ticks = 0
        self.worst = 0.0
        self.total = 0.0
        self.histogram = [0] * (len(BUCKETS_MS) + 1)  # overshoots above each bound
        # The worst stall's sleep, split (seconds): the hub thread on a core, waiting
        # for one (runnable: the OS ran other threads), stolen (see ``_Clocks``), and
        # none of those (blocked in a call that does not yield, or the hub idle in its
        # poll for up to one tick).
        self.worst_split = (0.0, 0.0, 0.0, 0.0)
        self.long_split = [0.0] * 5  # the overshoot and its split, summed over > 10 ms
        if self.culprits is not None:
            self.culprits.reset()

    def start(self) -> "StallMonitor":
        self._greenlet = gevent.spawn(self._run)
        self._gc_started = 0.0
        gc.callbacks.append(self._on_gc)  # collections are a classic cause of stalls
        return self

    def _on_gc(self, phase: str, info: dict) -> None:
        if phase == "start":
            self._gc_started = time.perf_counter()
            self._gc_cpu_started = time.thread_time()
            return
        took = time.perf_counter() - self._gc_started
        self.gc_runs[info["generation"]] += 1
        self.gc_total += took
        if took > self.gc_worst:
            # Wall time includes any time the OS ran other processes instead; the CPU
            # time tells how much of it the collection itself cost.
            self.gc_worst = took
            self.gc_worst_cpu = time.thread_time() - self._gc_cpu_started

    def _run(self) -> None:
        tick, clock = self.tick, time.perf_counter
        clocks = _Clocks()
        while True:
            before = clock()
            counted = clocks.read()
            gevent.sleep(tick)
            if before < self._window_start:
                continue
            slept = clock() - before
            over = slept - tick
            self.ticks += 1
            if over > 0:
                self.total += over
                if over > 0.010 or over > self.worst:
                    since = (now - then for now, then in zip(clocks.read(), counted, strict=True))
                    self._split(over, slept, *since)
                if over > self.worst:
                    self.worst = over
                ms = over * 1000
                for i, bound in enumerate(BUCKETS_MS):
                    if ms <= bound:
                        self.histogram[i] += 1
                        break
                else:
                    self.histogram[-1] += 1

    def _split(self, over, slept, on_core, waited, stolen) -> None:
        rest = max(0.0, slept - on_core - waited)
        stolen = min(stolen, rest)  # the host may have taken another CPU meanwhile
        split = (on_core, waited, stolen, rest - stolen)
        if over > 0.010:
            summed = zip(self.long_split, (over, *split), strict=True)
            self.long_split = [a + b for a, b in summed]
        if over > self.worst:
            self.worst_split = split

    def report(self) -> dict:
        labels = [f"<={b}ms" for b in BUCKETS_MS] + [f">{BUCKETS_MS[-1]}ms"]
        return {
            "pid": os.getpid(),
            "window_s": round(time.monotonic() - self.started, 3),
            "tick_ms": self.tick * 1000,
            "ticks": self.ticks,
            "worst_ms": round(self.worst * 1000, 3),
            "worst_split_ms": _ms_by_cause(self.worst_split),
            "over_10ms_split_ms": {
                "overshoot": round(self.long_split[0] * 1000, 3),
                **_ms_by_cause(self.long_split[1:]),
            },
            "mean_overshoot_ms": round(self.total * 1000 / self.ticks, 3) if self.ticks else 0,
            "overshoot_histogram": dict(zip(labels, self.histogram, strict=True)),
            "gc_runs_by_generation": self.gc_runs,
            "gc_worst_ms": round(self.gc_worst * 1000, 3),
            "gc_worst_cpu_ms": round(self.gc_worst_cpu * 1000, 3),
            "gc_total_ms": round(self.gc_total * 1000, 3),
            "gc_tracked_objects": len(gc.get_objects()),
            "gc_frozen_objects": gc.get_freeze_count(),
            **_counters(),
            **({"longest_stints": self.culprits.report()} if self.culprits else {}),
        }


class _Clocks:
    """The calling thread's time on a core and waiting for one (Linux's per-thread
    ``schedstat``), and the time the hypervisor ran something else on this VM's CPUs
    (``/proc/stat``'s steal, all CPUs), in seconds; zeros for a file that cannot be read.

    The kernel keeps a thread's time on a core net of steal, so time stolen while the hub
    ran shows in neither of its own counters. Linux counts steal per CPU, not per thread,
    and prints it in clock ticks (10 ms), so that part is coarse and may include the
    other CPU's: the split caps it at the time the thread's counters leave unexplained.
    """

    def __init__(self):
        self._tick = 1 / os.sysconf("SC_CLK_TCK")
        self._schedstat = _open(f"/proc/self/task/{threading.get_native_id()}/schedstat")
        self._stat = _open("/proc/stat")

    def read(self) -> tuple[float, float, float]:
        on_core = waited = stolen = 0.0
        if self._schedstat is not None:
            fields = os.pread(self._schedstat, 128, 0).split()
            on_core, waited = int(fields[0]) / 1e9, int(fields[1]) / 1e9
        if self._stat is not None:
            fields = os.pread(self._stat, 256, 0).split(b"\n", 1)[0].split()
            stolen = int(fields[8]) * self._tick if len(fields) > 8 else 0.0
        return on_core, waited, stolen


def _open(path: str) -> int | None:
    try:
        return os.open(path, os.O_RDONLY)
    except OSError:
        return None


def _ms_by_cause(split) -> dict:
    on_core, waited, stolen, neither = split
    return {
        "on_core": round(on_core * 1000, 3),
        "waiting_for_core": round(waited * 1000, 3),
        "stolen_by_host": round(stolen * 1000, 3),
        "blocked_or_idle": round(neither * 1000, 3),
    }


def _counters() -> dict:
    """Since the worker started: handlers that waited for a later loop iteration, the
    jobs and transactions of SQLite's group commit, and the checkpoints that held the
    writer lock (how many, and the longest)."""
    counters = {"turns_deferred": turns.deferred}
    batcher = groupcommit.active_batcher()
    if batcher is not None:
        counters["group_commit_jobs"] = batcher.jobs
        counters["group_commit_transactions"] = batcher.transactions
    checkpointer = active_checkpointer()
    if checkpointer is not None:
        counters["checkpoint_locked_runs"] = checkpointer.locked_runs
        counters["checkpoint_locked_worst_ms"] = round(checkpointer.locked_worst * 1000, 3)
    return counters


class _Endpoint:
    """WSGI middleware answering ``/_kefu/stall``; everything else goes to the app."""

    def __init__(self, app, monitor: StallMonitor):
        self.app = app
        self.monitor = monitor

    def __call__(self, environ, start_response):
        if environ.get("PATH_INFO") != PATH:
            return self.app(environ, start_response)
        report = self.monitor.report()
        if "collect=1" in environ.get("QUERY_STRING", ""):  # time a full collection now
            started = time.perf_counter()
            report["collected"] = gc.collect()
            report["collect_ms"] = round((time.perf_counter() - started) * 1000, 3)
        if "types=1" in environ.get("QUERY_STRING", ""):  # what the tracked objects are
            counts = Counter(type(o).__qualname__ for o in gc.get_objects())
            report["top_types"] = counts.most_common(40)
        body = json.dumps(report).encode()
        if "reset=1" in environ.get("QUERY_STRING", ""):
            self.monitor.reset()
        start_response("200 OK", [("Content-Type", "application/json")])
        return [body]

    def __getattr__(self, name):  # other hooks may look at the app (``extensions``)
        return getattr(self.app, name)


def enabled() -> bool:
    return config.flag("KEFU_STALL_MONITOR")


def install(worker) -> StallMonitor | None:
    """Called from gunicorn's ``post_worker_init``: start the monitor if asked to."""
    if not enabled():
        return None
    tick = config.stall_tick_ms() / 1000  # checked when the master started
    monitor = StallMonitor(tick).start()
    if config.flag("KEFU_STALL_CULPRITS"):
        monitor.culprits = Culprits().start()
    worker.wsgi = _Endpoint(worker.wsgi, monitor)
    worker.log.info("stall monitor on: GET %s (tick %.1f ms)", PATH, tick * 1000)
    return monitor
