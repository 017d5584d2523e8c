"""One open WebSocket, server side: what runs for every frame in and out.

This is the hot path of every message, split from ``transport`` (which opens sockets:
the upgrade, and flask-sock's installation) so that each module reads as one story.
``transport.KefuServer`` adds only the opening to ``OpenSocket``; nothing here calls
into ``transport``, and no frame pays for the split (the methods are the same, looked
up through the class's attribute cache).

Its socket is a ``whole_frames.WholeFrameSocket``: every frame is written whole, one
writer at a time.
"""

import contextlib
import time
from time import monotonic

import simple_websocket
from gevent import getcurrent
from gevent.exceptions import ConcurrentObjectUseError
from gevent.hub import get_hub
from gevent.socket import wait as wait_on_watcher
from simple_websocket import ConnectionClosed
from wsproto.connection import ConnectionState
from wsproto.events import CloseConnection, Ping, TextMessage
from wsproto.frame_protocol import CloseReason
from wsproto.utilities import LocalProtocolError

from kefu.realtime.frames import LeanFrames

# How long a peer may take to answer our close frame before its socket is dropped.
CLOSE_HANDSHAKE_SECONDS = 1.0


class _NotReadable(Exception):
    """The wait for a readable socket timed out."""


class OpenSocket(simple_websocket.Server):
    """simple-websocket's server, once the socket is open: whole-frame writes, the lean
    text-frame path, and, under gevent, no reader greenlet (``transport.KefuServer``
    adds the upgrade that opens it).

    simple-websocket reads each socket in a greenlet of its own that parses what
    arrives and hands each message to the handler through an Event: per frame a wake-up
    of the reader, an Event callback and a switch to the handler, and per socket a
    second suspended greenlet that every full collection walks. With ``inline`` the
    handler itself reads in ``receive``: it tries the socket first and waits only when
    nothing is there; one greenlet pings every socket (heartbeat.py). While the handler
    is busy nothing is read, so a fast client fills the kernel's buffer (TCP pushes
    back) instead of the process's memory.
    """

    inline = False  # set by transport.install() once gevent has patched threading
    next_ping = None  # when the heartbeat pings next (handlers that read only)
    _socket_closed = False
    _drained = False  # the last read emptied the socket (see _read)
    _switch = None  # the handler greenlet's switch, for waits that allocate nothing
    # (When the last ping went, when the one before it went if it was answered), wall
    # clock: a pong proves the peer got every frame written before its ping. A slot, not
    # a __dict__ entry: past about 25 entries a socket's __dict__ stops sharing its keys
    # and weighs 1.5 KB (10,000 sockets: 14 MB more).
    __slots__ = ("_pings",)

    def send_now(self, data: str | bytes) -> bool:
        """Write a message (text for ``str``, binary for ``bytes``) at once if the socket
        takes it without waiting (see ``WholeFrameSocket.send_now``); False if another
        write is under way."""
        if not self.connected:
            raise ConnectionClosed(self.close_reason, self.close_message)
        ws = self.ws
        if type(ws) is LeanFrames:
            return self.sock.send_now(ws.send_message, data)
        return self.sock.send_now(ws.send, TextMessage(data=data))

    def receive(self, timeout: float | None = None):
        if not self.inline:
            return super().receive(timeout)
        deadline = None if timeout is None else monotonic() + timeout
        while not self.input_buffer:
            if not self.connected:
                self.await_close_reply()
                raise ConnectionClosed(self.close_reason, self.close_message)
            if not self._read(deadline):
                return None
        return self.input_buffer.pop(0)

    def await_close_reply(self, seconds: float = CLOSE_HANDSHAKE_SECONDS) -> None:
        """After our close frame, read until the peer's close frame (or the end of the
        stream, or ``seconds``), then close the socket. Closing it with the answer
        unread would make the kernel reset the connection instead of ending it."""
        if not self.inline or self._socket_closed:
            return
        deadline = monotonic() + seconds
        while self.ws.state is ConnectionState.LOCAL_CLOSING and not self._socket_closed:
            if not self._read(deadline):
                break
        self._close_socket()

    def _read(self, deadline: float | None) -> bool:
        """Parse what the socket has, waiting for it if need be; False once
        ``deadline`` has passed with nothing read."""
        gsock = self.sock._sock
        if self._drained:
            # The last read took less than it asked for: the socket was empty then, and
            # trying it again now would mostly cost a failed recv (and its exception)
            # per frame. Wait for it to be readable (the watcher is level-triggered:
            # bytes that came meanwhile wake it at once).
            self._drained = False
            if gsock._sock.fileno() != -1:  # closed under us: let recv say so below
                return self._wait(gsock, deadline)
        try:
            data = gsock._sock.recv(self.receive_bytes)  # the OS socket: never waits
        except BlockingIOError:
            data = None  # waited for below: inside this clause the exception and its
            # traceback would stay alive for the whole wait, in every young collection
        except OSError:
            data = b""
        if data is None:
            return self._wait(gsock, deadline)
        if not data:  # the peer is gone (or the socket was closed under us)
            self._lost()
            return True
        self._drained = len(data) < self.receive_bytes
        try:
            self.ws.receive_data(data)
            keep_going = self._handle_events()
        except (OSError, LocalProtocolError):
            keep_going = False
        if not keep_going:  # the peer closed, broke the protocol, or the socket failed
            self._lost()
        return True

    def _wait(self, gsock, deadline: float | None) -> bool:
        """Until the socket is readable (True) or the deadline passes (False). The
        socket's own watcher: closing the socket wakes the wait with an error."""
        try:
            if deadline is None:
                self._park(gsock._read_event)
            else:
                wait_on_watcher(gsock._read_event, max(0.0, deadline - monotonic()), _NotReadable)
            return True
        except _NotReadable:
            return False
        except OSError:
            self._lost()
            return True

    def _park(self, watcher) -> None:
        """gevent's wait on ``watcher`` without its Waiter, bound methods and tuple:
        an idle socket waits here for as long as it is idle (see heartbeat.py)."""
        if watcher.callback is not None:
            raise ConcurrentObjectUseError(f"socket already waited on by {watcher.callback!r}")
        current = getcurrent()
        if self._switch is None or self._switch.__self__ is not current:
            self._switch = current.switch
        watcher.start(self._switch)
        try:
            get_hub().switch()  # back when readable, or with the error of a close
        finally:
            watcher.stop()

    def heartbeat(self, now: float) -> None:
        """simple-websocket's heartbeat, called by heartbeat.py: a ping per interval;
        no pong since the last one closes the socket with 1008.

        One greenlet pings every socket, so it never waits for one: a ping (or the
        close) that would wait behind another write is left out. That write gives up by
        itself if the peer takes nothing for a whole interval (``write_stall``)."""
        if not self.connected or self._socket_closed:
            self.next_ping = None
            return
        if not self.pong_received:
            self.next_ping = None
            close = CloseConnection(CloseReason.POLICY_VIOLATION, "Ping/Pong timeout")
            with contextlib.suppress(OSError, LocalProtocolError):
                self.sock.send_now(self.ws.send, close)
            self._lost()  # wakes the handler's wait with an error
            return
        self.next_ping = max(now, self.next_ping) + self.ping_interval
        last = self.received_before()  # the last ping was answered, as checked above
        try:
            if self.sock.send_now(self.ws.send, Ping()):
                self.pong_received = False
                self._pings = (time.time(), last)
        except (OSError, LocalProtocolError):
            self.next_ping = None
            self._lost()

    def received_before(self) -> float | None:
        """Unix time before which every frame written here is known to have reached the
        peer (it answered a ping sent then), or None. A connection can die without a
        word (a phone changing networks): what was written after that is only known to
        be lost a ping interval later, when the socket is closed."""
        sent, proven = getattr(self, "_pings", (None, None))
        return sent if self.pong_received else proven

    def _lost(self) -> None:
        self.connected = False
        self._close_socket()

    def _close_socket(self) -> None:
        self._socket_closed = True
        with contextlib.suppress(OSError):
            self.sock.close()

    def _handle_events(self):
        """simple-websocket's, with the whole text messages the lean path parsed put
        straight into the input buffer (no event objects, no isinstance chain)."""
        ws = self.ws
        if type(ws) is LeanFrames:
            texts = ws.take_texts(self.max_message_size)
            if texts:
                self.input_buffer.extend(texts)
                if not self.inline:  # a reader greenlet wakes the handler
                    self.event.set()
            if not ws.pending():
                return True
        return super()._handle_events()
