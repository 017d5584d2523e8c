"""An opt-in monitor of the gevent hub's stalls, for benchmarks and diagnosis.

With ``KEFU_STALL_MONITOR=1`` gunicorn's ``post_worker_init`` starts one greenlet in the
worker that sleeps ``KEFU_STALL_TICK_MS`` (default 5 ms) in a loop and records by how
much each sleep overshot: while some greenlet holds the hub (CPU work, a blocking call)
no other socket is served, and the overshoot is how long that lasted. The worker's WSGI
app is wrapped so ``GET /_kefu/stall`` returns the figures as JSON (``?reset=1`` starts a
new measuring window, ``?collect=1`` times a full garbage collection, ``?types=1`` counts
the tracked objects by type). The worst stall, and all over 10 ms together, are split
by the hub thread's own scheduler counters into time on a core, time waiting for one
(the OS ran other threads), and the rest (blocked in a call that does not yield). When
the variable is unset nothing is started or wrapped.
"""

import gc
import json
import os
import threading
import time
from collections import Counter

import gevent
import gevent.hub
import greenlet

from kefu import groupcommit
from kefu.checkpoint import active_checkpointer
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
        # for one (runnable: the OS ran other threads), and neither (blocked in a call
        # that does not yield, or the hub idle in its poll for up to one tick).
        self.worst_split = (0.0, 0.0, 0.0)
        self.long_split = [0.0, 0.0, 0.0, 0.0]  # the same, summed over overshoots > 10 ms
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
        sched = _Schedstat()
        while True:
            before = clock()
            on_core, waited = sched.read()
            gevent.sleep(tick)
            if before < self._window_start:
                continue
            slept = clock() - before
            over = slept - tick
            self.ticks += 1
            if over > 0:
                self.total += over
                if over > 0.010 or over > self.worst:
                    now_on_core, now_waited = sched.read()
                    self._split(over, slept, now_on_core - on_core, now_waited - waited)
                if over > self.worst:
                    self.worst = over
                ms = over * 1000
                for i, bound in enumerate(BUCKETS_MS):
                    if ms <= bound:
                        self.histogram[i] += 1
                        break
                else:
                    self.histogram[-1] += 1

    def _split(self, over: float, slept: float, on_core: float, waited: float) -> None:
        split = (on_core, waited, max(0.0, slept - on_core - waited))
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


class _Schedstat:
    """The calling thread's time on a core and waiting for one (Linux's per-thread
    ``schedstat``, in seconds); zeros where the file cannot be read."""

    def __init__(self):
        path = f"/proc/self/task/{threading.get_native_id()}/schedstat"
        try:
            self._fd = os.open(path, os.O_RDONLY)
        except OSError:
            self._fd = None

    def read(self) -> tuple[float, float]:
        if self._fd is None:
            return 0.0, 0.0
        on_core, waited = os.pread(self._fd, 128, 0).split()[:2]
        return int(on_core) / 1e9, int(waited) / 1e9


def _ms_by_cause(split) -> dict:
    on_core, waited, neither = split
    return {
        "on_core": round(on_core * 1000, 3),
        "waiting_for_core": round(waited * 1000, 3),
        "blocked_or_idle": round(neither * 1000, 3),
    }


class Culprits:
    """Which greenlets held the hub longest, and where they were when they let go.

    A ``greenlet.settrace`` hook sees every switch; the greenlet switched away from has
    run since the switch before. Stints are ranked by the thread's CPU time, not the
    wall clock: the hub's own stint includes its idle wait for sockets, and any stint
    includes time the OS gave other processes, neither of which is kefu's work. The
    longest are kept with their wall time and the kefu frames on the stack at the
    switch (the code that had run, the path it took). A second list keeps the stints
    with the most wall time off the CPU (a greenlet other than the hub's, blocked in a
    call that does not yield, or the process not scheduled): spread over any code, that
    is the machine; gathered at one call, that call blocks. Two clock reads per switch,
    so it is opt-in (``KEFU_STALL_CULPRITS=1``), for diagnosis rather than figures."""

    def __init__(self, keep: int = 8, threshold: float = 0.002):
        self.keep = keep
        self.threshold = threshold
        self.reset()

    def start(self) -> "Culprits":
        greenlet.settrace(self._on_switch)
        return self

    def _on_switch(self, event, args) -> None:
        cpu, wall = time.thread_time(), time.perf_counter()
        stint, self._cpu = cpu - self._cpu, cpu
        took, self._wall = wall - self._wall, wall
        resumed_at, self._resumed_at = self._resumed_at, getattr(args[1], "gr_frame", None)
        if stint >= self.threshold:
            self._keep(self.longest, stint, took, args[0], resumed_at)
        if took - stint >= self.threshold and not isinstance(args[0], gevent.hub.Hub):
            # Off the CPU while it held the hub: a blocking call, or the OS ran others.
            self._keep(self.off_cpu, took - stint, took, args[0], resumed_at)

    def _keep(self, kept: list, score: float, wall: float, glet, resumed_at) -> None:
        if len(kept) >= self.keep and score <= kept[-1][0]:
            return
        kept.append((score, wall, _describe(glet, resumed_at)))
        kept.sort(key=lambda item: -item[0])
        del kept[self.keep :]

    def report(self) -> dict:
        def rows(kept, label):
            return [
                {label: round(score * 1000, 3), "wall_ms": round(wall * 1000, 3), "where": where}
                for score, wall, where in kept
            ]

        return {"by_cpu": rows(self.longest, "cpu_ms"), "off_cpu": rows(self.off_cpu, "off_ms")}

    def reset(self) -> None:
        self.longest = []  # (cpu seconds, wall seconds, description), longest first
        self.off_cpu = []  # (seconds off the CPU, wall seconds, description)
        # From now: not the report that asked for the reset.
        self._cpu, self._wall = time.thread_time(), time.perf_counter()
        self._resumed_at = None  # the frame the running greenlet resumed in


def _describe(glet, resumed_at) -> str:
    """The hub, or the kefu frames on the greenlet's stack where it let go; for one that
    let go by ending, where it had resumed (its last stretch ran from there to its end)."""
    if isinstance(glet, gevent.hub.Hub):
        return "the hub's own loop (its callbacks and watchers)"
    frame, prefix = getattr(glet, "gr_frame", None), ""
    if frame is None and resumed_at is not None:
        frame, prefix = resumed_at, "ended, having resumed in: "
    names = []
    while frame is not None:
        path = frame.f_code.co_filename
        if "/site-packages/" not in path and "/lib/python3" not in path:  # kefu's own
            names.append(f"{path.rsplit('/', 1)[-1]}:{frame.f_code.co_name}")
        frame = frame.f_back
    if len(names) > 8:  # where it let go, and the outermost calls that led there
        names = [*names[:4], "…", *names[-4:]]
    return prefix + " < ".join(names) if names else repr(glet)[:120]


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
    return _flag("KEFU_STALL_MONITOR")


def _flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in {"1", "true", "yes", "on"}


def install(worker) -> StallMonitor | None:
    """Called from gunicorn's ``post_worker_init``: start the monitor if asked to."""
    if not enabled():
        return None
    tick = float(os.environ.get("KEFU_STALL_TICK_MS", "5")) / 1000
    monitor = StallMonitor(tick).start()
    if _flag("KEFU_STALL_CULPRITS"):
        monitor.culprits = Culprits().start()
    worker.wsgi = _Endpoint(worker.wsgi, monitor)
    worker.log.info("stall monitor on: GET %s (tick %.1f ms)", PATH, tick * 1000)
    return monitor
