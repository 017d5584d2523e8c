"""What a waiter socket is sent again when the agent comes back: the waiter protocol has
no read receipts and no resync, so the server keeps, per agent and worker, how far its
last waiter socket is known to have heard.

"Known" is what the peer proved: closing the WebSocket (or answering our close), it
was reading up to then; answering a ping, it had every frame written before that ping.
A connection can also die without a word (a phone changing networks): what was pushed
to it after its last answered ping is sent again, with its ``message_id``, rather than
lost. A socket that proved nothing leaves the next one to start where it started.
"""

import time

from wsproto.connection import ConnectionState

from kefu import clock
from kefu.protocols import waiter_codec as codec
from kefu.realtime.events import user_key

# A message is stamped when it is stored and pushed after its COMMIT, and a peer that
# closes drops what is still on its way: one stamped this little before the proof (a
# ping, a close) counts as unheard, and is sent again.
PUSH_LAG_SECONDS = 1.0


class WaiterAbsences:
    """Per agent, how far its last waiter socket on this worker is known to have heard:
    (since when nothing is known to be heard, the conversations heard until then). A
    waiter signing in is sent, after each ``new_connection``, what its customers wrote
    since then (whatever other sockets the agent kept: /ws and the dashboard are other
    clients); an agent with no waiter socket here since the worker started missed
    everything since then. A conversation requeued while the agent was away and handed
    back to it comes with what was written since then, not with every message still
    unread (all it had heard: the waiter protocol marks nothing read). With several
    workers, what a waiter socket on another worker heard is sent again
    (docs/protocol-waiter.md)."""

    def __init__(self):
        self.started = clock.now()
        self._gone: dict[int, tuple] = {}  # kefu_id -> (since, conversation ids heard)

    def start(self, live, conn, who) -> None:
        """Before ``conn``'s sign-in (whose dispatch may hand it users at once): since
        when it is owed what its customers wrote, and the conversations heard until then
        (``conn.state["heard_until"]``). Another waiter socket of the agent still open
        here (a reconnect before the old one was found dead, or a second tab; it is
        kicked out) passes on what it is known to have heard."""
        others = waiter_sockets(live, who.user_id)
        if others:
            known = self._known(max(others, key=lambda other: other.signed_in_at))
        else:
            known = self._gone.pop(who.kefu_id, (self.started, frozenset()))
        conn.state["heard_until"] = known

    def went(self, live, conn) -> None:
        """``conn`` closed: if it was the agent's last waiter socket here, note how far
        it is known to have heard."""
        who = conn.principal
        if who is None or not who.is_agent or not is_waiter_socket(conn):
            return
        if not any(o is not conn for o in waiter_sockets(live, who.user_id)):
            self._gone[who.kefu_id] = self._known(conn)

    def _known(self, conn) -> tuple:
        """(since when ``conn`` is not known to have heard, the conversations it heard
        until then). Nothing proven: where it started itself."""
        proven = heard_before(conn.ws)
        if proven is None:
            return conn.state.get("heard_until", (self.started, frozenset()))
        cutoff = proven - PUSH_LAG_SECONDS
        announced = conn.state.get("announced", {})
        heard = frozenset(cid for cid, at in announced.items() if at < cutoff)
        return clock.at(cutoff), heard


def heard_before(socket) -> float | None:
    """Unix time before which the peer had every frame written to the socket, or None.
    A peer that closed the WebSocket itself, or answered our close, was reading up to
    then; otherwise (open, or vanished: the socket's end, or pings left unanswered) it
    had what was written before its last answered ping. Without pings, now is all
    there is."""
    if socket.ws.state in (ConnectionState.REMOTE_CLOSING, ConnectionState.CLOSED):
        return time.time()
    if not getattr(socket, "ping_interval", None):  # KEFU_WS_PING_SECONDS=0
        return time.time()
    return socket.received_before()


def waiter_sockets(live, user_id: int) -> list:
    """The agent's waiter sockets on this worker."""
    return [c for c in live.hub.connections(user_key(user_id)) if is_waiter_socket(c)]


def is_waiter_socket(conn) -> bool:
    return isinstance(conn.codec, codec.WaiterCodec) and conn.codec.role == codec.WAITER
