"""The conformance echo endpoint: off by default, and an exact echo when switched on."""

import pytest
import websocket

pytestmark = pytest.mark.wire_only  # runs in the SQLite pass only (tests/passes.py)


def test_echo_endpoint_is_off_by_default(server):
    with pytest.raises(websocket.WebSocketBadStatusException) as refused:
        websocket.create_connection(f"ws://{server.base}/ws/echo", timeout=5)
    assert refused.value.status_code == 404


def test_echo_endpoint_echoes_text_and_binary(make_server):
    srv = make_server(echo_endpoint=1)
    ws = websocket.create_connection(f"ws://{srv.base}/ws/echo", timeout=5)
    try:
        for text in ("hello", "字" * 70000, ""):
            ws.send(text)
            assert ws.recv_data() == (websocket.ABNF.OPCODE_TEXT, text.encode())
        blob = bytes(range(256)) * 300
        ws.send_binary(blob)
        assert ws.recv_data() == (websocket.ABNF.OPCODE_BINARY, blob)
    finally:
        ws.close()


def test_whole_text_frames_keep_the_message_size_limit(make_server):
    # Text frames under 64 KiB take the lean path (kefu/realtime/frames.py); the
    # transport's own limit still closes the socket with 1009 (message too big).
    srv = make_server(echo_endpoint=1, max_ws_message_bytes=1000)
    ws = websocket.create_connection(f"ws://{srv.base}/ws/echo", timeout=5)
    try:
        ws.send("a" * 1000)
        assert ws.recv_data() == (websocket.ABNF.OPCODE_TEXT, b"a" * 1000)
        ws.send("b" * 1001)
        opcode, payload = ws.recv_data(control_frame=True)
        assert (opcode, payload[:2]) == (websocket.ABNF.OPCODE_CLOSE, b"\x03\xf1")  # 1009
    finally:
        ws.close()
    assert srv.get("/healthz").ok
