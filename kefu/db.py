"""The database: built from KEFU_DATABASE_URL, scoped per service call, never per socket.

Services use ``read()`` and ``write()``; nothing else opens connections. A pooled
connection is taken for the duration of one call and given back, so ten thousand idle
sockets hold no database connection at all.

SQLite does not yield to gevent while it waits for a lock, so a greenlet stuck in
SQLite's busy timeout would freeze every socket of the worker. Writes are therefore
serialised cooperatively in-process (a gevent-aware lock once gevent has patched
``threading``) and begin with ``BEGIN IMMEDIATE`` so a transaction never has to upgrade
its lock half-way. PostgreSQL and MySQL need neither: they use row locks (``locked``).
"""

import threading
from contextlib import contextmanager
from urllib.parse import parse_qs, unquote, urlparse

from peewee import DatabaseProxy
from playhouse.pool import PooledMySQLDatabase, PooledPostgresqlDatabase, PooledSqliteDatabase

database = DatabaseProxy()

SQLITE_PRAGMAS = {
    "journal_mode": "wal",
    "synchronous": "normal",  # durable across process crashes in WAL mode
    "busy_timeout": 5000,  # only other processes (the CLI) can make us wait
    "foreign_keys": 1,
    "cache_size": -16000,
}

_state = {"writer_lock": None}


def make_database(url: str, pool_size: int = 8):
    """A pooled peewee database for ``sqlite:///path``, ``postgresql://…`` or ``mysql://…``."""
    parsed = urlparse(url)
    scheme = parsed.scheme.split("+")[0]
    if scheme == "sqlite":
        # sqlite:///kefu.db is relative to the working directory, sqlite:////abs/path absolute.
        path = unquote(parsed.path[1:])
        return PooledSqliteDatabase(
            path or ":memory:",
            pragmas=SQLITE_PRAGMAS,
            lock_type="IMMEDIATE",
            check_same_thread=False,
            max_connections=pool_size,
            stale_timeout=300,
            timeout=30,
        )
    options = {k: v[-1] for k, v in parse_qs(parsed.query).items()}
    common = {
        "host": parsed.hostname or "127.0.0.1",
        "user": unquote(parsed.username or ""),
        "password": unquote(parsed.password or ""),
        "max_connections": pool_size,
        "stale_timeout": 300,
        "timeout": 30,
    }
    name = parsed.path.lstrip("/")
    if scheme in ("postgres", "postgresql"):
        return PooledPostgresqlDatabase(name, port=parsed.port or 5432, **common, **options)
    if scheme in ("mysql", "mariadb"):
        return PooledMySQLDatabase(
            name, port=parsed.port or 3306, charset="utf8mb4", **common, **options
        )
    raise ValueError(f"Unsupported KEFU_DATABASE_URL scheme: {parsed.scheme!r}")


def init_app(app) -> None:
    """Bind the proxy to the configured database (once per process)."""
    db = make_database(app.config["DATABASE_URL"], app.config["DB_POOL_SIZE"])
    database.initialize(db)
    # Created here, after gunicorn's gevent worker patched threading, so it is a
    # greenlet lock in the server and a thread lock in plain unit tests.
    _state["writer_lock"] = threading.RLock() if is_sqlite() else None
    app.extensions["kefu.db"] = db


def is_sqlite() -> bool:
    return isinstance(database.obj, PooledSqliteDatabase)


@contextmanager
def _connection():
    """Use the caller's open connection, or borrow one from the pool for this block."""
    if not database.is_closed():
        yield
        return
    database.connect()
    try:
        yield
    finally:
        database.close()  # returns it to the pool


@contextmanager
def read():
    """A block of reads in autocommit mode (WAL readers never wait for the writer)."""
    with _connection():
        yield


@contextmanager
def write():
    """One write transaction; nested calls join the outer transaction."""
    lock = _state["writer_lock"]
    if lock is None:
        with _connection(), database.atomic():
            yield
        return
    with lock, _connection(), database.atomic():
        yield


def locked(query):
    """``SELECT … FOR UPDATE`` where the database has row locks; SQLite's writer lock
    already serialises every write transaction."""
    return query if is_sqlite() else query.for_update()
