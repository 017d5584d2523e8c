"""The stall monitor's opt-in culprit finder: which greenlets held the gevent hub
longest, and where (``KEFU_STALL_CULPRITS=1``, see ``kefu/realtime/stall.py``)."""

import time

import gevent.hub
import greenlet


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
