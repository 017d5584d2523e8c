"""The lean frame path (kefu/realtime/frames.py) against wsproto itself as the oracle.

Both parse the same byte stream, cut into the same random chunks; what a
simple-websocket server would make of it (whole messages, pings, pongs, the close
code and reason, protocol errors included) must be the same. The server-level
behaviour is covered by every WebSocket test and by tests/autobahn.
"""

import itertools
import os
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from wsproto import ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Ping,
    Pong,
    Request,
    TextMessage,
)

from kefu.realtime.frames import LeanFrames, text_frame

pytestmark = pytest.mark.ignores_test_database

UPGRADE = (
    b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)


def open_server() -> WSConnection:
    ws = WSConnection(ConnectionType.SERVER)
    ws.receive_data(UPGRADE)
    assert isinstance(next(ws.events()), Request)
    ws.send(AcceptConnection())
    return ws


def frame(opcode: int, payload: bytes, fin=True, rsv=0, masked=True, length_bytes=None) -> bytes:
    """A client frame; ``length_bytes`` forces a (possibly non-minimal) length field."""
    size = len(payload)
    first = (0x80 if fin else 0) | rsv | opcode
    width = length_bytes or (0 if size < 126 else 2 if size < 65536 else 8)
    if width == 0:
        head = bytes((first, (0x80 if masked else 0) | size))
    else:
        code = 126 if width == 2 else 127
        head = bytes((first, (0x80 if masked else 0) | code))
        head += struct.pack("!H" if width == 2 else "!Q", size)
    if not masked:
        return head + payload
    key = os.urandom(4)
    return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


def outcome(ws, chunks) -> list:
    """What simple-websocket makes of the events: whole messages and control events."""
    seen, parts = [], []
    for chunk in chunks:
        if ws.state.name == "CLOSED":
            break
        ws.receive_data(chunk)
        for event in ws.events():
            if isinstance(event, TextMessage | BytesMessage):
                parts.append(event.data)
                if event.message_finished:
                    joined = "".join(parts) if isinstance(event, TextMessage) else b"".join(parts)
                    seen.append(("message", joined))
                    parts = []
            elif isinstance(event, Ping | Pong):
                seen.append((type(event).__name__, bytes(event.payload)))
            elif isinstance(event, CloseConnection):
                seen.append(("close", int(event.code), event.reason))
    return seen


def both(stream: bytes, cuts: list[int]) -> tuple[list, list]:
    points = sorted({c % (len(stream) + 1) for c in cuts} | {0, len(stream)})
    chunks = [stream[a:b] for a, b in itertools.pairwise(points)] or [b""]
    return outcome(open_server(), chunks), outcome(LeanFrames(open_server()), chunks)


TEXTS = st.text(max_size=300) | st.text(min_size=126, max_size=70000)
GOOD = st.one_of(
    TEXTS.map(lambda t: frame(1, t.encode())),
    st.binary(max_size=125).map(lambda b: frame(9, b)),
    st.binary(max_size=125).map(lambda b: frame(10, b)),
)
BAD = st.one_of(
    st.binary(max_size=300).map(lambda b: frame(2, b)),  # binary
    st.text(max_size=50).map(lambda t: frame(1, t.encode(), fin=False) + frame(0, b"!")),
    st.text(max_size=50).map(lambda t: frame(1, t.encode(), rsv=0x40)),
    st.text(max_size=50).map(lambda t: frame(1, t.encode(), masked=False)),
    st.text(max_size=50).map(lambda t: frame(1, t.encode(), length_bytes=2)),  # non-minimal
    st.text(min_size=1, max_size=50).map(lambda t: frame(1, t.encode(), length_bytes=8)),
    st.binary(min_size=1, max_size=50).map(lambda b: frame(1, b"\xff" + b)),  # not UTF-8
    st.binary(min_size=126, max_size=200).map(lambda b: frame(9, b)),  # control over 125
    st.just(frame(9, b"x", fin=False)),  # fragmented ping
    st.just(frame(8, struct.pack("!H", 1000) + b"bye")),
    st.just(frame(8, b"")),
    st.just(frame(3, b"reserved opcode")),
    st.just(frame(0, b"continuation without a start")),
)


@settings(max_examples=300, deadline=None)
@given(
    frames=st.lists(st.one_of(GOOD, GOOD, GOOD, BAD), max_size=8),
    cuts=st.lists(st.integers(min_value=0, max_value=10**6), max_size=6),
)
def test_lean_frames_see_what_wsproto_sees(frames, cuts):
    plain, lean = both(b"".join(frames), cuts)
    assert lean == plain


def test_a_frame_trickling_in_byte_by_byte_is_one_message():
    text = "字" * 1000
    stream = frame(1, text.encode()) + frame(9, b"hi") + frame(1, b"next")
    plain, lean = both(stream, list(range(len(stream))))
    assert lean == plain == [("message", text), ("Ping", b"hi"), ("message", "next")]


def test_nothing_after_a_close_frame_is_delivered():
    stream = frame(1, b"before") + frame(8, struct.pack("!H", 1000)) + frame(1, b"after")
    plain, lean = both(stream, [])
    assert lean == plain == [("message", "before"), ("close", 1000, "")]


def test_a_bad_frame_after_good_ones_closes_with_wsproto_code():
    stream = frame(1, b"ok") + frame(1, b"\xc3\x28")  # invalid UTF-8
    plain, lean = both(stream, [])
    assert lean == plain
    assert lean[0] == ("message", "ok") and lean[1][:2] == ("close", 1007)


@given(st.text(max_size=70000))
@settings(max_examples=60, deadline=None)
def test_outgoing_text_frames_match_wsproto(text):
    assert text_frame(text) == open_server().send(TextMessage(data=text))
    lean = LeanFrames(open_server())
    assert lean.send(TextMessage(data=text)) == text_frame(text)


def test_outgoing_bytes_control_frames_and_closed_state_go_through_wsproto():
    lean = LeanFrames(open_server())
    blob = bytes(range(256))
    assert lean.send(TextMessage(data=blob)) == open_server().send(TextMessage(data=blob))
    assert lean.send(TextMessage(data=blob))[0] == 0x82  # binary, as wsproto sends it
    assert lean.send(Ping(b"p")) == b"\x89\x01p"
    lean.send(CloseConnection(code=1000))
    assert lean.state.name == "LOCAL_CLOSING"
    try:
        lean.send(TextMessage(data="late"))
    except Exception as exc:  # wsproto refuses to send after a close, as before
        assert type(exc).__name__ == "LocalProtocolError"
    else:
        raise AssertionError("a text frame was built after the close")
