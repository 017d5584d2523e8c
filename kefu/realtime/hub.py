"""Who is where: hub keys (a person, a visitor id, all agents) → live connections.

The hub knows no protocol and no database. ``publish`` hands events to the broker; the
broker hands them to every hub, and each hub gives each event to the connections its
``audience()`` names, once per connection. Each connection renders it for its protocol.
"""

import logging
from collections import defaultdict

from kefu.realtime.broker import Broker
from kefu.realtime.turns import LOOP_TURN_SECONDS, PACED_FROM, turns

log = logging.getLogger(__name__)


class Hub:
    def __init__(self, broker: Broker):
        self.broker = broker
        # A plain dict (filled with setdefault): ``get`` on a defaultdict costs more, and
        # every event's routing looks up each of its keys.
        self._by_key: dict[str, set] = {}
        self._keys_of: dict[object, set[str]] = defaultdict(set)
        self._agent_conns: dict[int, set] = defaultdict(set)
        broker.subscribe(self.deliver_local)

    def join(self, conn) -> None:
        """A socket opened (counted even before it signs in or binds anything)."""
        self._keys_of.setdefault(conn, set())

    def attach(self, conn, key: str) -> None:
        self._by_key.setdefault(key, set()).add(conn)
        self._keys_of[conn].add(key)

    def detach(self, conn, key: str) -> None:
        self._discard(self._by_key, key, conn)
        self._keys_of[conn].discard(key)

    def connections(self, key: str) -> set:
        return set(self._by_key.get(key, ()))

    def add_agent(self, conn, kefu_id: int) -> bool:
        """Count a live agent connection; True if the agent just came online."""
        first = not self._agent_conns.get(kefu_id)
        self._agent_conns[kefu_id].add(conn)
        return first

    def remove(self, conn) -> int | None:
        """Forget a closed connection; returns the kefu_id of an agent that went offline."""
        for key in self._keys_of.pop(conn, ()):
            self._discard(self._by_key, key, conn)
        for kefu_id, conns in list(self._agent_conns.items()):
            if conn in conns:
                self._discard(self._agent_conns, kefu_id, conn)
                return None if self._agent_conns.get(kefu_id) else kefu_id
        return None

    def online_agent_ids(self) -> frozenset[int]:
        return frozenset(self._agent_conns)

    def all_connections(self) -> list:
        return list(self._keys_of)

    def connection_count(self) -> int:
        return len(self._keys_of)

    def publish(self, events, origin: str | None = None) -> None:
        if events:
            self.broker.publish(events, origin)

    def deliver_local(self, events, origin: str | None) -> None:
        by_key = self._by_key
        for event in events:
            targets = set()
            for key in event.audience():
                conns = by_key.get(key)
                if conns is not None:  # |= rather than update(): no method call
                    targets |= conns
            # A broadcast to thousands (queue places) takes turns with the other
            # sockets instead of holding the hub until every frame is written.
            # Codecs drop what such a delay can make stale (see waiter_codec). Most
            # events reach two or three sockets: those go as they are (the test of
            # ``turns.paced``, without its call).
            if len(targets) >= PACED_FROM:
                targets = turns.paced(targets, LOOP_TURN_SECONDS)
            for conn in targets:
                try:
                    conn.deliver(event, origin)
                except Exception:  # one broken codec must not starve the others
                    log.exception("delivering %s to %s failed", type(event).__name__, conn)

    @staticmethod
    def _discard(table: dict, key, conn) -> None:
        conns = table.get(key)
        if conns is not None:
            conns.discard(conn)
            if not conns:
                del table[key]
