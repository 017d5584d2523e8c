"""One live socket: who it belongs to, and a single writer fed by an outbox.

Nothing that publishes ever waits for a socket: a frame for an idle socket is written
at once if the kernel takes it without waiting (the usual case, and no greenlet is
needed); otherwise it goes into the outbox, which never blocks. One writer greenlet per
connection drains the outbox in order, so a slow client delays only itself. A client
too slow to keep up (outbox over its limit) is disconnected; it reconnects and resyncs
from the database.

The writer exists only while there is something to write: it is started by the frame
that finds the outbox idle and ends when the outbox is empty. An idle socket therefore
costs no greenlet of its own (each one holds its own stack copy and frame chunk, about
16 KB), which is most of what ten thousand idle sockets would otherwise weigh.
"""

import contextlib
import itertools
import logging
import os
import secrets
from collections import deque

import gevent
from simple_websocket import ConnectionClosed

from kefu.realtime.open_socket import CLOSE_HANDSHAKE_SECONDS
from kefu.realtime.turns import turns

log = logging.getLogger(__name__)
_ids = itertools.count(1)


def _new_process_tag() -> None:
    """A connection's id is the ``origin`` of the events it causes, which every worker
    on every host compares with its own sockets' ids (a sender gets no echo). A pid
    alone repeats across hosts (containers run their workers as the same pid), and
    two sockets sharing an id each took the other's messages for their own echo."""
    _process["tag"] = f"{os.getpid()}.{secrets.token_hex(6)}"


_process = {}
_new_process_tag()
os.register_at_fork(after_in_child=_new_process_tag)
_CLOSE = object()
_NOTHING_QUEUED = ()


class Connection:
    def __init__(self, ws, codec, outbox_limit: int = 1000):
        self.ws = ws
        self.codec = codec
        self.id = f"{_process['tag']}:{next(_ids)}"
        self.principal = None  # kefu.principal.Principal once signed in
        self.visitor_id = None  # the visitor id a ds/kefu socket is bound to
        self.state = {}  # the protocol's own per-connection memory
        self.identified = False  # signed in, or acting as a visitor (login deadline)
        self.rate = None  # frames allowed per second (set by Live.open)
        self.closed = False
        self._outbox_limit = outbox_limit
        self._outbox = _NOTHING_QUEUED  # a deque only while frames wait (~600 bytes each)
        self._writer = None  # the writer greenlet while the outbox has frames

    @property
    def kefu_id(self):
        return self.principal.kefu_id if self.principal else None

    def send(self, frame: str) -> None:
        """Queue one whole frame; never blocks."""
        if self.closed:
            return
        if not self._outbox:  # (under any limit, which is 1 at least: no len() to take)
            if self._writer is None:  # idle: write it now if it fits
                try:
                    if self.ws.send_now(frame):
                        return
                except (ConnectionClosed, OSError):
                    self.closed = True
                    return
        elif len(self._outbox) >= self._outbox_limit:
            log.warning("connection %s too slow, dropping it", self.id)
            self.close(1008, "Client too slow")
            return
        self._enqueue(frame)

    def _enqueue(self, item) -> None:
        if self._outbox is _NOTHING_QUEUED:
            self._outbox = deque()
        self._outbox.append(item)
        if self._writer is None:
            self._writer = gevent.spawn(self._write_loop)

    def deliver(self, event, origin) -> None:
        for frame in self.codec.render(event, self, origin):
            self.send(frame)

    def close(self, code: int = 1000, reason: str | None = None) -> None:
        """Close after the frames already queued are written."""
        if not self.closed:
            self.closed = True
            self._enqueue((_CLOSE, code, reason))

    def frames(self, timeout: float | None = None):
        """Incoming messages; ``None`` when ``timeout`` passes with nothing received."""
        try:
            while not self.closed:
                raw = self.ws.receive(timeout)
                if raw is not None:
                    turns.take()  # a burst of frames is spread over loop iterations
                yield raw
        except ConnectionClosed:
            return

    def _write_loop(self) -> None:
        outbox = self._outbox
        try:
            while outbox:
                item = outbox.popleft()
                try:
                    if isinstance(item, tuple) and item[0] is _CLOSE:
                        self.ws.close(reason=item[1], message=item[2])
                        # A peer that never answers the close frame must not pin the handler.
                        gevent.spawn_later(CLOSE_HANDSHAKE_SECONDS, self._drop_socket)
                        outbox.clear()
                        return
                    self.ws.send(item)
                except (ConnectionClosed, OSError):
                    self.closed = True
                    outbox.clear()
                    return
        finally:
            self._writer = None
            if not outbox:
                self._outbox = _NOTHING_QUEUED

    def _drop_socket(self) -> None:
        with contextlib.suppress(OSError):
            self.ws.sock.close()
        self.ws.event.set()  # wake a handler blocked in receive()

    def finish(self) -> None:
        """The handler is returning: stop the writer once it has flushed."""
        self.close()
        writer = self._writer
        if writer is not None:
            writer.join(timeout=5)
            writer.kill(block=False)
        # Our close frame is out: take the peer's answer before the socket is closed
        # (a handler that reads its own socket; see open_socket.OpenSocket).
        self.ws.await_close_reply()
