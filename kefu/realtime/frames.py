"""A fast path beside wsproto for the frames a chat socket carries: whole text frames.

wsproto parses every frame through a generator, a buffer with commit and rollback, a
header tuple, a masker, an incremental UTF-8 decoder and a frame tuple, and builds
every outgoing frame through the extension hooks. Under the throughput bench that was
about 13% of the hub's time for frames that are almost all small, masked, final text
frames of JSON. ``LeanFrames`` wraps wsproto's ``WSConnection`` once the handshake is
done (and only when no extension was negotiated) and handles exactly those frames
itself, in both directions.

Every other frame goes to wsproto, so its checks, error codes and replies stay what
they were (Autobahn's cases, tests/autobahn):

- A whole control frame (ping, pong, close: final, masked, at most 125 bytes) is
  handed to wsproto as a whole, so wsproto's parser is at a frame boundary again
  when the fast path goes on.
- Anything else (binary, fragments, reserved bits, an unmasked frame, a reserved or
  malformed length, text that is not UTF-8, a frame of 64 KiB or more, any frame
  after the socket left the OPEN state) makes wsproto the parser from that byte on,
  for the rest of the socket's life. kefu's protocols never need these, so the
  speed lost there does not matter; wsproto rejects at the header what it rejected
  at the header before.

Events keep the order of the bytes: what is parsed here and what wsproto must parse
wait in one queue that ``events()`` drains in order.
"""

import struct

from wsproto.connection import ConnectionState
from wsproto.events import CloseConnection, TextMessage

_OPEN = ConnectionState.OPEN
_FAST_TEXT = 0x81  # FIN, no reserved bits, opcode 1 (text)
_CONTROL = (0x88, 0x89, 0x8A)  # FIN + close, ping, pong
_MASKED = 0x80
_LARGEST_FAST = 0xFFFF  # lengths with a 2-byte field; longer ones go to wsproto


def text_frame(text: str) -> bytes:
    """A server's (unmasked) final text frame carrying ``text``."""
    payload = text.encode()
    size = len(payload)
    if size < 126:
        return bytes((_FAST_TEXT, size)) + payload
    if size <= _LARGEST_FAST:
        return struct.pack("!BBH", _FAST_TEXT, 126, size) + payload
    return struct.pack("!BBQ", _FAST_TEXT, 127, size) + payload


def unmask(data, start: int, stop: int, key) -> bytes:
    """``data[start:stop]`` XORed with the 4-byte masking ``key`` (RFC 6455 5.3)."""
    size = stop - start
    if not size:
        return b""
    keys = int.from_bytes((bytes(key) * ((size + 3) >> 2))[:size], "little")
    return (int.from_bytes(data[start:stop], "little") ^ keys).to_bytes(size, "little")


class LeanFrames:
    """wsproto's ``WSConnection`` with whole text frames parsed and built here.

    It offers what simple-websocket and ``OpenSocket`` call on a connection (``state``,
    ``send``, ``receive_data``, ``events``) and nothing else: no ``__getattr__`` passing
    other names to wsproto. A class with one has every attribute read of its instances
    take a slower lookup, its own slots included (about 6,000 instructions of the
    ~60,000 a message's frames cost: one read, two writes)."""

    # One per socket: no dict.
    __slots__ = ("_connection", "_queue", "_tail", "_ws", "_wsproto_only")

    def __init__(self, ws):
        self._ws = ws
        # The connection wsproto's handshake made (only an open socket is wrapped): its
        # state is the socket's from now on, read here rather than through ``ws.state``,
        # a property calling this one's (two calls for the check every frame makes). The
        # checks every frame makes read its ``_state`` (what its ``state`` property
        # returns; wsproto is pinned) without that call too.
        self._connection = ws.connection
        self._tail = b""  # the start of a frame not yet whole
        # str (a whole text message) or bytes for wsproto, in order; a list, not a deque
        # (600 bytes each even when empty): it holds a frame or two and is emptied at once.
        self._queue = []
        self._wsproto_only = False

    @property
    def state(self) -> ConnectionState:
        return self._connection.state

    def send(self, event) -> bytes:
        if type(event) is TextMessage and event.message_finished:
            return self.send_message(event.data)
        return self._ws.send(event)

    def send_message(self, data: str | bytes) -> bytes:
        """The bytes of one whole message, without an event object (replies and pushes):
        text for ``str``. wsproto picks the opcode by the data's type, so ``bytes`` (the
        echo endpoint's binary messages) are left to it and go out as binary."""
        if type(data) is str and self._connection._state is _OPEN:
            return text_frame(data)
        return self._ws.send(TextMessage(data=data))

    def receive_data(self, data) -> None:
        if self._wsproto_only or data is None or self._connection._state is not _OPEN:
            self._to_wsproto(data)
            return
        if self._tail:
            self._tail += data  # a bytearray: a frame trickling in is not copied anew
            buf = self._tail
        else:
            buf = data
        pos = self._parse(buf)
        if pos < 0:  # wsproto took the rest
            self._tail = b""
        elif pos:
            self._tail = bytearray(buf[pos:]) if pos < len(buf) else b""
        elif buf is not self._tail:  # nothing whole yet in fresh data: keep all of it
            self._tail = bytearray(buf)

    def _parse(self, buf) -> int:
        """Queue the whole frames at the start of ``buf``; the offset where the rest
        begins, or -1 if wsproto took over the rest."""
        pos, end, queue = 0, len(buf), self._queue
        while end - pos >= 2:
            first, code = buf[pos], buf[pos + 1] & 0x7F
            if code == 126:
                if end - pos < 4:
                    break
                size, head = (buf[pos + 2] << 8) | buf[pos + 3], 8
            else:
                size, head = code, 6  # header, then the 4-byte masking key
            masked = buf[pos + 1] & _MASKED
            fast = first == _FAST_TEXT and masked and code != 127 and (code < 126 or size > 125)
            control = first in _CONTROL and masked and code <= 125
            if not (fast or control):
                self._to_wsproto(buf[pos:])
                return -1
            stop = pos + head + size
            if stop > end:
                break
            if control:
                queue.append(bytes(buf[pos:stop]))
            else:
                start = stop - size
                text = _decode(unmask(buf, start, stop, buf[start - 4 : start]))
                if text is None:
                    self._to_wsproto(buf[pos:])
                    return -1
                queue.append(text)
            pos = stop
        return pos

    def _to_wsproto(self, data) -> None:
        self._wsproto_only = True
        if self._queue:
            self._queue.append(None if data is None else bytes(data))
        else:
            self._ws.receive_data(None if data is None else bytes(data))

    def take_texts(self, limit: int | None) -> list[str]:
        """The whole text messages at the head of the queue, none longer than ``limit``
        (one that is stays for ``events()``, so the caller's own size check sees it)."""
        queue, count = self._queue, 0
        for item in queue:
            if type(item) is not str or (limit and len(item) > limit):
                break
            count += 1
        texts = queue[:count]
        del queue[:count]
        return texts

    def pending(self) -> bool:
        """Whether ``events()`` has anything to give."""
        return bool(self._queue) or self._wsproto_only

    def events(self):
        queue = self._queue
        while queue:
            item = queue.pop(0)
            if type(item) is str:
                yield TextMessage(data=item)
                continue
            self._ws.receive_data(item)
            for event in self._ws.events():
                yield event
                if type(event) is CloseConnection:
                    queue.clear()  # wsproto yields nothing after a close, nor do we
                    self._wsproto_only = True
        yield from self._ws.events()


def _decode(payload: bytes) -> str | None:
    try:
        return payload.decode()
    except UnicodeDecodeError:
        return None
