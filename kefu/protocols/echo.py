"""``/ws/echo``: echoes every text and binary message back, for WebSocket conformance runs.

Off unless ``KEFU_ECHO_ENDPOINT`` is set. It runs on the same stack as the real
protocols (flask-sock with our ``KefuServer`` transport, a ``Connection`` and its
writer), so the Autobahn|Testsuite fuzzing client (tests/autobahn/run.sh) tests what
the protocols use. It neither signs anyone in nor touches the database.
"""

from flask import Blueprint, current_app

from kefu.realtime.connection import Connection
from kefu.realtime.transport import sock

bp = Blueprint("echo", __name__)


@sock.route("/ws/echo", bp=bp)
def echo(ws) -> None:
    conn = Connection(ws, None, current_app.config["WS_OUTBOX_LIMIT"])
    try:
        for message in conn.frames():
            if message is not None:
                conn.send(message)  # str goes back as text, bytes as binary
    finally:
        conn.finish()
