"""The WebSocket transport under flask-sock: how a socket opens, deflate only on request.

Split in two along the life of a socket. ``open_socket`` holds what runs for every
frame of an open socket (whole-frame writes, the handler reading its own socket, the
lean text path, pings and closes): the hot path, kept apart so it can be read whole.
This module holds what runs once: the HTTP upgrade (``KefuServer.handshake``: choosing
deflate, the lean path and the heartbeat for the socket) and ``install``, which makes
flask-sock build ``KefuServer`` with kefu's settings. Protocols take ``sock`` from here.

simple-websocket always accepts permessage-deflate, which costs tens of KB of zlib
state per socket; ``KefuServer`` accepts it only when ``KEFU_WS_DEFLATE`` is on.
"""

import base64
import binascii
import zlib
from time import monotonic

import flask_sock
from flask_sock import Sock
from werkzeug.exceptions import BadRequest, HTTPException
from wsproto.events import AcceptConnection, Request
from wsproto.extensions import PerMessageDeflate
from wsproto.frame_protocol import CloseReason, RsvBits
from wsproto.utilities import RemoteProtocolError

from kefu.realtime.frames import LeanFrames
from kefu.realtime.heartbeat import heartbeat
from kefu.realtime.open_socket import OpenSocket
from kefu.realtime.turns import turns
from kefu.realtime.whole_frames import WholeFrameSocket

sock = Sock()


class NoReader:
    """simple-websocket's reader "thread", which under gevent is never started: the
    handler reads its own socket (``OpenSocket.receive``)."""

    name = "simple_websocket reader (none: the handler reads)"

    def __init__(self, target):
        pass

    def start(self) -> None:
        pass

    def join(self, timeout: float | None = None) -> None:
        pass

    def is_alive(self) -> bool:
        return False


class BoundedDeflate(PerMessageDeflate):
    """permessage-deflate that inflates at most ``limit`` bytes of one message, then
    closes with 1009. wsproto inflated each read whole before simple-websocket's size
    check saw the message: 16 KiB of a deflate bomb became 16 MB, and a hundred sockets
    left the worker at 2 GB."""

    limit = 1 << 20  # KEFU_MAX_WS_MESSAGE_BYTES, set by install()
    _inflated = 0  # of the message being read
    _control = False  # a control frame (a ping between two fragments) is being read

    def frame_inbound_header(self, proto, opcode, rsv, payload_length):
        # A ping between the fragments of a compressed message is allowed (RFC 6455
        # 5.4). wsproto let it reset the message's state, and the next fragment was
        # taken as uncompressed (close 1007): the message's state is left alone.
        self._control = opcode.iscontrol()
        if self._control:
            return CloseReason.PROTOCOL_ERROR if rsv.rsv1 else RsvBits(False, False, False)
        return super().frame_inbound_header(proto, opcode, rsv, payload_length)

    def frame_inbound_payload_data(self, proto, data):
        if self._control or not self._inbound_compressed or not self._inbound_is_compressible:
            return data
        try:
            out = self._decompressor.decompress(bytes(data), self.limit - self._inflated + 1)
        except zlib.error:
            return CloseReason.INVALID_FRAME_PAYLOAD_DATA
        return self._counted(out)

    def frame_inbound_complete(self, proto, fin):
        if self._control:
            return None
        ends_message = fin and self._inbound_is_compressible
        out = super().frame_inbound_complete(proto, fin)
        if isinstance(out, bytes):
            out = self._counted(out)
        if ends_message:
            self._inflated = 0
        return out

    def _counted(self, out: bytes):
        self._inflated += len(out)
        return CloseReason.MESSAGE_TOO_BIG if self._inflated > self.limit else out


class UpgradeRequired(HTTPException):
    """426 for a WebSocket version other than 13, naming the one this server speaks
    (RFC 6455 4.4): a client that can speak several picks again."""

    code = 426

    def get_headers(self, environ=None, scope=None):
        return [*super().get_headers(environ, scope), ("Sec-WebSocket-Version", "13")]


def check_upgrade(environ) -> None:
    """Refuse what wsproto lets through or names wrongly: an old version was "Missing
    header, 'Sec-WebSocket-Version'" (a 400), and any key was taken, though a client's
    key is 16 random bytes in base64 (RFC 6455 4.1) and its accept value is checked."""
    version = environ.get("HTTP_SEC_WEBSOCKET_VERSION")
    if version is not None and version.strip() != "13":
        raise UpgradeRequired(f"Unsupported Sec-WebSocket-Version {version!r}; use 13")
    key = environ.get("HTTP_SEC_WEBSOCKET_KEY")
    if key is not None and not _is_websocket_key(key.strip()):
        raise BadRequest("Invalid WebSocket upgrade: Sec-WebSocket-Key must be 16 bytes in base64")


def _is_websocket_key(key: str) -> bool:
    try:
        return len(base64.b64decode(key, validate=True)) == 16
    except (binascii.Error, ValueError):
        return False


class KefuServer(OpenSocket):
    """The server flask-sock builds for each socket: an ``OpenSocket`` (everything per
    frame) plus the upgrade that opens it, with deflate only on request."""

    deflate = False  # set by install() from KEFU_WS_DEFLATE

    def handshake(self):
        check_upgrade(self.environ)
        turns.take()  # an arrival burst's upgrades wait their turn like frames
        self.sock = WholeFrameSocket(self.sock)
        lines = [b"GET / HTTP/1.1\r\n"]
        for key, value in self.environ.items():
            if key.startswith("HTTP_"):
                header = "-".join(p.capitalize() for p in key[5:].split("_"))
                lines.append(f"{header}: {value}\r\n".encode())
        lines.append(b"\r\n")
        try:
            self.ws.receive_data(b"".join(lines))
            events = list(self.ws.events())
        except RemoteProtocolError as exc:
            # The client's mistake (no Sec-WebSocket-Version, say): a 400 that names it,
            # not a 500 and a traceback in the log.
            raise BadRequest(f"Invalid WebSocket upgrade: {exc}") from None
        for event in events:
            if isinstance(event, Request):
                self.subprotocol = self.choose_subprotocol(event)
                extensions = [BoundedDeflate()] if self.deflate else []
                accept = AcceptConnection(subprotocol=self.subprotocol, extensions=extensions)
                self.sock.send(self.ws.send(accept))
                self.connected = True
        if self.connected:
            # The HTTP/1.1 parser of the upgrade request is never used again; wsproto
            # keeps it (buffers and state, a few KB) for the life of the socket.
            self.ws.handshake._h11_connection = None
            if not self.deflate:  # no extension: whole text frames take the fast path
                self.ws = LeanFrames(self.ws)
            self.inline = self.inline and self.sock.can_try
            if self.inline and self.ping_interval:
                self.next_ping = monotonic() + self.ping_interval
                heartbeat.add(self, self.ping_interval)
                # A peer that takes no bytes for a whole interval is as gone as one
                # that misses a pong (WholeFrameSocket.write_stall).
                self.sock.write_stall = self.ping_interval


def install(app) -> None:
    """Make flask-sock build our server (flask-sock 0.7 has no option for the class)."""
    KefuServer.deflate = app.config["WS_DEFLATE"]
    BoundedDeflate.limit = app.config["MAX_WS_MESSAGE_BYTES"]
    flask_sock.Server = KefuServer
    app.config["SOCK_SERVER_OPTIONS"] = {
        "ping_interval": app.config["WS_PING_SECONDS"] or None,
        "max_message_size": app.config["MAX_WS_MESSAGE_BYTES"],
        "receive_bytes": 16384,
    }
    from gevent import monkey

    if monkey.is_module_patched("threading"):
        turns.enabled = True
        KefuServer.inline = True
        app.config["SOCK_SERVER_OPTIONS"]["thread_class"] = NoReader
