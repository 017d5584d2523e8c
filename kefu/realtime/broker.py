"""Fan-out between hubs. In one process the memory broker hands events straight back to
the local hub; a PostgreSQL LISTEN/NOTIFY broker can take its place for many workers
without the hub or any protocol changing."""

from collections.abc import Callable, Sequence
from typing import Protocol

Deliver = Callable[[Sequence, str | None], None]


class Broker(Protocol):
    def subscribe(self, deliver: Deliver) -> None: ...

    def publish(self, events: Sequence, origin: str | None) -> None: ...

    def stop(self) -> None: ...


class MemoryBroker:
    """Single process: publishing is a direct call, in order, with no copies."""

    def __init__(self):
        self._subscribers: list[Deliver] = []

    def subscribe(self, deliver: Deliver) -> None:
        self._subscribers.append(deliver)

    def publish(self, events: Sequence, origin: str | None) -> None:
        for deliver in self._subscribers:
            deliver(events, origin)

    def stop(self) -> None:
        """Nothing to let go of: no connection, no greenlet."""
