"""Fan-out between workers and hosts through PostgreSQL LISTEN/NOTIFY (KEFU_BROKER=postgres).

``publish`` queues the serialised events; a publisher greenlet per worker stores each
burst in ``broker_event`` and sends ``NOTIFY kefu_events, '<id>,<id>…'`` in the same
transaction, so a notification never names a row that is not there and the payload
stays small whatever the messages (ids only; NOTIFY's limit is 8000 bytes). Every
worker, the publisher included, runs one listener greenlet on its own connection that
fetches the rows named by the notifications and hands them to its hub. Nothing is
delivered locally on publish, so each worker sees each event exactly once, through one
path.

Order. PostgreSQL delivers notifications in the commit order of the publishing
transactions, which start after the service transaction committed. Two messages of one
conversation sent at the same moment on two workers can therefore be published in the
other order than their sequence numbers. ``SeqOrder`` holds back a ``MessageCreated``
whose predecessor (seq - 1) has not been delivered yet, for at most ``hold_seconds``;
the predecessor's arrival releases it at once, the deadline releases it anyway (the
client's history, read from the database, is always in order). The first message a
worker sees of a conversation waits at most 0.1 s unless it is seq 1: its predecessor
was most likely delivered before this worker started. Only message pushes are held;
other events (ends, reads, assignments) go as they come.
"""

import contextlib
import logging
import time
from collections import deque

import gevent
import psycopg2
from gevent.socket import wait_read

from kefu import db
from kefu.errors import Busy
from kefu.realtime import wire
from kefu.realtime.events import QueueChanged
from kefu.realtime.seq_order import SeqOrder

log = logging.getLogger(__name__)

CHANNEL = "kefu_events"
KEEP_SECONDS = 300.0  # stored events older than this are pruned (a late fetch is minutes off)
PRUNE_EVERY = 60.0
PUBLISH_LOCK = 0x6B656676  # advisory lock key: one publishing transaction at a time
MAX_IDS_PER_NOTIFY = 200  # 200 ids of ≤ 19 digits and commas stay under NOTIFY's 8000 bytes


@contextlib.contextmanager
def transient_write():
    """A write transaction whose commit does not wait for the disk (``synchronous_commit
    off``): published events, presence counts and rate windows are worthless after a
    database crash anyway (every worker reconnects and every client resyncs), while the
    messages they announce were committed durably by their own service transaction.
    Only set when this block opens the transaction, never on a caller's."""
    outer = db.database.in_transaction() if not db.database.is_closed() else False
    with db.write():
        if not outer:
            db.database.execute_sql("SET LOCAL synchronous_commit TO OFF")
        yield


def _fresh_queue(events: tuple) -> tuple:
    if not any(isinstance(e, QueueChanged) for e in events):
        return events
    from kefu.services import routing  # the queue's truth is the database

    fresh = routing.queue_snapshot_locked()
    return tuple(fresh if isinstance(e, QueueChanged) else e for e in events)


class PgBroker:
    """The two-method broker interface over LISTEN/NOTIFY; see the module docstring."""

    def __init__(self, url: str, hold_seconds: float = 1.0, tick: float = 1.0):
        self.url = url
        self.tick = tick
        self.order = SeqOrder(hold_seconds)
        self._subscribers = []
        self._listener = None
        self._outbox: deque[tuple] = deque()  # (events, origin) waiting to be published
        self._publisher = None
        self._last_id = None  # highest id delivered: catch-up after a lost connection
        self._pruned_at = 0.0

    def subscribe(self, deliver) -> None:
        self._subscribers.append(deliver)
        if self._listener is None:
            self._listener = gevent.spawn(self._listen_forever)

    def publish(self, events, origin: str | None) -> None:
        """Queue the batch for this worker's publisher greenlet; never waits for the
        database, so a handler's reply is not held up by the fan-out."""
        self._outbox.append((tuple(events), origin))
        if self._publisher is None or self._publisher.dead:
            self._publisher = gevent.spawn(self._publish_pending)

    def _publish_pending(self) -> None:
        """One transaction per burst: many rows, one NOTIFY naming them all (in order).
        Under load this turns a transaction per event into one per burst."""
        while self._outbox:
            batches = [
                self._outbox.popleft() for _ in range(min(len(self._outbox), MAX_IDS_PER_NOTIFY))
            ]
            try:
                self._store_and_notify(batches)
            except Busy:  # nothing was stored: the same batches go first, a moment later
                log.warning("publishing postponed: no database connection free")
                self._outbox.extendleft(reversed(batches))
                gevent.sleep(1.0)
            except Exception:  # the clients concerned resync when they reconnect
                log.exception("publishing %d event batches failed", len(batches))

    @staticmethod
    def _store_and_notify(batches: list[tuple]) -> None:
        """Publishers of all workers take turns (an advisory lock), so notifications go
        out in the order the transactions took the lock. A queue snapshot is read again
        here, under that lock: a snapshot read earlier on one worker could otherwise be
        delivered after a newer one from another worker and leave stale places shown."""
        rows = ", ".join(["(%s, extract(epoch from now()))"] * len(batches))
        with transient_write():
            db.database.execute_sql("SELECT pg_advisory_xact_lock(%s)", (PUBLISH_LOCK,))
            payloads = [wire.dumps(_fresh_queue(events), origin) for events, origin in batches]
            cursor = db.database.execute_sql(
                f"INSERT INTO broker_event (payload, created_at) VALUES {rows} RETURNING id",
                payloads,
            )
            ids = sorted(row[0] for row in cursor.fetchall())  # serial: insertion order
            db.database.execute_sql("SELECT pg_notify(%s, %s)", (CHANNEL, ",".join(map(str, ids))))

    def stop(self) -> None:
        """A graceful exit: the listener stops, and its connection closes (``finally``
        in ``_listen_forever``). The publisher is left to send what is queued."""
        if self._listener is not None:
            self._listener.kill(block=False)

    # -- the listener greenlet ---------------------------------------------------
    def _listen_forever(self) -> None:
        while True:
            conn = None
            try:
                conn = psycopg2.connect(self.url)
                conn.autocommit = True
                self._listen(conn)
            except gevent.GreenletExit:
                raise
            except Exception:
                log.exception("broker listener failed; reconnecting")
                gevent.sleep(1.0)
            finally:
                if conn is not None:
                    conn.close()

    def _listen(self, conn) -> None:
        with conn.cursor() as cur:
            cur.execute(f"LISTEN {CHANNEL}")
            if self._last_id is not None:  # reconnected: what was sent meanwhile
                cur.execute(
                    "SELECT id FROM broker_event WHERE id > %s ORDER BY id", (self._last_id,)
                )
                self._fetch_and_deliver(cur, [row[0] for row in cur.fetchall()])
            while True:
                timeout = 0.05 if self.order.holding() else self.tick
                with contextlib.suppress(TimeoutError):  # a quiet tick
                    wait_read(conn.fileno(), timeout=timeout)
                conn.poll()
                ids = [int(i) for n in conn.notifies for i in n.payload.split(",")]
                conn.notifies.clear()
                if ids:
                    self._fetch_and_deliver(cur, ids)
                self._hand_out(self.order.due(time.monotonic()))
                self._prune(cur)

    def _fetch_and_deliver(self, cur, ids: list[int]) -> None:
        """One query for the whole burst; delivered in notification (commit) order."""
        if not ids:
            return
        cur.execute("SELECT id, payload FROM broker_event WHERE id = ANY(%s)", (ids,))
        payloads = dict(cur.fetchall())
        now = time.monotonic()
        for event_id in ids:
            payload = payloads.get(event_id)
            if payload is None:
                continue  # pruned already (a listener minutes behind)
            self._last_id = max(event_id, self._last_id or 0)
            try:
                batch = wire.loads(payload)
            except Exception:
                log.exception("undecodable broker event %s", event_id)
                continue
            self._hand_out(self.order.offer(batch, now))

    def _hand_out(self, batches: list) -> None:
        for events, origin in batches:
            for deliver in self._subscribers:
                try:
                    deliver(events, origin)
                except Exception:
                    log.exception("delivering broker events failed")

    def _prune(self, cur) -> None:
        now = time.monotonic()
        if now - self._pruned_at < PRUNE_EVERY:
            return
        self._pruned_at = now
        cur.execute(
            "DELETE FROM broker_event WHERE created_at < extract(epoch from now()) - %s",
            (KEEP_SECONDS,),
        )
