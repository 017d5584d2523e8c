"""Fan-out between hubs. In one process the memory broker hands events straight back to
the local hub; a PostgreSQL LISTEN/NOTIFY broker can take its place for many workers
without the hub or any protocol changing."""

import logging
import time
from collections.abc import Callable, Sequence
from typing import Protocol

import gevent

from kefu.realtime.seq_order import SeqOrder

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
    is held."""

    def __init__(self, hold_seconds: float = 0.0):
        self._subscribers: list[Deliver] = []
        # The first message seen of a conversation waits at most 0.1 s for its
        # predecessor unless it is seq 1 (SeqOrder): seq 2 of a new conversation may be
        # published before seq 1, and after a restart the predecessor went long ago.
        self._order = SeqOrder(hold_seconds) if hold_seconds > 0 else None
        self._releaser = None

    def subscribe(self, deliver: Deliver) -> None:
        self._subscribers.append(deliver)

    def publish(self, events: Sequence, origin: str | None) -> None:
        if self._order is not None:
            self._hand_out(self._order.offer((events, origin), time.monotonic()))
            if self._order.holding() and self._releaser is None:
                self._releaser = gevent.spawn(self._release_due)
            return
        for deliver in self._subscribers:
            deliver(events, origin)

    def _hand_out(self, batches: list) -> None:
        for events, origin in batches:
            for deliver in self._subscribers:
                deliver(events, origin)

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
