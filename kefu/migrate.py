"""Schema migrations (peewee-migrate files in ``migrations/``), applied once per start.

gunicorn's master runs ``python -m kefu.migrate`` before forking workers, so N workers
never race to migrate; ``flask --app app db upgrade`` does the same by hand. It runs in a
child process so the master never imports peewee: a module imported before gevent
patches ``threading`` keeps real thread-locals, and peewee's per-greenlet connection
state would silently become one connection shared by every greenlet of the worker.

Hosts (or a start and a ``flask kefu …`` command) can still run it at the same moment
on one database, so a run holds a lock for its whole length (``_run_lock``): the second
waits, then finds nothing pending.
"""

import fcntl
import logging
import sys
from contextlib import contextmanager, suppress
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit

import peewee as pw
from peewee_migrate import Router
from playhouse.migrate import make_index_name

from kefu.config import database_url
from kefu.db import make_database
from kefu.db_errors import error_text

MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"
log = logging.getLogger(__name__)

# PostgreSQL advisory lock key, beside routing's 0x6B656675 and pg_broker's 0x6B656676.
PG_LOCK = 0x6B656677
# MySQL's GET_LOCK needs a limit; another host's migrations may rebuild big tables.
MYSQL_LOCK_WAIT_SECONDS = 3600


def upgrade(url: str) -> list[str]:
    """Apply pending migrations to the database at ``url``; returns their names."""
    with opened(url) as database:
        return migrate(database)


@contextmanager
def opened(url: str):
    """The database at ``url``, connected, this run's lock held; closed after. One run
    at a time per database: without the lock two runs both saw 001 pending, and one
    failed on a table or column the other had just made (or recorded 001 twice)."""
    database = make_database(url, pool_size=1)
    try:
        if isinstance(database, pw.SqliteDatabase):
            # Locked before connecting: two processes turning a new file to WAL at once
            # (the connection's first PRAGMA) failed with "database is locked".
            with _sqlite_lock(database):
                database.connect()
                yield database
            return
        database.connect()
        lock = _postgres_lock if isinstance(database, pw.PostgresqlDatabase) else _mysql_lock
        with lock(database):
            yield database
    finally:
        # Back to the pool first: close_all skips a connection in use.
        with suppress(pw.PeeweeException):
            database.close()
        database.close_all()


def migrate(database: pw.Database) -> list[str]:
    return Router(database, migrate_dir=MIGRATIONS, logger=log).run()


@contextmanager
def _postgres_lock(database):
    # Session-level: it outlives each migration's own transaction.
    database.execute_sql("SELECT pg_advisory_lock(%s)", (PG_LOCK,))
    try:
        yield
    finally:
        # A broken connection frees the lock as it closes; don't hide the first error.
        with suppress(pw.PeeweeException):
            database.execute_sql("SELECT pg_advisory_unlock(%s)", (PG_LOCK,))


@contextmanager
def _mysql_lock(database):
    # GET_LOCK names are server-wide: this database's name keeps other databases apart.
    name = "LEFT(CONCAT('kefu_migrate.', DATABASE()), 64)"
    got = database.execute_sql(f"SELECT GET_LOCK({name}, %s)", (MYSQL_LOCK_WAIT_SECONDS,))
    if got.fetchone()[0] != 1:
        raise pw.OperationalError(
            f"another run of migrations held the lock for {MYSQL_LOCK_WAIT_SECONDS} s"
        )
    try:
        yield
    finally:
        with suppress(pw.PeeweeException):  # as for PostgreSQL's
            database.execute_sql(f"SELECT RELEASE_LOCK({name})")


@contextmanager
def _sqlite_lock(database):
    """A file lock beside the database. SQLite's own lock lasts one transaction, and
    each migration is one (a single transaction round them all would silently keep
    ``PRAGMA foreign_keys`` on during the migrator's table rebuilds, so dropping the old
    copy of a table would cascade-delete the rows that refer to it)."""
    path = database.database
    if path in ("", ":memory:"):  # private to this process
        yield
        return
    try:
        lock = open(f"{path}.migrate-lock", "a")  # noqa: SIM115 (held across the yield)
    except OSError as exc:
        # A folder kefu cannot write (or none): opening the database says what is
        # wrong, if anything; a read-only one with nothing pending still starts.
        log.info("migrations run without their lock: %s", exc)
        yield
        return
    with lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes or we die
        yield


# -- steps for migrations that can be rerun -------------------------------------------
# MySQL/MariaDB commit every DDL statement at once, so a run cut short (killed, the
# connection lost) leaves part of a migration done but not recorded, and the next run
# starts it again: each step checks whether it is already done. On SQLite and
# PostgreSQL a migration is one transaction and the checks find nothing done. The ORM
# snapshot (what later migrations see) changes as the migrator's own step would.


def create_model(migrator):
    """``@migrator.create_model`` that makes the table and each index only if missing
    (on MySQL peewee's "safe" create skips every index of a table that exists)."""

    def register(model):
        with migrator.fake():
            migrator.create_model(model)
        migrator.run(_create_table, model)
        return model

    return register


def _create_table(model) -> None:
    model._schema.create_table(safe=True)
    database, table = model._meta.database, model._meta.table_name
    present = _index_names(database, table)
    for index in model._meta.fields_to_index():
        if index._name not in present:
            database.execute(model._schema._create_index(index, safe=False))


def add_fields(migrator, table: str, **fields) -> None:
    """``migrator.add_fields`` for nullable columns without a default, each only if
    the table lacks it."""
    with migrator.fake():
        migrator.add_fields(table, **fields)
    for field in fields.values():
        migrator.run(_add_column, migrator, table, field)


def _add_column(migrator, table: str, field: pw.Field) -> None:
    database = migrator.__database__
    if field.column_name not in {c.name for c in database.get_columns(table)}:
        migrator.__migrator__.add_column(table, field.column_name, field).run()


def drop_index(migrator, table: str, *fields: str) -> None:
    """``migrator.drop_index``, a no-op if the index is gone already."""
    name = make_index_name(table, _columns(migrator, table, fields))
    with migrator.fake():
        migrator.drop_index(table, *fields)
    migrator.run(_drop_index, migrator, table, name)


def _drop_index(migrator, table: str, name: str) -> None:
    if name in _index_names(migrator.__database__, table):
        migrator.__migrator__.drop_index(table, name).run()


def add_index(migrator, table: str, *fields: str, unique: bool = False) -> None:
    """``migrator.add_index``, a no-op if the index exists already."""
    columns = _columns(migrator, table, fields)
    with migrator.fake():
        migrator.add_index(table, *fields, unique=unique)
    migrator.run(_add_index, migrator, table, columns, unique)


def _add_index(migrator, table: str, columns: list[str], unique: bool) -> None:
    if make_index_name(table, columns) not in _index_names(migrator.__database__, table):
        migrator.__migrator__.add_index(table, columns, unique=unique).run()


def _columns(migrator, table: str, fields) -> list[str]:
    """Column names of a table's fields (a foreign key ``conversation`` is
    ``conversation_id``), which name its indexes."""
    return [migrator.orm[table]._meta.fields[name].column_name for name in fields]


def _index_names(database, table: str) -> set[str]:
    return {index.name for index in database.get_indexes(table)}


# -- python -m kefu.migrate ------------------------------------------------------------


def shown(url: str) -> str:
    """``url`` with any password in it hidden, fit for a log."""
    parts = urlsplit(url)
    if parts.password is not None:
        hidden = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
        url = url.replace(parts.netloc, hidden, 1)
    if "pass" in parts.query.lower():  # options go to the driver: ?password=… too
        query = [(k, "***" if "pass" in k.lower() else v) for k, v in parse_qsl(parts.query)]
        url = url.replace(parts.query, urlencode(query, safe="*"), 1)
    return url


def main() -> int:
    """One line on stderr and status 1 if the database cannot be opened or migrated:
    gunicorn's master prints this process's stderr whole, and a page of chained
    tracebacks hid the one line that mattered."""
    logging.basicConfig(level=logging.WARNING)
    url = database_url()
    try:
        with opened(url) as database:
            try:
                applied = migrate(database)
            except (pw.PeeweeException, OSError) as exc:
                # peewee-migrate has logged the failed migration's traceback above.
                return _fail(f"migrations failed on {shown(url)}: {error_text(exc)}")
    # TypeError: a URL option (?name=value) the driver does not take.
    except (pw.PeeweeException, ValueError, TypeError, OSError) as exc:
        return _fail(f"cannot open KEFU_DATABASE_URL ({shown(url)}): {error_text(exc)}")
    print(", ".join(applied) or "none pending")
    return 0


def _fail(problem: str) -> int:
    print(f"kefu: {problem}", file=sys.stderr)
    return 1


if __name__ == "__main__":  # python -m kefu.migrate (what gunicorn's master runs)
    sys.exit(main())
