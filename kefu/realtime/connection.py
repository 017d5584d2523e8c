"""One live socket: who it belongs to, and a single writer fed by an outbox.

Nothing that publishes ever writes to a socket itself: it renders frames and puts them
in the outbox, which never blocks. One writer greenlet per connection drains it in
order, so a slow client delays only itself. A client too slow to keep up (outbox over
its limit) is disconnected; it reconnects and resyncs from the database.
"""

import contextlib
import itertools
import logging
import os

import gevent
from gevent.queue import Queue
from simple_websocket import ConnectionClosed

log = logging.getLogger(__name__)
_ids = itertools.count(1)
_CLOSE = object()
CLOSE_HANDSHAKE_SECONDS = 1.0


class Connection:
    def __init__(self, ws, codec, outbox_limit: int = 1000):
        self.ws = ws
        self.codec = codec
        self.id = f"{os.getpid()}:{next(_ids)}"
        self.principal = None  # kefu.auth.Principal once signed in
        self.visitor_id = None  # the visitor id a ds/kefu socket is bound to
        self.state = {}  # the protocol's own per-connection memory
        self.identified = False  # signed in, or acting as a visitor (login deadline)
        self.rate = None  # frames allowed per second (set by Live.open)
        self.closed = False
        self._outbox_limit = outbox_limit
        self._outbox = Queue()
        self._writer = gevent.spawn(self._write_loop)

    @property
    def kefu_id(self):
        return self.principal.kefu_id if self.principal else None

    def send(self, frame: str) -> None:
        """Queue one whole frame; never blocks."""
        if self.closed:
            return
        if self._outbox.qsize() >= self._outbox_limit:
            log.warning("connection %s too slow, dropping it", self.id)
            self.close(1008, "Client too slow")
            return
        self._outbox.put(frame)

    def deliver(self, event, origin) -> None:
        for frame in self.codec.render(event, self, origin):
            self.send(frame)

    def close(self, code: int = 1000, reason: str | None = None) -> None:
        """Close after the frames already queued are written."""
        if not self.closed:
            self.closed = True
            self._outbox.put((_CLOSE, code, reason))

    def frames(self, timeout: float | None = None):
        """Incoming messages; ``None`` when ``timeout`` passes with nothing received."""
        try:
            while not self.closed:
                yield self.ws.receive(timeout=timeout)
        except ConnectionClosed:
            return

    def _write_loop(self) -> None:
        while True:
            item = self._outbox.get()
            try:
                if isinstance(item, tuple) and item[0] is _CLOSE:
                    self.ws.close(reason=item[1], message=item[2])
                    # A peer that never answers the close frame must not pin the handler.
                    gevent.spawn_later(CLOSE_HANDSHAKE_SECONDS, self._drop_socket)
                    return
                self.ws.send(item)
            except (ConnectionClosed, OSError):
                self.closed = True
                return

    def _drop_socket(self) -> None:
        with contextlib.suppress(OSError):
            self.ws.sock.close()
        self.ws.event.set()  # wake a handler blocked in receive()

    def finish(self) -> None:
        """The handler is returning: stop the writer once it has flushed."""
        self.close()
        self._writer.join(timeout=5)
        self._writer.kill(block=False)
