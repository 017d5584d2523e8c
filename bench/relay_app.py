"""The baseline: a bare flask-sock relay speaking just enough ds/kefu for the bench clients.

No database, no services, no outbox: ``login`` puts the socket in the rooms its token
names (comma-separated conversation ids, e.g. ``"3,7"``), ``ping`` answers ``pong``,
``kefu_message_send`` answers the sender and pushes a ``kefu_message`` to the other
sockets in the room of its ``conversation_id`` straight from the handler. It runs under
the same ``gunicorn -c gunicorn.conf.py`` settings and the same transport (whole-frame writes,
no permessage-deflate unless ``KEFU_WS_DEFLATE``) as kefu, so the ratio measures what
kefu itself costs::

    gunicorn -c gunicorn.conf.py bench.relay_app:app
"""

import contextlib
import itertools
import json
import os
import time
from collections import defaultdict

from flask import Flask
from flask_sock import Sock

from kefu.realtime import transport

app = Flask(__name__)
app.config.update(
    WS_DEFLATE=os.environ.get("KEFU_WS_DEFLATE", "").lower() in {"1", "true", "yes", "on"},
    WS_PING_SECONDS=float(os.environ.get("KEFU_WS_PING_SECONDS", "25")),
    MAX_WS_MESSAGE_BYTES=1024 * 1024,
)
transport.install(app)
sock = Sock(app)
rooms: dict[str, set] = defaultdict(set)
ids = itertools.count(1)


class _Live:
    """What gunicorn.conf.py's ``post_worker_init`` expects of kefu at start and shutdown."""

    def start(self) -> None:
        """kefu starts absent agents' grace periods here; the relay has no agents."""

    def shutdown(self) -> None:
        for conns in list(rooms.values()):
            for ws in list(conns):
                with contextlib.suppress(Exception):
                    ws.close(1001)


app.extensions["kefu.live"] = _Live()


def dumps(obj) -> str:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


@app.get("/healthz")
def healthz():
    return {"ok": True}


@sock.route("/ws")
def relay(ws):
    joined = []
    try:
        while True:
            frame = json.loads(ws.receive())
            action, op_id, data = frame.get("action"), frame.get("op_id"), frame.get("data") or {}
            if action == "login":
                # the token names the rooms (conversation ids) this socket is in: "1,2,3"
                joined = [r for r in str(data.get("token")).split(",") if r]
                for r in joined:
                    rooms[r].add(ws)
                ws.send(dumps({"success": True, "message": "Login successful", "op_id": op_id}))
            elif action == "ping":
                ws.send(dumps({"success": True, "message": "pong", "data": None, "op_id": op_id}))
            elif action == "kefu_message_send":
                message_id = next(ids)
                now = time.time()
                ws.send(
                    dumps(
                        {
                            "success": True,
                            "message": "Message sent successfully",
                            "data": {"message_id": message_id, "created_at": now},
                            "op_id": op_id,
                        }
                    )
                )
                push = dumps(
                    {
                        "type": "push_message",
                        "action": "kefu_message",
                        "conversation_id": data.get("conversation_id"),
                        "message_id": message_id,
                        "sender_type": data.get("sender_type"),
                        "content": data.get("content"),
                        "timestamp": int(now),
                    }
                )
                room = str(data.get("conversation_id"))
                for other in list(rooms.get(room, ())):
                    if other is not ws:
                        try:
                            other.send(push)
                        except Exception:
                            rooms[room].discard(other)
            else:
                ws.send(dumps({"success": False, "message": f"Unknown action: {action}"}))
    except Exception:
        pass
    finally:
        for r in joined:
            rooms[r].discard(ws)
