"""Frame handlers take turns by time, so a burst cannot hold the gevent hub for long.

gevent runs every greenlet that became ready in one loop iteration before it looks at
timers or sockets again, and checks the clock only every 50 of them. When a thousand
customers arrive at once each handshake and first frame costs a millisecond or two, so
one iteration could run for a hundred milliseconds while every other socket (and every
timer, pings included) waited.

So before a handshake and before each frame, a handler calls ``take()``. While the
current iteration is young (under ``BUDGET``) and nobody is queued, that is one clock
read. Past it, the handler joins a FIFO queue and waits; at the start of each following
iteration the hub lets queued handlers run one after another until that iteration's
budget is spent, and leaves the rest to the next. Frames are still handled in arrival
order per socket and nothing is dropped: a burst is spread over iterations instead of
filling one.

Only under gevent's monkey-patching (the server); elsewhere ``take`` does nothing.
"""

import time
from collections import deque

import gevent
from gevent.hub import Waiter, get_hub
from greenlet import getcurrent

BUDGET = 0.003  # seconds of handler work per loop iteration before others get a turn
# Of one long loop in one greenlet (a broadcast, a ping pass, what waited in the broker's
# line) before others get a turn: ``Turns.paced``.
LOOP_TURN_SECONDS = 0.002
PACED_FROM = 32  # items: fewer are iterated as they are (``Turns.paced``)


class Turns:
    def __init__(self, budget: float = BUDGET):
        self.budget = budget
        self.enabled = False
        self.deferred = 0  # handlers that had to wait for a later iteration (tests read it)
        self._waiting = deque()
        self._timer = None
        self._hub = None  # the worker's one hub (its loop's timer is kept too, above)

    def take(self) -> None:
        """Return at once if this iteration has time left; otherwise wait for a turn."""
        if not self.enabled:
            return
        hub = self._hub
        if hub is None:  # looked up once: get_hub() reads a thread-local (twice a message)
            hub = self._hub = get_hub()
        if not self._waiting and time.time() - hub.loop.now() < self.budget:
            return
        if hub is getcurrent():
            return  # the hub itself never waits (it would have no one to wake it)
        self._wait(hub)

    def pass_turn(self) -> None:
        """Let everyone else run first: wait for a turn in a later iteration (a long
        task between its steps). Without gevent, ``gevent.sleep(0)``."""
        hub = get_hub()
        if not self.enabled or hub is getcurrent():
            gevent.sleep(0)
            return
        self._wait(hub)

    def paced(self, items, seconds: float, check_every: int = PACED_FROM):
        """Iterate ``items`` (a sized collection); whenever more than ``seconds`` have
        passed since the last turn (the clock is read every ``check_every`` items), let
        everyone else run first. For long loops in one greenlet: a broadcast to
        thousands, a ping pass. Fewer than ``check_every`` items are returned as they
        are: no clock read would come before their end, and most events a hub
        delivers reach two or three sockets (a generator per event cost more)."""
        if len(items) < check_every:
            return items
        return self._paced(items, seconds, check_every)

    def _paced(self, items, seconds: float, check_every: int):
        turn = time.perf_counter()
        for n, item in enumerate(items, 1):
            yield item
            if n % check_every == 0 and time.perf_counter() - turn > seconds:
                self.pass_turn()
                turn = time.perf_counter()

    def _wait(self, hub) -> None:
        waiter = Waiter()
        self._waiting.append(waiter)
        self.deferred += 1
        self._schedule(hub)
        waiter.get()

    def _schedule(self, hub) -> None:
        if self._timer is None:
            self._timer = hub.loop.timer(0.0)
        if not self._timer.active:
            self._timer.start(self._release)  # fires early in the next iteration

    def _release(self) -> None:
        """In the hub: run queued handlers, oldest first, for one budget."""
        started = time.perf_counter()
        waiting = self._waiting
        while waiting and time.perf_counter() - started < self.budget:
            waiting.popleft().switch(None)  # runs until that handler next waits
        if waiting:
            self._schedule(get_hub())


turns = Turns()
