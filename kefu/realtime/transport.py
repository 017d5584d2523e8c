"""The WebSocket transport under flask-sock: whole-frame writes, deflate only on request.

simple-websocket 1.1.0 writes with ``socket.send``, which may write part of a frame
under back-pressure, and its reader greenlet (pongs, close replies) writes to the same
socket as the sender. Both would corrupt the stream. ``WholeFrameSocket`` turns every
write into one ``sendall`` under a lock, so a frame is always written whole and frames
from different greenlets never interleave. simple-websocket also always accepts
permessage-deflate, which costs tens of KB of zlib state per socket; ``KefuServer``
accepts it only when ``KEFU_WS_DEFLATE`` is on.
"""

import threading

import flask_sock
import gevent
import gevent.socket
import simple_websocket
from flask_sock import Sock
from simple_websocket import ConnectionClosed
from wsproto.events import AcceptConnection, Request, TextMessage
from wsproto.extensions import PerMessageDeflate

from kefu.realtime.frames import LeanFrames
from kefu.realtime.turns import turns

sock = Sock()


class WholeFrameSocket:
    """A socket proxy whose ``send`` writes all bytes, one writer at a time."""

    def __init__(self, sock):
        self._sock = sock
        self._lock = threading.Lock()  # a greenlet lock once gevent has patched threading
        self._can_try = isinstance(sock, gevent.socket.socket)  # send(timeout=0) exists

    def send(self, data: bytes) -> int:
        with self._lock:
            self._sock.sendall(data)
        return len(data)

    def send_now(self, encode) -> bool:
        """Write the frame ``encode()`` makes without waiting, if no other write is under
        way; False (nothing encoded, nothing written) if one is.

        ``encode`` runs only once the lock is held: wsproto's encoder has state (the
        deflate context), so a frame it made must be written. What the kernel does not
        take at once is finished by a greenlet that holds the lock until it is written,
        so no other frame can start in the middle of this one."""
        if not self._can_try or not self._lock.acquire(blocking=False):
            return False
        try:
            data = encode()
            sent = self._sock.send(data, 0, timeout=0.0) if data else 0
        except BlockingIOError:
            sent = 0
        except BaseException:
            self._lock.release()
            raise
        if sent == len(data):
            self._lock.release()
        else:
            gevent.spawn(self._finish, data[sent:])
        return True

    def _finish(self, rest: bytes) -> None:
        try:
            self._sock.sendall(rest)
        except OSError:
            pass  # the reader sees the socket closed and ends the connection
        finally:
            self._lock.release()

    def __getattr__(self, name):
        return getattr(self._sock, name)


class GreenletReader:
    """simple-websocket's reader "thread" as a bare greenlet.

    Under gevent a patched ``threading.Thread`` is a greenlet plus a name, a started
    event, locks and an entry in ``threading._active``: some 2 KB and a dozen objects
    per socket that every full garbage collection walks. The reader needs only the
    greenlet. Used only once gevent has patched ``threading``."""

    def __init__(self, target):
        self._target = target
        self._greenlet = None
        self.name = "simple_websocket reader"

    def start(self) -> None:
        import gevent

        self._greenlet = gevent.spawn(self._target)

    def join(self, timeout: float | None = None) -> None:
        if self._greenlet is not None:
            self._greenlet.join(timeout)

    def is_alive(self) -> bool:
        return self._greenlet is not None and not self._greenlet.dead


class _NotReadable(Exception):
    """The wait for a readable socket timed out."""


class WaitReadable:
    """The one use simple-websocket makes of a selector, without keeping one per socket.

    Its reader registers the socket once and then waits "readable, or time to ping".
    gevent's selector keeps a watcher table and a result set per instance for the life
    of the socket; this waits with a watcher made for each wait. Used only under gevent.
    """

    def __init__(self):
        self._fd = None

    def register(self, fileobj, events, data=None) -> None:
        self._fd = fileobj.fileno()

    def select(self, timeout: float | None = None) -> list:
        # Not gevent.select.select: it first polls with the real select(), which
        # refuses file descriptors above 1023.
        from gevent.socket import wait_read

        try:
            wait_read(self._fd, timeout, _NotReadable)  # a class: a new instance each time
        except _NotReadable:
            return []
        return [(self._fd, True)]

    def close(self) -> None:
        self._fd = None


class KefuServer(simple_websocket.Server):
    deflate = False

    def send_now(self, text: str) -> bool:
        """Write a text frame at once if the socket takes it without waiting (see
        ``WholeFrameSocket.send_now``); False if another write is under way."""
        if not self.connected:
            raise ConnectionClosed(self.close_reason, self.close_message)
        return self.sock.send_now(lambda: self.ws.send(TextMessage(data=text)))

    def _handle_events(self):
        """simple-websocket's, with the whole text messages the lean path parsed put
        straight into the input buffer (no event objects, no isinstance chain)."""
        ws = self.ws
        if type(ws) is LeanFrames:
            texts = ws.take_texts(self.max_message_size)
            if texts:
                self.input_buffer.extend(texts)
                self.event.set()
            if not ws.pending():
                return True
        return super()._handle_events()

    def handshake(self):
        turns.take()  # an arrival burst's upgrades wait their turn like frames
        self.sock = WholeFrameSocket(self.sock)
        lines = [b"GET / HTTP/1.1\r\n"]
        for key, value in self.environ.items():
            if key.startswith("HTTP_"):
                header = "-".join(p.capitalize() for p in key[5:].split("_"))
                lines.append(f"{header}: {value}\r\n".encode())
        lines.append(b"\r\n")
        self.ws.receive_data(b"".join(lines))
        for event in self.ws.events():
            if isinstance(event, Request):
                self.subprotocol = self.choose_subprotocol(event)
                extensions = [PerMessageDeflate()] if self.deflate else []
                accept = AcceptConnection(subprotocol=self.subprotocol, extensions=extensions)
                self.sock.send(self.ws.send(accept))
                self.connected = True
        if self.connected:
            # The HTTP/1.1 parser of the upgrade request is never used again; wsproto
            # keeps it (buffers and state, a few KB) for the life of the socket.
            self.ws.handshake._h11_connection = None
            if not self.deflate:  # no extension: whole text frames take the fast path
                self.ws = LeanFrames(self.ws)


def install(app) -> None:
    """Make flask-sock build our server (flask-sock 0.7 has no option for the class)."""
    KefuServer.deflate = app.config["WS_DEFLATE"]
    flask_sock.Server = KefuServer
    app.config["SOCK_SERVER_OPTIONS"] = {
        "ping_interval": app.config["WS_PING_SECONDS"] or None,
        "max_message_size": app.config["MAX_WS_MESSAGE_BYTES"],
        "receive_bytes": 16384,
    }
    from gevent import monkey

    if monkey.is_module_patched("threading"):
        turns.enabled = True
        app.config["SOCK_SERVER_OPTIONS"]["thread_class"] = GreenletReader
        app.config["SOCK_SERVER_OPTIONS"]["selector_class"] = WaitReadable
