"""The handler reads its own socket (kefu/realtime/open_socket.py, ``OpenSocket.inline``):
heartbeat pings while it waits, the 1008 close of a peer that never answers them, and
a socket closed under a waiting handler."""

import base64
import contextlib
import json
import os
import re
import socket
import struct
import subprocess
import time
import zlib
from pathlib import Path

import pytest
import websocket

from tests.support import run_python

pytestmark = pytest.mark.wire_only  # runs in the SQLite pass only (tests/passes.py)


def raw_upgrade(base: str, path: str = "/ws", headers: str = "") -> socket.socket:
    """A WebSocket that answers nothing: the upgrade by hand on a bare TCP socket."""
    host, port = base.rsplit(":", 1)
    sock = socket.create_connection((host, int(port)), timeout=10)
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        f"GET {path} HTTP/1.1\r\nHost: {base}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
        f"Sec-WebSocket-Version: 13\r\n{headers}\r\n".encode()
    )
    head = b""
    while b"\r\n\r\n" not in head:
        head += sock.recv(1)
    assert head.startswith(b"HTTP/1.1 101"), head
    return sock


def server_frames(data: bytes) -> list[tuple[int, bytes]]:
    """(opcode, payload) of each unmasked server frame in ``data``."""
    frames, pos = [], 0
    while pos + 2 <= len(data):
        opcode, size, pos = data[pos] & 0x0F, data[pos + 1] & 0x7F, pos + 2
        if size == 126:
            size, pos = struct.unpack("!H", data[pos : pos + 2])[0], pos + 2
        frames.append((opcode, data[pos : pos + size]))
        pos += size
    return frames


def test_a_peer_that_answers_pings_stays_and_one_that_does_not_gets_1008(make_server):
    srv = make_server(ws_ping_seconds=0.4)
    answering = websocket.create_connection(f"ws://{srv.base}/ws", timeout=5)
    silent = raw_upgrade(srv.base)

    pings = 0
    started = time.monotonic()
    while time.monotonic() - started < 1.5:
        opcode, _ = answering.recv_data(control_frame=True)  # pongs go back by themselves
        pings += opcode == websocket.ABNF.OPCODE_PING
    assert pings >= 2

    silent.settimeout(5)
    received = b""
    while chunk := silent.recv(4096):  # until the server closes the TCP connection
        received += chunk
    frames = server_frames(received)
    assert frames[0][0] == 0x9  # a ping, never answered
    opcode, payload = frames[-1]
    assert (opcode, struct.unpack("!H", payload[:2])[0]) == (0x8, 1008)
    assert payload[2:] == b"Ping/Pong timeout"

    # The answering socket is still served after the silent one was dropped.
    answering.send('{"action": "ping", "op_id": 1}')
    while (reply := answering.recv_data(control_frame=True))[0] != websocket.ABNF.OPCODE_TEXT:
        pass
    assert b'"pong"' in reply[1]
    answering.close()


def connections(srv) -> int:
    return srv.get("/healthz").json()["connections"]


def wait_for(check, seconds: float = 5.0) -> bool:
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def test_a_peer_gone_while_the_handler_waits_ends_the_handler(server):
    """No close frame, no heartbeat due: the waiting handler sees the end of the stream
    and the socket leaves the hub at once."""
    base = connections(server)
    sock = raw_upgrade(server.base)
    assert wait_for(lambda: connections(server) == base + 1)
    sock.close()
    assert wait_for(lambda: connections(server) == base)


def test_a_close_frame_mid_stream_gets_its_answer_and_ends_the_handler(server):
    """Frames before the close are served in order, or not at all once the close is
    answered (no data frame may follow it, RFC 6455 5.5.1); the handler then ends."""
    agent = server.create_agent("transport-agent")
    ws = websocket.create_connection(f"ws://{server.base}/ws", timeout=5)
    base = connections(server)
    ws.send(json.dumps({"action": "login", "op_id": 1, "data": {"token": agent["token"]}}))
    ws.send(json.dumps({"action": "ping", "op_id": 2}))
    ws.send_close()
    replies = []
    while True:
        opcode, payload = ws.recv_data(control_frame=True)
        if opcode == websocket.ABNF.OPCODE_CLOSE:
            break
        replies.append(json.loads(payload))
    assert struct.unpack("!H", payload[:2])[0] == 1000
    assert [r["op_id"] for r in replies] == [1, 2][: len(replies)]
    assert all(r["success"] for r in replies)
    assert wait_for(lambda: connections(server) == base - 1)


def masked_text_frame(text: str) -> bytes:
    """One client text frame (clients must mask), payload under 126 bytes."""
    payload, mask = text.encode(), os.urandom(4)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return bytes([0x81, 0x80 | len(payload)]) + mask + masked


def test_frames_trickling_in_and_spaced_apart_are_all_read(server):
    """After a read that emptied the socket, the handler waits for it to be readable
    instead of trying it again: a frame cut in two with a pause between, and a frame
    that comes later, must each wake it and be answered."""
    sock = raw_upgrade(server.base)
    first = masked_text_frame(json.dumps({"action": "ping", "op_id": 1}))
    sock.sendall(first[:9])
    time.sleep(0.2)
    sock.sendall(first[9:])
    time.sleep(0.2)
    sock.sendall(masked_text_frame(json.dumps({"action": "ping", "op_id": 2})))
    received = b""
    while len(server_frames(received)) < 2:
        received += sock.recv(4096)
    replies = [json.loads(payload) for _, payload in server_frames(received)]
    assert [(r["op_id"], r["message"]) for r in replies] == [(1, "pong"), (2, "pong")]
    sock.close()


def upgrade_answer(base: str, headers: str) -> bytes:
    """The server's whole answer to an upgrade of /ws with these extra header lines: its
    head, then as many bytes as its Content-Length says. (Read to the end of the stream,
    it took the server's keep-alive of 5 s: the connection stays open for a next request.)"""
    host, port = base.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(
            f"GET /ws HTTP/1.1\r\nHost: {base}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\n{headers}\r\n".encode()
        )
        answer = b""
        while b"\r\n\r\n" not in answer:
            answer += sock.recv(4096) or pytest.fail(f"closed after {answer!r}")
        head, body = answer.split(b"\r\n\r\n", 1)
        length = re.search(rb"\r\ncontent-length: *(\d+)", head.lower())
        assert length, head
        while len(body) < int(length[1]):
            body += sock.recv(4096) or pytest.fail(f"closed after {answer + body!r}")
    return head + b"\r\n\r\n" + body


def test_a_malformed_upgrade_gets_400_and_no_traceback(server):
    """No Sec-WebSocket-Version: wsproto refuses it, which was a 500 and a 30-line
    "ERROR in app" traceback for a client's mistake."""
    key = base64.b64encode(os.urandom(16)).decode()
    answer = upgrade_answer(server.base, f"Sec-WebSocket-Key: {key}\r\n")
    assert answer.startswith(b"HTTP/1.1 400"), answer[:200]
    assert b"Invalid WebSocket upgrade: Missing header, &#39;Sec-WebSocket-Version&#39;" in answer
    assert "Traceback" not in server.log()
    assert raw_upgrade(server.base).close() is None  # the next upgrade is served


def test_another_websocket_version_gets_426_naming_13(server):
    """RFC 6455 4.4: a version the server does not speak gets 426 and the version it
    does. It was a 400 saying the header was missing."""
    key = base64.b64encode(os.urandom(16)).decode()
    answer = upgrade_answer(
        server.base, f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 8\r\n"
    )
    head = answer.split(b"\r\n\r\n", 1)[0].lower()
    assert head.startswith(b"http/1.1 426"), answer[:200]
    assert b"\r\nsec-websocket-version: 13" in head
    assert b"Unsupported Sec-WebSocket-Version &#39;8&#39;; use 13" in answer
    assert raw_upgrade(server.base).close() is None


@pytest.mark.parametrize("key", ["c2hvcnQ=", "not base64 at all!!", "", "A" * 40])
def test_a_key_that_is_not_16_bytes_in_base64_gets_400(server, key):
    """RFC 6455 4.1: the key is 16 random bytes in base64. Any string was accepted."""
    answer = upgrade_answer(
        server.base, f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
    )
    assert answer.startswith(b"HTTP/1.1 400"), answer[:200]
    assert b"Sec-WebSocket-Key must be 16 bytes in base64" in answer
    assert "Traceback" not in server.log()


def test_a_peer_that_stops_reading_neither_stops_the_pings_nor_stays(make_server):
    """gunicorn's sockets block without a timeout: a write to a peer that takes nothing
    held that socket's write lock for good, and the one heartbeat greenlet, waiting for
    the lock to ping it, pinged no socket again (a peer that never answered was never
    dropped). Now the heartbeat skips a socket whose write is under way, and a write
    with no progress for a whole ping interval gives its socket up."""
    srv = make_server(ws_ping_seconds=1.0)
    agent = srv.create_agent("never-reads")
    stalled = srv.ws(sockopt=((socket.SOL_SOCKET, socket.SO_RCVBUF, 4096),), timeout=20)
    assert stalled.request({"action": "login", "data": {"token": agent["token"]}})["success"]
    token = srv.host_jwt("keeps-talking")
    cid = srv.get("/api/kefu/message/getConversation", token).json()["data"]["id"]
    user = srv.ws()
    assert user.request({"action": "login", "data": {"token": token}})["success"]
    text = "字" * 4990  # 15 KB of UTF-8 per push: 6 MB is more than the kernel buffers
    for i in range(400):
        sent = {"action": "kefu_message_send", "data": {"conversation_id": cid, "content": text}}
        assert user.request(sent)["success"], i

    silent = raw_upgrade(srv.base)  # answers no ping: dropped only if pings go on
    silent.settimeout(10)
    received = b""
    while chunk := silent.recv(4096):
        received += chunk
    opcode, payload = server_frames(received)[-1]
    assert (opcode, payload[2:]) == (0x8, b"Ping/Pong timeout")

    raw = stalled.sock.sock  # the peer that stopped reading: given up, the stream ends
    raw.settimeout(10)
    while raw.recv(1 << 20):
        pass
    assert srv.ws().request({"action": "ping"})["message"] == "pong"  # the server serves on
    assert "Traceback" not in srv.log()


WRITE_STALL_SCRIPT = """
from gevent import monkey
monkey.patch_all()
import json, socket, time
from kefu.realtime.whole_frames import WholeFrameSocket

ours, peer = socket.socketpair()  # the peer never reads
ours.setblocking(True)  # as gunicorn's gevent worker leaves a client's socket
writer = WholeFrameSocket(ours)
writer.write_stall = 0.5
started = time.monotonic()
try:
    writer.send(b"x" * (16 << 20))  # far more than the kernel buffers
    outcome = "written"
except OSError as exc:
    outcome = type(exc).__name__
peer.settimeout(5)
while peer.recv(1 << 20):  # the stream ends: the socket was shut down
    pass
print(json.dumps({"outcome": outcome, "seconds": time.monotonic() - started}))
"""


def test_a_write_the_peer_takes_nothing_of_gives_up_after_write_stall(tmp_path):
    """gevent's send(timeout=) waits on the socket's own timeout, which gunicorn's
    blocking sockets lack: the write that should give up after ``write_stall`` waited
    as long as the peer lived (the end-to-end test above is dropped by its pong first)."""
    result = run_python(tmp_path, WRITE_STALL_SCRIPT)
    assert result["outcome"] == "TimeoutError"
    assert 0.4 < result["seconds"] < 3


def test_a_deflate_bomb_is_refused_with_1009_before_it_is_inflated(make_server):
    """With permessage-deflate on, wsproto inflated each 16 KiB read whole before the
    message's size was checked: a bomb's read became 16 MB, and a few such sockets left
    the worker hundreds of MB bigger for good. Now no more than the message limit (1 MiB)
    is inflated, and the socket is closed as too big."""
    srv = make_server(ws_deflate=1)
    worker = subprocess.run(["pgrep", "-P", str(srv.proc.pid)], capture_output=True, text=True)

    def rss_mb() -> float:
        status = Path(f"/proc/{int(worker.stdout.split()[0])}/status").read_text()
        return int(status.split("VmRSS:")[1].split()[0]) / 1024

    squeeze = zlib.compressobj(wbits=-15)
    payload = squeeze.compress(b'{"action": "ping", "p": "' + b"a" * (64 << 20))
    payload += squeeze.flush(zlib.Z_SYNC_FLUSH)[:-4]  # the tail the extension leaves out
    frame = client_frame(0xC1, payload)  # a whole text message, compressed (RSV1)
    deflate = "Sec-WebSocket-Extensions: permessage-deflate\r\n"
    before = rss_mb()
    for _ in range(8):
        sock = raw_upgrade(srv.base, headers=deflate)
        sock.sendall(frame)
        received = b""
        with contextlib.suppress(OSError):
            while chunk := sock.recv(4096):
                received += chunk
        sock.close()
        assert server_frames(received)[-1][0] == 8  # a close frame
        assert struct.unpack("!H", server_frames(received)[-1][1][:2])[0] == 1009
    assert rss_mb() - before < 40, (before, rss_mb())
    # A compressed message in two fragments with a ping between them (RFC 6455 5.4) is
    # read whole: wsproto let the ping end the message's state (close 1007).
    ok = raw_upgrade(srv.base, headers=deflate)
    squeeze = zlib.compressobj(wbits=-15)
    payload = squeeze.compress(b'{"action": "ping", "op_id": 1}')
    payload += squeeze.flush(zlib.Z_SYNC_FLUSH)[:-4]
    half = len(payload) // 2
    ok.sendall(client_frame(0x41, payload[:half]) + client_frame(0x89, b"hi"))
    ok.sendall(client_frame(0x80, payload[half:]))
    received = b""
    while not any(opcode == 1 for opcode, _ in server_frames(received)):
        chunk = ok.recv(4096)
        assert chunk, f"closed instead: {server_frames(received)}"
        received += chunk
    reply = next(data for opcode, data in server_frames(received) if opcode == 1)
    reply = zlib.decompressobj(wbits=-15).decompress(reply + b"\x00\x00\xff\xff")
    assert json.loads(reply)["message"] == "pong"
    ok.close()


def client_frame(first_byte: int, payload: bytes) -> bytes:
    """One masked client frame (``first_byte``: FIN, RSV and opcode), payload < 64 KiB."""
    mask = os.urandom(4)
    key = (mask * (len(payload) // 4 + 1))[: len(payload)]
    masked = (int.from_bytes(payload, "big") ^ int.from_bytes(key, "big")).to_bytes(
        len(payload), "big"
    )
    if len(payload) < 126:
        return bytes([first_byte, 0x80 | len(payload)]) + mask + masked
    assert len(payload) < 1 << 16  # its length in two bytes, as the RFC wants
    return bytes([first_byte, 0x80 | 126]) + struct.pack("!H", len(payload)) + mask + masked
