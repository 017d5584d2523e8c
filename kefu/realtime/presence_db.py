"""What every worker must know about the others, kept in PostgreSQL (KEFU_BROKER=postgres).

- **Presence.** Each worker refreshes ``worker_presence.expires_at`` every ``beat``
  seconds (``ttl`` ahead) and counts its live sockets per hub key in ``live_key``
  (``a:<kefu_id>`` for an agent). A key counts only while its worker's heartbeat is
  fresh, so a worker that dies (SIGKILL, power cut) stops counting within ``ttl``.
- **Agents away.** Every worker sweeps: an agent that holds users' conversations but
  is online nowhere is noted in ``agent_away``; once it has been away for the grace
  period, its users are re-queued (``routing.requeue_agent``, which locks the rows, so
  two sweepers never move a conversation twice). This covers a dead worker, whose
  in-process grace timers died with it.
- **Limits.** The per-identity socket cap sums ``live_key`` over live workers; visitor
  messages are counted per minute in ``rate_window`` (one upsert per message).

The heartbeat runs on a connection of its own, outside the pool: a worker whose pool
stays drained past the TTL still serves its sockets, and must not be taken for dead
(its agents' customers would be re-queued while they chat).

Only used with the PostgreSQL broker; one worker with the memory broker asks its hub.
"""

import contextlib
import logging
import os
import secrets
import socket
import time
from collections import Counter

import gevent
import psycopg2
from gevent.lock import Semaphore

from kefu import db
from kefu.errors import Busy
from kefu.realtime.pg_broker import transient_write
from kefu.services import routing

log = logging.getLogger(__name__)

NOW = "extract(epoch from now())"
_ALIVE = f"JOIN worker_presence w ON w.worker_id = k.worker_id AND w.expires_at > {NOW}"


def new_worker_id() -> str:
    return f"{socket.gethostname()[:60]}:{os.getpid()}:{secrets.token_hex(3)}"


def _sql(query: str, params=()):
    return db.database.execute_sql(query, params)


class OwnConnection:
    """One connection outside the pool, opened on first use and again after a failure;
    greenlets take turns on it (a psycopg2 connection runs one command at a time)."""

    def __init__(self, url: str):
        self.url = url
        self._conn = None
        self._turn = Semaphore()

    @contextlib.contextmanager
    def transaction(self):
        """A cursor in one transaction, committed at the end (not waiting for the disk:
        what it writes is worthless after a database crash, see ``transient_write``)."""
        with self._turn:
            if self._conn is None:
                self._conn = psycopg2.connect(self.url)
            try:
                with self._conn, self._conn.cursor() as cur:
                    cur.execute("SET LOCAL synchronous_commit TO OFF")
                    yield cur
            except (psycopg2.OperationalError, psycopg2.InterfaceError):
                self.close()  # the server went away: reconnect next time
                raise

    def close(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.close()
            self._conn = None


class DbRegistry:
    def __init__(
        self,
        worker_id: str,
        url: str,
        ttl: float = 15.0,
        beat: float = 5.0,
        grace: float = 60.0,
    ):
        self.worker_id, self.ttl, self.beat, self.grace = worker_id, ttl, beat, grace
        self._heart = OwnConnection(url)
        self.publish = None  # set by start(): Live.publish
        self._mine: Counter[str] = Counter()  # what this worker wrote to live_key
        self._registered = False
        self._beater = None

    def start(self, publish) -> None:
        self.publish = publish
        if self._beater is None:
            self._beater = gevent.spawn(self._beat_forever)

    # -- this worker's sockets ---------------------------------------------------
    def connected(self, key: str) -> None:
        self._ensure_registered()
        self._mine[key] += 1  # before the write: the heartbeat's rewrite may run in it
        try:
            with transient_write():
                _sql(
                    "INSERT INTO live_key (worker_id, key, connections) VALUES (%s, %s, 1) "
                    "ON CONFLICT (worker_id, key) "
                    "DO UPDATE SET connections = live_key.connections + 1",
                    (self.worker_id, key),
                )
        except BaseException:  # not counted (no connection free): the rewrite must agree
            self._forget(key)
            raise

    def _forget(self, key: str) -> None:
        self._mine[key] -= 1
        if self._mine[key] <= 0:
            del self._mine[key]

    def disconnected(self, key: str) -> None:
        self._forget(key)
        with transient_write():
            _sql(
                "UPDATE live_key SET connections = connections - 1 "
                "WHERE worker_id = %s AND key = %s",
                (self.worker_id, key),
            )
            _sql(
                "DELETE FROM live_key WHERE worker_id = %s AND key = %s AND connections <= 0",
                (self.worker_id, key),
            )

    # -- what every worker sees ----------------------------------------------------
    def count(self, key: str) -> int:
        with db.read():
            row = _sql(
                f"SELECT COALESCE(SUM(k.connections), 0) FROM live_key k {_ALIVE} WHERE k.key = %s",
                (key,),
            ).fetchone()
        return int(row[0])

    def online_agent_ids(self) -> frozenset[int]:
        with db.read():
            rows = _sql(
                f"SELECT DISTINCT k.key FROM live_key k {_ALIVE} "
                "WHERE k.key LIKE %s AND k.connections > 0",
                ("a:%",),
            ).fetchall()
        return frozenset(int(key[2:]) for (key,) in rows)  # events.agent_key: "a:<kefu_id>"

    def admit(self, key: str, per_minute: float) -> bool:
        """One more hit in this minute's window for ``key``; False past the limit."""
        with transient_write():
            hits = _sql(
                "INSERT INTO rate_window (key, minute, hits) VALUES (%s, %s, 1) "
                "ON CONFLICT (key, minute) DO UPDATE SET hits = rate_window.hits + 1 "
                "RETURNING hits",
                (key, int(time.time() // 60)),
            ).fetchone()[0]
        return hits <= per_minute

    # -- heartbeat and sweeping ----------------------------------------------------
    def _ensure_registered(self) -> None:
        if not self._registered:
            self.heartbeat()

    def heartbeat(self) -> None:
        """Refresh this worker's expiry; if another worker already swept it away (this
        one stalled past the TTL), write its live sockets back."""
        with self._heart.transaction() as cur:
            cur.execute(
                f"UPDATE worker_presence SET expires_at = {NOW} + %s WHERE worker_id = %s",
                (self.ttl, self.worker_id),
            )
            if not cur.rowcount:
                cur.execute(
                    f"INSERT INTO worker_presence (worker_id, expires_at) VALUES (%s, {NOW} + %s)",
                    (self.worker_id, self.ttl),
                )
                cur.execute("DELETE FROM live_key WHERE worker_id = %s", (self.worker_id,))
                for key, n in self._mine.items():
                    cur.execute(
                        "INSERT INTO live_key (worker_id, key, connections) VALUES (%s, %s, %s)",
                        (self.worker_id, key, n),
                    )
        self._registered = True

    def _beat_forever(self) -> None:
        while True:
            try:
                self.heartbeat()
            except Exception:
                log.exception("presence heartbeat failed")
            try:
                self.sweep()
            except Busy:  # the next beat sweeps again
                log.warning("presence sweep postponed: no database connection free")
            except Exception:
                log.exception("presence sweep failed")
            gevent.sleep(self.beat)

    def sweep(self) -> None:
        """Forget long-dead workers and old rate windows; re-queue agents away too long."""
        with transient_write():
            _sql(
                "DELETE FROM live_key WHERE worker_id IN (SELECT worker_id FROM "
                f"worker_presence WHERE expires_at < {NOW} - 60)"
            )
            _sql(f"DELETE FROM worker_presence WHERE expires_at < {NOW} - 60")
            _sql("DELETE FROM rate_window WHERE minute < %s", (int(time.time() // 60) - 2,))
        for kefu_id in self._agents_away_too_long():
            self.publish(routing.requeue_agent(kefu_id))

    def _agents_away_too_long(self) -> list[int]:
        online = self.online_agent_ids()
        with transient_write():
            away = routing.agents_holding_customers() - online
            _sql("DELETE FROM agent_away WHERE NOT (kefu_id = ANY(%s))", (list(away),))
            for kefu_id in away:
                _sql(
                    f"INSERT INTO agent_away (kefu_id, since) VALUES (%s, {NOW}) "
                    "ON CONFLICT (kefu_id) DO NOTHING",
                    (kefu_id,),
                )
            due = [
                row[0]
                for row in _sql(
                    f"DELETE FROM agent_away WHERE since <= {NOW} - %s RETURNING kefu_id",
                    (self.grace,),
                ).fetchall()
            ]
        return due

    def stop(self) -> None:
        """A graceful exit: this worker's presence goes at once, not after the TTL."""
        if self._beater is not None:
            self._beater.kill(block=False)
        self._heart.close()
        with transient_write():
            _sql("DELETE FROM live_key WHERE worker_id = %s", (self.worker_id,))
            _sql("DELETE FROM worker_presence WHERE worker_id = %s", (self.worker_id,))
