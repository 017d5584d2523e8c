"""The database: built from KEFU_DATABASE_URL, scoped per service call, never per socket.

Services use ``read()`` and ``write()``, the only way to a pooled connection (a query
outside them fails: ``autoconnect`` is off). A pooled connection is taken for the
duration of one call and given back, so ten thousand idle sockets hold no database
connection at all. Three background tasks keep one connection each of their own,
outside the pool: the presence heartbeat (``realtime.presence_db``) and the broker's
listener (``realtime.pg_broker``) on PostgreSQL, and the WAL checkpointer
(``kefu.checkpoint``) on SQLite; migrations (``kefu.migrate``) open their own database.

SQLite does not yield to gevent while it waits for a lock, so a greenlet stuck in
SQLite's busy timeout would freeze every socket of the worker. Writes are therefore
serialised cooperatively in-process (a gevent-aware lock once gevent has patched
``threading``) and begin with ``BEGIN IMMEDIATE`` so a transaction never has to upgrade
its lock half-way. PostgreSQL and MySQL need neither: they use row locks (``locked``).
"""

from contextlib import contextmanager
from urllib.parse import parse_qs, unquote, urlparse

from peewee import DatabaseProxy, __exception_wrapper__
from playhouse.pool import (
    MaxConnectionsExceeded,
    PooledPostgresqlDatabase,
    PooledSqliteDatabase,
)

from kefu.db_errors import error_text
from kefu.errors import Busy
from kefu.mysql_driver import PooledMySQL
from kefu.offload import off_hub
from kefu.writerlock import WriterLock

database = DatabaseProxy()
# The database ``database`` stands for, kept in step by the proxy's own callback. Hot
# paths read ``db.configured``: each read of ``database.obj`` takes the slower lookup
# of a class with a ``__getattr__`` (peewee's proxy), about ten times a message. Every
# other attribute of the proxy is found by its ``__getattr__`` only after the ordinary
# lookup failed with an AttributeError, made and dropped each time (about 5,000
# instructions): ``read()``, ``write()`` and the group commit's batches use
# ``configured`` itself.
configured = None
# What kind it is, kept with it: every message's path asks twice or three times, and a
# call of is_sqlite() costs more than reading the answer.
configured_sqlite = configured_postgres = False


@database.attach_callback
def _follow(obj) -> None:
    global configured, configured_sqlite, configured_postgres
    configured = obj
    configured_sqlite = isinstance(obj, PooledSqliteDatabase)
    configured_postgres = isinstance(obj, PooledPostgresqlDatabase)


SQLITE_PRAGMAS = {
    "journal_mode": "wal",
    "synchronous": "normal",  # durable across process crashes in WAL mode
    "busy_timeout": 5000,  # only other processes (the CLI) can make us wait
    "foreign_keys": 1,
    "cache_size": -16000,
}

_state = {"writer_lock": None}
LOCK_TYPE = "IMMEDIATE"  # of SQLite's BEGIN: a transaction never upgrades its lock
BEGIN = f"BEGIN {LOCK_TYPE}"


def make_database(
    url: str, pool_size: int = 8, own_checkpoints: bool = False, pool_wait: float = 30
):
    """A pooled peewee database for ``sqlite:///path``, ``postgresql://…`` or ``mysql://…``.
    ``own_checkpoints``: SQLite leaves WAL checkpoints to ``kefu.checkpoint``.
    ``pool_wait``: seconds a call waits for a free connection before ``Busy``."""
    parsed = urlparse(url)
    scheme = parsed.scheme.split("+")[0]
    if scheme == "sqlite":
        # sqlite:///kefu.db is relative to the working directory, sqlite:////abs/path absolute.
        path = unquote(parsed.path[1:])
        pragmas = {**SQLITE_PRAGMAS, "wal_autocheckpoint": 0} if own_checkpoints else SQLITE_PRAGMAS
        return PooledSqliteDatabase(
            path or ":memory:",
            pragmas=pragmas,
            lock_type=LOCK_TYPE,
            check_same_thread=False,
            max_connections=pool_size,
            stale_timeout=300,
            timeout=pool_wait,
        )
    options = {k: v[-1] for k, v in parse_qs(parsed.query).items()}
    common = {
        "host": parsed.hostname or "127.0.0.1",
        "user": unquote(parsed.username or ""),
        "password": unquote(parsed.password or ""),
        "max_connections": pool_size,
        "stale_timeout": 300,
        "timeout": pool_wait,
    }
    name = parsed.path.lstrip("/")
    if scheme in ("postgres", "postgresql"):
        return PooledPostgresqlDatabase(name, port=parsed.port or 5432, **common, **options)
    if scheme in ("mysql", "mariadb"):
        # READ COMMITTED, as on PostgreSQL: a locking read and the plain reads after it in
        # one transaction see the same committed rows.
        options.setdefault("init_command", "SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED")
        # DATETIME(6): plain DATETIME drops the microseconds, and "changed after you
        # signed in" or "newest first" must not depend on which second things fell in.
        return PooledMySQL(
            name,
            port=parsed.port or 3306,
            charset="utf8mb4",
            field_types={"DATETIME": "DATETIME(6)"},
            **common,
            **options,
        )
    raise ValueError(f"Unsupported KEFU_DATABASE_URL scheme: {parsed.scheme!r}")


def init_app(app) -> None:
    """Bind the proxy to the configured database (once per process)."""
    url = app.config["DATABASE_URL"]
    own_checkpoints = gevent_patched() and _sqlite_file(url)
    db = make_database(
        url, app.config["DB_POOL_SIZE"], own_checkpoints, app.config["DB_POOL_WAIT_SECONDS"]
    )
    # A query outside ``read()`` and ``write()`` fails instead of quietly taking a pooled
    # connection: under gevent that connection belongs to the greenlet, nothing returns
    # it, and eight of them used up the pool (a lazy ``agent.user`` on the visitor page).
    db.autoconnect = False
    _check_greenlet_local(db)
    if isinstance(db, PooledPostgresqlDatabase):
        _cooperate_with_gevent()
    database.initialize(db)
    # Created here, after gunicorn's gevent worker patched threading, so it is a
    # greenlet lock in the server and a thread lock in plain unit tests.
    _state["writer_lock"] = WriterLock() if is_sqlite() else None
    if own_checkpoints:
        from kefu.checkpoint import Checkpointer

        rewind_pages = app.config["SQLITE_WAL_REWIND_PAGES"]
        checkpointer = Checkpointer(db.database, _state["writer_lock"], rewind_pages=rewind_pages)
        app.extensions["kefu.checkpoint"] = checkpointer.start()
    app.extensions["kefu.db"] = db


def writer_lock():
    """The in-process lock every SQLite write transaction holds (None elsewhere)."""
    return _state["writer_lock"]


def gevent_patched() -> bool:
    """True in the server's worker (gevent has patched ``threading``)."""
    from gevent import monkey

    return monkey.is_module_patched("threading")


def _sqlite_file(url: str) -> bool:
    parsed = urlparse(url)
    path = unquote(parsed.path[1:])
    return parsed.scheme.split("+")[0] == "sqlite" and path not in ("", ":memory:")


def _check_greenlet_local(db) -> None:
    """Under gevent each greenlet must have its own connection state. That holds only
    if peewee was imported after gevent patched ``threading``; fail loudly otherwise."""
    if gevent_patched():
        import gevent.local

        if not isinstance(db._state, gevent.local.local):
            raise RuntimeError(
                "peewee was imported before gevent patched threading; "
                "its connections would be shared between greenlets"
            )


def _cooperate_with_gevent() -> None:
    """psycopg2 is C and blocks the whole worker unless told to wait through gevent.
    (PyMySQL is pure Python on patched sockets and cooperates by itself.)"""
    from gevent import monkey

    if monkey.is_module_patched("socket"):
        from psycogreen.gevent import patch_psycopg

        patch_psycopg()


def is_sqlite() -> bool:
    return configured_sqlite


def unreachable() -> str | None:
    """Why a round trip to the database fails now, or None."""
    try:
        with read():
            database.execute_sql("SELECT 1")
    except Busy as exc:
        return exc.message
    except Exception as exc:  # the driver's own: connection refused, disk I/O, …
        return error_text(exc)
    return None


def is_postgres() -> bool:
    return configured_postgres


@contextmanager
def _connection():
    """Use the caller's open connection, or borrow one from the pool for this block."""
    database = configured  # the database itself, not the proxy (see ``configured``)
    if not database.is_closed():
        yield
        return
    try:
        database.connect()
    except MaxConnectionsExceeded:
        # Every pooled connection stayed busy for the pool's whole wait: say so, so that
        # the client retries, instead of a 500 that looks like a bug.
        raise Busy("Server busy, try again shortly") from None
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
    database = configured  # the database itself, not the proxy (see ``configured``)
    if lock is None:
        with _connection(), database.atomic():
            yield
        return
    with lock, _connection(), database.atomic():
        yield


@contextmanager
def batch_write():
    """``write()`` for the group commit's batches (SQLite, gevent), yielding the
    connection; the caller holds it (``read()``) and is in no transaction. The COMMIT
    runs in a native thread of its own: SQLite releases the GIL for the whole COMMIT,
    whose log writes wait for the disk when pages must be read back first or the device
    is busy (126-339 ms seen on this kind of machine), and on the hub's thread every
    socket waited that long. The caller waits for it with the writer lock held.

    peewee's state is read three times here, not the ten times its own calls read it
    (``begin()``, ``connection()``, ``push_transaction()``…): each read is a lookup in
    gevent's greenlet-local storage, about 1,400 instructions. ``_state`` is peewee's
    own (pinned in requirements.txt): every group-commit test goes through here."""
    database = configured  # the database itself, not the proxy (see ``configured``)
    with _state["writer_lock"]:
        state = database._state
        transactions = state.transactions  # this connection's, while it stays open
        if state.closed or transactions:
            raise RuntimeError("a batch needs an open connection and no transaction")
        connection = state.conn
        with __exception_wrapper__:
            connection.execute(BEGIN)  # as atomic() would
        transactions.append(database.transaction())  # nested writes make savepoints
        try:
            yield connection
        except BaseException:
            transactions.pop()
            if connection.in_transaction:  # see below
                database.rollback()
            raise
        transactions.pop()
        try:
            # The connection itself: peewee's state is per greenlet, and the thread has
            # none. Its errors become peewee's, as from atomic().
            with __exception_wrapper__:
                off_hub(connection.commit, own_thread="sqlite-commit")
        except BaseException:
            # A full disk (or an I/O error) has SQLite roll back by itself: a ROLLBACK
            # then failed with "no transaction is active", which hid the error that
            # mattered.
            if connection.in_transaction:
                database.rollback()
            raise


def locked(query, skip_locked: bool = False):
    """``SELECT … FOR UPDATE`` where the database has row locks; SQLite's writer lock
    already serialises every write transaction. ``skip_locked`` lets concurrent workers
    take the next free row (the queue head another transaction is assigning) instead of
    waiting for it and then finding it gone."""
    if is_sqlite():
        return query
    return query.for_update(skip_locked=skip_locked)
