"""The live desk: the hub plus the protocol-neutral rules every adapter shares.

Signing a socket in, binding a visitor, publishing a service's events, and what happens
when sockets go away (an agent's last socket starts a grace period, after which its
users are re-queued) are the same for ds/kefu, the waiter protocol and the pages, so
they live here once.

With one worker the hub is the whole truth. With ``KEFU_BROKER=postgres`` a ``registry``
(kefu/realtime/presence_db.py) mirrors this worker's sockets into the database, so
presence, the per-identity cap and the visitor message rate count every worker; a
worker that publishes control events (a waiter kickout) reaches sockets on all of them.
"""

import logging
import os

import gevent
from flask import current_app

from kefu import clock, db
from kefu.errors import Busy
from kefu.realtime.admission import Admission
from kefu.realtime.broker import MemoryBroker
from kefu.realtime.events import (
    AGENTS,
    AssignmentDeferred,
    QueueMoved,
    SignedOut,
    agent_key,
    user_key,
    visitor_key,
)
from kefu.realtime.grace import BUSY_RETRY_SECONDS, Grace
from kefu.realtime.hub import Hub
from kefu.realtime.inactivity import end_inactive_forever
from kefu.realtime.limits import DEFAULT_LIMITS, TokenBucket
from kefu.realtime.revalidation import revalidate_forever
from kefu.services import presence, routing

log = logging.getLogger(__name__)


# The queue's head was locked by a write, or customers were queued as room came
# (AssignmentDeferred): a message's transaction lasts milliseconds, so the assignment
# runs again this much later.
REDISPATCH_SECONDS = 0.05
_ACTED_ON_HERE = (QueueMoved, AssignmentDeferred)  # events Live acts on, not sockets


class Live(Admission):
    def __init__(
        self,
        agent_grace_seconds: float = 60.0,
        broker=None,
        limits=None,
        registry=None,
        worker_id: str | None = None,
    ):
        self.hub = Hub(broker or MemoryBroker())
        self.worker_id = worker_id or str(os.getpid())
        self.registry = registry  # None: one worker, the hub answers everything
        self._controls: dict[type, object] = {SignedOut: self._close_signed_out}
        self.hub.broker.subscribe(self._control)
        self.limits = {**DEFAULT_LIMITS, **(limits or {})}
        self._init_admission()
        self.grace = Grace(agent_grace_seconds, self.publish, self.hub.online_agent_ids)
        self.stopping = False  # shutdown() ran: sockets opening from now on go at once
        self._revalidator = None
        self.queue_delay = self.limits["QUEUE_UPDATE_SECONDS"]
        self._queue_flush = None
        self._redispatch = None
        if registry is None:
            presence.use(self.hub.online_agent_ids)
        else:
            presence.use(registry.online_agent_ids)
            registry.start(self.publish)

    def on(self, event_type: type, handler) -> None:
        """Run ``handler(live, event)`` in every worker for each published ``event_type``
        (control events that act on sockets rather than render into them)."""
        self._controls[event_type] = handler

    def _control(self, events, origin) -> None:
        for event in events:
            handler = self._controls.get(type(event))
            if handler is not None:
                try:
                    handler(self, event)
                except Exception:
                    log.exception("control event %s failed", type(event).__name__)

    def publish(self, events, origin: str | None = None) -> None:
        # A loop over a constant tuple: a generator and a union type built per event cost
        # more than the check (every message).
        for event in events:
            if isinstance(event, _ACTED_ON_HERE):
                events = self._act_on(events)
                break
        if events:  # Hub.publish's own lines, without its call (every frame comes here)
            self.hub.broker.publish(events, origin)

    def _act_on(self, events) -> list:
        """Start what queue and deferral events ask for; the other events, for sockets."""
        kinds = {type(e) for e in events}
        if QueueMoved in kinds:
            self._queue_changed()
        if AssignmentDeferred in kinds:
            self._dispatch_soon()
        return [e for e in events if not isinstance(e, _ACTED_ON_HERE)]

    def _dispatch_soon(self) -> None:
        """Once, however many deferrals a burst brings (the head is busy for a write,
        a burst of arrivals finds every agent full)."""
        if self._redispatch is None:
            self._redispatch = gevent.spawn_later(REDISPATCH_SECONDS, self._dispatch_again)

    def _dispatch_again(self) -> None:
        self._redispatch = None
        self._dispatch()

    def _queue_changed(self) -> None:
        """Queue positions are coalesced: at most one snapshot per ``queue_delay``, read
        fresh from the database when it goes out. A burst (a thousand arrivals, a fast
        drain) then sends each waiting person its latest place, not every step between:
        re-sending all places on every change is O(n^2) frames for n waiting."""
        if self._queue_flush is None:
            self._queue_flush = gevent.spawn_later(self.queue_delay, self._flush_queue)

    def _flush_queue(self) -> None:
        self._queue_flush = None
        try:
            self.hub.publish([routing.queue_snapshot()], None)
        except Busy:
            log.warning("queue places postponed: no database connection free")
            self._queue_changed()
        except Exception:
            log.exception("publishing the queue failed")

    def open(self, conn) -> None:
        """A socket opened: count it, limit its frame rate, and give it a deadline to
        sign in (or act as a visitor) before it is closed. Once the worker is stopping,
        a socket still let in (gunicorn reads its stop flag once a second, and accepts
        until then) is told to go away like the others: else it was served with this
        worker's presence already gone, then cut without a close at the graceful timeout."""
        self.hub.join(conn)
        if self.stopping:
            conn.close(1001, "Server shutting down")
            return
        if self._revalidator is None:
            every = self.limits["REVALIDATE_SECONDS"]
            self._revalidator = gevent.spawn(revalidate_forever, self, every)
        conn.rate = TokenBucket(self.limits["WS_RATE_PER_SECOND"], self.limits["WS_RATE_BURST"])
        gevent.spawn_later(self.limits["WS_LOGIN_TIMEOUT_SECONDS"], self._expire_anonymous, conn)

    def _expire_anonymous(self, conn) -> None:
        if not conn.identified and not conn.closed:
            conn.close(1008, "Login timeout")

    def sign_in(self, conn, principal) -> None:
        """Attach a socket to its person; an agent's first socket brings it online.
        Raises TooManyConnections past the per-identity cap."""
        self._check_cap(principal.key, conn)
        # Counted for the other workers first: that can fail (no database connection
        # free), and the socket must then stay signed out, not signed in without pushes.
        self._count(conn, principal.key)
        if principal.is_agent:
            self._count(conn, agent_key(principal.kefu_id))  # before dispatch asks who is online
        conn.principal = principal
        conn.identified = True
        conn.signed_in_at = clock.now()
        self.hub.attach(conn, principal.key)
        if not principal.is_agent:
            return
        self.hub.attach(conn, AGENTS)
        came_online = self.hub.add_agent(conn, principal.kefu_id)
        self.grace.back(principal.kefu_id)
        if came_online:
            # Routing reacts in its own greenlet, which runs once this handler yields, so
            # the sign-in reply is queued before any assignment it causes.
            gevent.spawn(self._dispatch)

    def _dispatch(self) -> None:
        try:
            self.publish(routing.dispatch())
        except Busy:
            log.warning("dispatching the queue postponed: no database connection free")
            gevent.spawn_later(BUSY_RETRY_SECONDS, self._dispatch)
        except Exception:
            log.exception("dispatching the queue failed")

    def bind_visitor(self, conn, visitor_id: str, address: str | None = None) -> None:
        """A bound socket counts as signed in (no sign-in deadline): a made-up id costs
        what a new visitor's first message does, or one client holds sockets for ever."""
        self._admit_visitor_id(visitor_id, address)
        self._check_cap(visitor_key(visitor_id), conn)
        conn.identified = True
        if conn.visitor_id is not None and conn.visitor_id != visitor_id:
            self.hub.detach(conn, visitor_key(conn.visitor_id))
            self._uncount(conn, visitor_key(conn.visitor_id))
        conn.visitor_id = visitor_id
        self._count(conn, visitor_key(visitor_id))
        self.hub.attach(conn, visitor_key(visitor_id))

    def close(self, conn) -> None:
        """The socket is gone. An agent that has no socket left gets a grace period."""
        went_offline = self.hub.remove(conn)
        self._uncount(conn)
        if went_offline is not None and self.registry is None:
            # With several workers the presence registry's sweep, which sees every
            # worker, re-queues: a timer here would count from this close even if the
            # agent went on on another worker, and take its users away when it left
            # there later.
            self.grace.went(went_offline)

    def disconnect_user(self, user_id: int, reason: str, session: str | None = None):
        """Close every socket of a person, or only those of one page session (the
        pages' live channel of one browser), on every worker."""
        self.publish([SignedOut(user_id, reason, session)])

    def _close_signed_out(self, _live, event: SignedOut) -> None:
        for conn in self.hub.connections(user_key(event.user_id)):
            if event.session is None or conn.state.get("session") == event.session:
                conn.close(1008, event.reason)

    def shutdown(self) -> None:
        """The worker is stopping: tell every client to go away (1001) and reconnect."""
        self.stopping = True
        self.grace.cancel_all()
        if self.registry is not None:
            try:
                self.registry.stop()  # presence goes now, not after the TTL
            except Exception:
                log.exception("removing this worker's presence failed")
        try:
            self.hub.broker.stop()  # the listener's connection is let go (PostgreSQL)
        except Exception:
            log.exception("stopping the broker failed")
        for conn in self.hub.all_connections():
            conn.close(1001, "Server shutting down")

    def start(self) -> None:
        """The worker is up. One worker alone (the memory broker): agents that held
        customers' conversations before it started get their grace period now, since no
        socket of theirs will close here to start it; after a restart, an agent who never
        came back kept its customers for good. (The PostgreSQL registry keeps absences
        in the database and needs nothing here.) Every worker sweeps for conversations
        their customers left (``INACTIVE_END_SECONDS``; 0: never)."""
        idle = self.limits["INACTIVE_END_SECONDS"]
        if idle > 0:
            gevent.spawn(end_inactive_forever, self, idle)
        if self.registry is not None:
            return
        try:
            holding = routing.agents_holding_customers()
        except Exception:
            log.exception("reading which agents hold conversations failed")
            return
        self.grace.went_before_start(holding)


def publish(events) -> None:
    """Publish what a request's service call returned, through this app's ``Live`` (the
    pages and the REST API; socket handlers are handed theirs)."""
    current_app.extensions["kefu.live"].publish(events)


def init_app(app) -> Live:
    limits = {key: app.config[key] for key in DEFAULT_LIMITS}
    broker = registry = worker_id = None
    if app.config["BROKER"] == "postgres":  # N workers / hosts (docs/deployment.md)
        from kefu.realtime import pg_broker, presence_db

        worker_id = presence_db.new_worker_id()
        broker = pg_broker.PgBroker(
            app.config["DATABASE_URL"], hold_seconds=app.config["BROKER_HOLD_SECONDS"]
        )
        registry = presence_db.DbRegistry(
            worker_id,
            app.config["DATABASE_URL"],
            ttl=app.config["PRESENCE_TTL_SECONDS"],
            beat=app.config["PRESENCE_TTL_SECONDS"] / 3,
            grace=app.config["AGENT_GRACE_SECONDS"],
        )
    elif not db.is_sqlite():  # row locks: see MemoryBroker
        broker = MemoryBroker(hold_seconds=app.config["BROKER_HOLD_SECONDS"])
    live = Live(
        agent_grace_seconds=app.config["AGENT_GRACE_SECONDS"],
        limits=limits,
        broker=broker,
        registry=registry,
        worker_id=worker_id,
    )
    app.extensions["kefu.live"] = live
    return live
