"""Heartbeat pings for the sockets whose handlers read them: one greenlet for all.

A handler that waited "readable, or time to ping" gave gevent a Timeout, a timer, a
Waiter and their bound methods and argument tuples for every wait. A wait lasts as long
as the socket is idle, and a dying Timeout of one socket made room in the young
generation's count for the new one of another, so on 10,000 idle sockets some 90,000
of these objects sat in the young generation and each young collection walked them
(70-120 ms, measured with the stall monitor). Now a handler with no deadline of its own
waits on its socket alone (``OpenSocket._park``, which allocates nothing), and this
greenlet sends each socket its ping when it is due, and closes with 1008 a socket
whose last ping got no pong, as simple-websocket's reader did.
"""

import logging
import weakref
from time import monotonic

import gevent

from kefu.realtime.turns import LOOP_TURN_SECONDS, turns

log = logging.getLogger(__name__)


class Heartbeat:
    def __init__(self):
        self._servers = weakref.WeakSet()
        self._greenlet = None
        self.tick = 1.0

    def add(self, server, interval: float) -> None:
        """Ping ``server`` (an ``OpenSocket``) every ``interval`` seconds from now on."""
        self._servers.add(server)
        self.tick = min(self.tick, interval / 4)
        if self._greenlet is None:
            self._greenlet = gevent.spawn(self._run)

    def _run(self) -> None:
        while True:
            gevent.sleep(self.tick)
            now = monotonic()
            # Turns by time, not by count: sockets that connected together fall due
            # together (10,000 in 15 s: thousands per pass), and 500 pings in a row
            # held the hub for 10 ms and more.
            # A copy of the WeakSet's own set of references, not list(WeakSet): that
            # dereferences all 10,000 in one go (a pass's first turn held the hub 10-12
            # ms with it, about 3 ms without).
            for ref in turns.paced(list(self._servers.data), LOOP_TURN_SECONDS):
                server = ref()
                if server is None:
                    continue
                due = server.next_ping
                if due is not None and due <= now:
                    try:
                        server.heartbeat(now)
                    except Exception:  # one broken socket must not stop every ping
                        log.exception("heartbeat of a socket failed")
                        server.next_ping = None


heartbeat = Heartbeat()
