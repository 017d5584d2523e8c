"""Helpers shared by the waiter-protocol tests (no tests here): signed-in user and waiter
sockets, and matchers for whole-frame comparisons."""

import itertools

from tests.support import INT, TIME, Any  # noqa: F401  (re-exported for the waiter tests)

USER_PATH = "/v1/ws/connect/user"
WAITER_PATH = "/v1/ws/connect/waiter"
_names = itertools.count(1)


def unique(prefix: str) -> str:
    return f"{prefix}-{next(_names)}"


class Peer:
    """A signed-in socket of either role: ``me`` is the auth_success profile."""

    def __init__(self, server, path: str, token: str, op_id: str = "auth-1"):
        self.ws = server.ws(path)
        self.token = token
        reply = self.ws.request({"op_id": op_id, "type": "auth", "payload": {"token": token}})
        assert reply["type"] == "auth_success", reply
        self.me = reply["payload"]
        self.uuid = self.me["uuid"]

    def send(self, type_, payload=None, op_id=None, to=None):
        frame = {"type": type_}
        if payload is not None:
            frame["payload"] = payload
        if op_id is not None:
            frame["op_id"] = op_id
        if to is not None:
            frame["to"] = to
        self.ws.send(frame)

    def request(self, type_, payload=None, op_id=None, to=None) -> dict:
        self.send(type_, payload, op_id, to)
        return self.ws.recv()

    def expect(self, type_, timeout: float = 5.0) -> dict:
        """The next frame of this type (others seen on the way are in ``ws.skipped``)."""
        return self.ws.recv_until(lambda f: f["type"] == type_, timeout)

    def recv(self, timeout=None) -> dict:
        return self.ws.recv(timeout)

    def silent(self, seconds: float = 0.3) -> bool:
        return self.ws.silent(seconds)

    def close(self):
        self.ws.close()


def user(server, name: str | None = None) -> Peer:
    """A host-JWT user (provisioned on first use) signed in on the user endpoint."""
    return Peer(server, USER_PATH, server.host_jwt(name or unique("u")))


def waiter(server, agent: dict) -> Peer:
    return Peer(server, WAITER_PATH, agent["token"])


def agent(server, max_concurrent: int = 5) -> dict:
    return server.create_agent(unique("agent"), max_concurrent=max_concurrent)


def serving(server, text: str) -> tuple[dict, Peer, Peer]:
    """(agent, its ready waiter socket, a user it serves who has said ``text``)."""
    a = agent(server)
    w = waiter(server, a)
    w.request("ready")
    u = user(server)
    assert u.request("connect")["type"] == "connect_success"
    w.expect("new_connection")
    u.request("message_text", {"text": text})
    w.expect("message_text")
    return a, w, u


def frame(type_, payload=None, op_id=None, sender=None, to=None) -> dict:
    """An expected outgoing frame; ``sender``/``to`` are Peers or uuids."""
    return {
        "op_id": op_id,
        "from": getattr(sender, "uuid", sender),
        "to": getattr(to, "uuid", to),
        "type": type_,
        "payload": payload,
    }


def text_payload(text: str, conversation_id=INT, message_id=INT) -> dict:
    return {
        "text": text,
        "message_id": message_id,
        "conversation_id": conversation_id,
        "created_at": TIME,
    }


def closed(peer, timeout: float = 5.0) -> bool:
    """True once the server closes this socket (a close frame or EOF arrives)."""
    import websocket

    peer.ws.sock.settimeout(timeout)
    while True:
        try:
            opcode, _ = peer.ws.sock.recv_data(control_frame=True)
        except (websocket.WebSocketConnectionClosedException, ConnectionError):
            return True
        if opcode == websocket.ABNF.OPCODE_CLOSE:
            return True


def rows(server, query: str, *params) -> list[tuple]:
    """Stored state, read straight from the server's database (any of the three)."""
    return server.sql(query, *params)
