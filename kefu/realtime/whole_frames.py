"""Writes of whole frames, one writer at a time.

simple-websocket 1.1.0 writes with ``socket.send``, which may write part of a frame
under back-pressure, and whoever reads (its reader thread, or under gevent the handler
itself, see ``OpenSocket.receive``) writes pongs and close replies to the same socket
as the greenlets that push. Both would corrupt the stream. ``WholeFrameSocket`` turns
every write into one ``sendall`` under a lock, so a frame is always written whole and
frames from different greenlets never interleave.
"""

import contextlib
import socket
import threading

import gevent
import gevent.socket


class WholeFrameSocket:
    """A socket proxy whose ``send`` writes all bytes, one writer at a time.

    gunicorn's gevent worker makes client sockets blocking without a timeout, so a
    write to a peer that stopped reading would wait, holding the write lock, for as
    long as the peer lives. With ``write_stall`` set (the transport sets the ping
    interval), a write that makes no progress for that long gives the socket up: it
    is shut down, the handler's read ends, and the connection is closed as lost."""

    write_stall: float | None = None

    def __init__(self, sock):
        self._sock = sock
        self._lock = threading.Lock()  # a greenlet lock once gevent has patched threading
        self.can_try = isinstance(sock, gevent.socket.socket)  # send(timeout=0) exists

    def send(self, data: bytes) -> int:
        with self._lock:
            self._send_all(data)
        return len(data)

    def _send_all(self, data: bytes) -> None:
        if self.write_stall is None or not self.can_try:
            self._sock.sendall(data)
            return
        view = memoryview(data)
        try:
            while view:
                # gevent's send(timeout=) only tells "do not wait" from "wait": a socket
                # that blocks (gunicorn's do) waits on its own timeout, which is none.
                with gevent.Timeout(self.write_stall, TimeoutError):
                    sent = self._sock.send(view)
                view = view[sent:]
        except TimeoutError:
            with contextlib.suppress(OSError):  # wakes the handler's read with the end
                self._sock.shutdown(socket.SHUT_RDWR)
            raise

    def send_now(self, encode, item) -> bool:
        """Write the frame ``encode(item)`` makes without waiting, if no other write is
        under way; False (nothing encoded, nothing written) if one is. (A function and its
        argument, not a closure: every reply and push made one anew.)

        ``encode`` runs only once no write holds the lock: wsproto's encoder has state
        (the deflate context), so a frame it made must be written. What the kernel does not
        take at once is finished by a greenlet that holds the lock until it is written,
        so no other frame can start in the middle of this one."""
        if not self.can_try or self._lock.locked():
            return False
        # Nothing from here to the write waits (the OS socket's own send: gevent made it
        # non-blocking, and reads it straight too, see OpenSocket._read), so no other
        # greenlet runs meanwhile and the lock is taken only when a rest is left: a
        # gevent lock's acquire and release cost more than the write's Python.
        data = encode(item)
        try:
            sent = self._sock._sock.send(data) if data else 0
        except BlockingIOError:
            sent = 0
        if sent != len(data):
            self._lock.acquire()  # free (checked above, and nothing ran since): no wait
            gevent.spawn(self._finish, data[sent:])
        return True

    def _finish(self, rest: bytes) -> None:
        try:
            self._send_all(rest)
        except OSError:
            pass  # the reader sees the socket closed and ends the connection
        finally:
            self._lock.release()

    # The socket's other calls simple-websocket makes, as methods: a ``__getattr__`` passing
    # names on slows every attribute read of this object (~3,000 instructions a message).
    def recv(self, size: int) -> bytes:
        return self._sock.recv(size)

    def fileno(self) -> int:
        return self._sock.fileno()

    def close(self) -> None:
        self._sock.close()
