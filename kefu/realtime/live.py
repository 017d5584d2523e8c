"""The live desk: the hub plus the protocol-neutral rules every adapter shares.

Signing a socket in, binding a visitor, publishing a service's events, and what happens
when sockets go away (an agent's last socket starts a grace period, after which its
users are re-queued) are the same for ds/kefu, the waiter protocol and the pages, so
they live here once.
"""

import logging

import gevent

from kefu.realtime.broker import MemoryBroker
from kefu.realtime.events import AGENTS, visitor_key
from kefu.realtime.hub import Hub
from kefu.services import presence, routing

log = logging.getLogger(__name__)


class Live:
    def __init__(self, agent_grace_seconds: float = 60.0, broker=None):
        self.hub = Hub(broker or MemoryBroker())
        self.agent_grace_seconds = agent_grace_seconds
        self._away: dict[int, gevent.Greenlet] = {}
        presence.use(self.hub.online_agent_ids)

    def publish(self, events, origin: str | None = None) -> None:
        self.hub.publish(events, origin)

    def open(self, conn) -> None:
        self.hub.join(conn)

    def sign_in(self, conn, principal) -> None:
        """Attach a socket to its person; an agent's first socket brings it online."""
        conn.principal = principal
        self.hub.attach(conn, principal.key)
        if not principal.is_agent:
            return
        self.hub.attach(conn, AGENTS)
        came_online = self.hub.add_agent(conn, principal.kefu_id)
        timer = self._away.pop(principal.kefu_id, None)
        if timer is not None:
            timer.kill(block=False)  # back within the grace period: nothing moves
        if came_online:
            # Routing reacts in its own greenlet, which runs once this handler yields, so
            # the sign-in reply is queued before any assignment it causes.
            gevent.spawn(self._dispatch)

    def _dispatch(self) -> None:
        try:
            self.publish(routing.dispatch())
        except Exception:
            log.exception("dispatching the queue failed")

    def bind_visitor(self, conn, visitor_id: str) -> None:
        if conn.visitor_id is not None:
            self.hub.detach(conn, visitor_key(conn.visitor_id))
        conn.visitor_id = visitor_id
        self.hub.attach(conn, visitor_key(visitor_id))

    def close(self, conn) -> None:
        """The socket is gone. An agent that has no socket left gets a grace period."""
        went_offline = self.hub.remove(conn)
        if went_offline is not None:
            self._away[went_offline] = gevent.spawn_later(
                self.agent_grace_seconds, self._requeue_if_away, went_offline
            )

    def shutdown(self) -> None:
        """The worker is stopping: tell every client to go away (1001) and reconnect."""
        for timer in self._away.values():
            timer.kill(block=False)  # the next worker decides, from the database
        self._away.clear()
        for conn in self.hub.all_connections():
            conn.close(1001, "Server shutting down")

    def _requeue_if_away(self, kefu_id: int) -> None:
        self._away.pop(kefu_id, None)
        try:
            self.publish(routing.requeue_agent(kefu_id))
        except Exception:
            log.exception("re-queueing the users of agent %s failed", kefu_id)


def init_app(app) -> Live:
    live = Live(agent_grace_seconds=app.config["AGENT_GRACE_SECONDS"])
    app.extensions["kefu.live"] = live
    return live
