"""Fan-out between hubs. In one process the memory broker hands events straight back to
the local hub; a PostgreSQL LISTEN/NOTIFY broker can take its place for many workers
without the hub or any protocol changing."""

import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Protocol

import gevent

from kefu.realtime.seq_order import SeqOrder
from kefu.realtime.turns import LOOP_TURN_SECONDS, turns

log = logging.getLogger(__name__)

Deliver = Callable[[Sequence, str | None], None]


class Broker(Protocol):
    def subscribe(self, deliver: Deliver) -> None: ...

    def publish(self, events: Sequence, origin: str | None) -> None: ...

    def stop(self) -> None: ...


class MemoryBroker:
    """Single process: publishing is a direct call, in order, with no copies.

    ``hold_seconds`` (a database with row locks): each send commits on its own and its
    greenlet publishes after, so two sends into one conversation at the same moment can
    be published in the other order (seen on PostgreSQL and MariaDB, tens of pushes in
    thousands). A message push whose predecessor is not out yet then waits for it, at
    most that long (``seq_order``). On SQLite the group commit publishes in order: none
    is held.

    Batches go out one at a time, in the order they were published: a subscriber may
    let other greenlets run before it is done (the hub's broadcast to many sockets takes
    turns, ``Hub.deliver_local``), and a batch published meanwhile waits in line
    instead of reaching some sockets first. Otherwise a socket at the end of a long
    delivery could get message seq 6 before seq 5, or a queue place older than the one
    it already has. (The PostgreSQL broker hands out from one listener greenlet, in
    order, already.)"""

    def __init__(self, hold_seconds: float = 0.0):
        self._subscribers: list[Deliver] = []
        # The first message seen of a conversation waits at most 0.1 s for its
        # predecessor unless it is seq 1 (SeqOrder): seq 2 of a new conversation may be
        # published before seq 1, and after a restart the predecessor went long ago.
        self._order = SeqOrder(hold_seconds) if hold_seconds > 0 else None
        self._releaser = None
        self._line: deque = deque()  # batches published while another goes out
        self._handing_out = False
        if self._order is None:  # nothing is ever held: publishing is handing out (one
            self.publish = self._deliver  # call fewer for every message)

    def subscribe(self, deliver: Deliver) -> None:
        self._subscribers.append(deliver)

    def publish(self, events: Sequence, origin: str | None) -> None:
        """With ``hold_seconds`` only: otherwise ``__init__`` made publishing ``_deliver``."""
        self._hand_out(self._order.offer((events, origin), time.monotonic()))
        if self._order.holding() and self._releaser is None:
            self._releaser = gevent.spawn(self._release_due)

    def _hand_out(self, batches) -> None:
        for events, origin in batches:
            self._deliver(events, origin)

    def _deliver(self, events, origin) -> None:
        """To every subscriber, after the batches already in line (see the class)."""
        if self._handing_out or self._line:
            self._line.append((events, origin))
            self._run_line()
            return
        self._handing_out = True  # the usual case: nobody in line, no call of its own
        try:
            for deliver in self._subscribers:
                deliver(events, origin)
            if self._line:
                self._hand_out_line()
        finally:
            self._handing_out = False
            if self._line:  # the greenlet handing out was killed: the rest still go
                gevent.spawn(self._run_line)

    def _run_line(self) -> None:
        if self._handing_out:
            return  # the greenlet handing out takes it
        self._handing_out = True
        try:
            self._hand_out_line()
        finally:
            self._handing_out = False
            if self._line:
                gevent.spawn(self._run_line)

    def _hand_out_line(self) -> None:
        """What was published during a long broadcast: it takes turns too."""
        line = self._line
        turn = time.perf_counter()
        while line:
            events, origin = line.popleft()
            for deliver in self._subscribers:
                deliver(events, origin)
            if line and time.perf_counter() - turn > LOOP_TURN_SECONDS:
                turns.pass_turn()
                turn = time.perf_counter()

    def _release_due(self) -> None:
        """Held pushes whose predecessor never came (its publisher failed) go anyway."""
        try:
            while self._order.holding():
                gevent.sleep(0.05)
                self._hand_out(self._order.due(time.monotonic()))
        except Exception:
            log.exception("releasing held message pushes failed")
        finally:
            self._releaser = None

    def stop(self) -> None:
        """Nothing to let go of: no connection; held pushes go with the worker."""
