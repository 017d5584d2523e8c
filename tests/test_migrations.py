"""Migrations: applied and rolled back on a database with rows, finished after a run
cut short, on whichever database the suite runs against (SQLite, PostgreSQL, MySQL);
MySQL's DATETIME(6) upgrade, runs at the same moment and ``python -m kefu.migrate``'s
errors on databases of their own (marked ``ignores_test_database``)."""

import json
import os
import subprocess
import sys
import time

import pytest
from peewee import DateTimeField, DoubleField, IntegrityError
from peewee_migrate import Router
from playhouse.migrate import SchemaMigrator
from playhouse.pool import PooledMySQLDatabase

from kefu.db import make_database
from kefu.migrate import MIGRATIONS, upgrade
from tests.support import MYSQL_ADMIN, ROOT, drop_database, own_database, run

BEFORE_005 = "004_drop_redundant_message_index"
ALL = sorted(path.stem for path in MIGRATIONS.glob("[0-9][0-9][0-9]_*.py"))


def unique_message_indexes(database) -> set:
    return {tuple(i.columns) for i in database.get_indexes("message") if i.unique}


def insert_message(database, op_id: str, sender_key: str = "u:1") -> None:
    database.execute_sql(
        "INSERT INTO message (conversation_id, seq, sender_type, sender_id, content,"
        " message_type, is_read, sender_key, op_id, created_at, updated_at)"
        f" VALUES (1, (SELECT COUNT(*) + 1 FROM message AS m), 1, 1, 'hi', 1, 0,"
        f" '{sender_key}', '{op_id}', '2026-01-01 00:00:00', '2026-01-01 00:00:00')"
    )


def test_005_puts_op_id_first_and_keeps_sends_idempotent(database):
    router = Router(database, migrate_dir=MIGRATIONS)
    router.run(BEFORE_005)
    database.execute_sql(
        "INSERT INTO conversation (status, last_seq, unread_count, kefu_unread_count,"
        " created_at, updated_at) VALUES (1, 0, 0, 0, '2026-01-01 00:00:00',"
        " '2026-01-01 00:00:00')"
    )
    insert_message(database, "op-1")
    assert ("sender_key", "op_id") in unique_message_indexes(database)

    router.run("005_op_id_first")
    indexes = unique_message_indexes(database)
    assert ("op_id", "sender_key") in indexes
    assert ("sender_key", "op_id") not in indexes
    insert_message(database, "op-1", sender_key="u:2")  # another sender's op-1 is new
    with pytest.raises(IntegrityError), database.atomic():
        insert_message(database, "op-1")  # the same sender's op-1 (stored before 005)
    assert database.execute_sql("SELECT COUNT(*) FROM message").fetchone()[0] == 2

    router.rollback()
    assert ("sender_key", "op_id") in unique_message_indexes(database)
    assert ("op_id", "sender_key") not in unique_message_indexes(database)


def test_008_keeps_the_conversations_and_rolls_back(database):
    """A column added to (and, rolled back, dropped from) a table with rows: SQLite
    drops a column by copying the table, which must keep its rows and their messages."""
    router = Router(database, migrate_dir=MIGRATIONS)
    router.run("007_page_sessions")
    database.execute_sql(
        "INSERT INTO conversation (status, last_seq, unread_count, kefu_unread_count,"
        " queued_at, created_at, updated_at) VALUES (1, 0, 0, 0, 12.5,"
        " '2026-01-01 00:00:00', '2026-01-01 00:00:00')"
    )
    insert_message(database, "op-1")

    router.run("008_taken_entry")
    database.execute_sql("UPDATE conversation SET taken_entry = queued_at, queued_at = NULL")
    rows = database.execute_sql("SELECT queued_at, taken_entry FROM conversation")
    assert list(rows) == [(None, 12.5)]

    router.rollback()
    assert "taken_entry" not in {c.name for c in database.get_columns("conversation")}
    assert database.execute_sql("SELECT COUNT(*) FROM conversation").fetchone()[0] == 1
    assert database.execute_sql("SELECT COUNT(*) FROM message").fetchone()[0] == 1


def own_mysql_database(needs: str) -> str:
    return own_database("mysql", needs)


def names_done(database) -> list[str]:
    return [r[0] for r in database.execute_sql("SELECT name FROM migratehistory ORDER BY id")]


def history(url: str) -> list[str]:
    database = make_database(url, pool_size=1)
    try:
        return names_done(database)
    finally:
        database.close()
        database.close_all()


# What a migration's first step had done when its run was cut short (MySQL commits each
# DDL statement at once, so the next start found it done but the migration not recorded).
CUT_SHORT = {
    "002_credentials_changed_at": lambda m: m.add_column(
        "user", "credentials_changed_at", DateTimeField(null=True)
    ),
    "004_drop_redundant_message_index": lambda m: m.drop_index(
        "message", "message_conversation_id"
    ),
    "005_op_id_first": lambda m: m.drop_index("message", "message_sender_key_op_id"),
    "008_taken_entry": lambda m: m.add_column(
        "conversation", "taken_entry", DoubleField(null=True)
    ),
}


@pytest.mark.parametrize("cut", CUT_SHORT)
def test_a_migration_cut_short_is_finished_by_the_next_run(database, cut):
    Router(database, migrate_dir=MIGRATIONS).run(ALL[ALL.index(cut) - 1])
    CUT_SHORT[cut](SchemaMigrator.from_database(database)).run()

    assert Router(database, migrate_dir=MIGRATIONS).run() == ALL[ALL.index(cut) :]
    assert "credentials_changed_at" in {c.name for c in database.get_columns("user")}
    assert "taken_entry" in {c.name for c in database.get_columns("conversation")}
    indexes = {tuple(i.columns): i.unique for i in database.get_indexes("message")}
    assert ("conversation_id",) not in indexes
    assert indexes[("op_id", "sender_key")] is True
    assert ("sender_key", "op_id") not in indexes
    assert names_done(database) == ALL


@pytest.mark.ignores_test_database  # a MySQL database of its own, whatever the suite's
def test_a_table_made_without_its_indexes_gets_them_on_mysql():
    """On MySQL peewee's "safe" CREATE TABLE skips every index of a table that exists:
    003 cut short after making broker_event left it without its index for good."""
    url = own_mysql_database("MySQL's CREATE TABLE is the one that skips indexes")
    try:
        database = make_database(url, pool_size=1)
        Router(database, migrate_dir=MIGRATIONS).run("003_multiworker")
        database.execute_sql("DELETE FROM migratehistory WHERE name = '003_multiworker'")
        database.execute_sql("DROP INDEX brokerevent_created_at ON broker_event")
        database.execute_sql("DROP TABLE rate_window")

        assert Router(database, migrate_dir=MIGRATIONS).run() == ALL[2:]
        assert ("created_at",) in {tuple(i.columns) for i in database.get_indexes("broker_event")}
        rate_window = {tuple(i.columns): i.unique for i in database.get_indexes("rate_window")}
        assert rate_window[("key", "minute")] is True
        database.close()
        database.close_all()
        assert history(url) == ALL
    finally:
        drop_database(url)


def datetime_columns(url: str) -> dict:
    """(table, column) -> (type, nullable, default, extra) of every DATETIME column."""
    database = make_database(url, pool_size=1)
    try:
        rows = database.execute_sql(
            "SELECT table_name, column_name, column_type, is_nullable, column_default, extra"
            " FROM information_schema.columns WHERE table_schema = DATABASE()"
            " AND data_type = 'datetime' AND table_name <> 'migratehistory'"
        )
        return {(r[0], r[1]): (r[2].lower(), r[3], r[4], r[5].lower()) for r in rows}
    finally:
        database.close()
        database.close_all()


@pytest.mark.ignores_test_database  # a MySQL database of its own, whatever the suite's
def test_006_gives_an_old_mysql_database_microseconds():
    """A database made before e7da7b5 had second-precision DATETIME columns: a password
    changed in the sign-in's second did not count as after it."""
    url = own_mysql_database("DATETIME(6) is MySQL's")
    try:
        # The old mapping: peewee's plain DATETIME.
        name = url.rsplit("/", 1)[-1]
        old = PooledMySQLDatabase(name, **MYSQL_ADMIN, charset="utf8mb4", max_connections=1)
        Router(old, migrate_dir=MIGRATIONS).run("005_op_id_first")
        old.execute_sql(
            "ALTER TABLE visitor MODIFY created_at DATETIME NOT NULL DEFAULT '2000-01-01 00:00:00'"
        )
        old.execute_sql(
            "ALTER TABLE conversation MODIFY updated_at DATETIME NOT NULL"
            " DEFAULT CURRENT_TIMESTAMP ON UPDATE CURRENT_TIMESTAMP"
        )
        old.close_all()
        before = datetime_columns(url)
        assert {kind for kind, *_ in before.values()} == {"datetime"}

        assert upgrade(url) == ALL[ALL.index("006_mysql_datetime_microseconds") :]
        everything = datetime_columns(url)
        assert {kind for kind, *_ in everything.values()} == {"datetime(6)"}
        after = {column: v for column, v in everything.items() if column in before}
        assert after.keys() == before.keys()  # the tables of later migrations aside
        assert {k: v[1] for k, v in after.items()} == {k: v[1] for k, v in before.items()}
        assert "2000-01-01 00:00:00" in after["visitor", "created_at"][2]
        assert "current_timestamp" in after["conversation", "updated_at"][2].lower()
        assert "on update current_timestamp" in after["conversation", "updated_at"][3]
        assert upgrade(url) == []
    finally:
        drop_database(url)


def racing_database(kind: str, tmp_path) -> str:
    if kind == "sqlite":
        return f"sqlite:///{tmp_path}/kefu.db"
    return own_database(kind, f"two runs at once on {kind}")


RACER = """
import json, sys, time
from kefu.migrate import upgrade
time.sleep(max(0, float(sys.argv[2]) - time.time()))
print(json.dumps(upgrade(sys.argv[1])))
"""


@pytest.mark.ignores_test_database  # a database of its own, whatever the suite's
@pytest.mark.parametrize("kind", ["sqlite", "postgresql", "mysql"])
def test_two_hosts_starting_at_once_migrate_once(kind, tmp_path):
    """Without a lock both saw 001 pending: one failed on what the other had just made
    (duplicate key or column), or 001 was recorded twice."""
    url = racing_database(kind, tmp_path)
    try:
        racer = tmp_path / "racer.py"
        racer.write_text(RACER)
        start = str(time.time() + 3)  # both have imported kefu by then
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        runs = [
            subprocess.Popen(
                [sys.executable, str(racer), url, start],
                cwd=ROOT,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(2)
        ]
        outputs = [run.communicate(timeout=120) for run in runs]
        assert [run.returncode for run in runs] == [0, 0], [err for _, err in outputs]
        applied = sorted(json.loads(out.splitlines()[-1]) for out, _ in outputs)
        assert applied == [[], ALL]  # the second waited, then found nothing pending
        assert history(url) == ALL
    finally:
        drop_database(url)


@pytest.mark.ignores_test_database  # no database server: each URL fails to open
@pytest.mark.parametrize(
    "url, shown, why",
    [
        (
            "postgresql://kefu:s3cret@127.0.0.1:1/kefu",
            "postgresql://kefu:***@127.0.0.1:1/kefu",
            "Connection refused",
        ),
        ("mysql://kefu:s3cret@127.0.0.1:1/kefu", "mysql://kefu:***@127.0.0.1:1/kefu", "refused"),
        ("sqlite:////nonexistent-kefu-dir/kefu.db", None, "unable to open database file"),
        ("oracle://db.internal/kefu", None, "Unsupported KEFU_DATABASE_URL scheme"),
    ],
)
def test_a_database_that_cannot_be_opened_is_one_line(url, shown, why):
    """gunicorn's master prints this child's stderr whole: it was 18 to 179 lines."""
    env = {**os.environ, "KEFU_DATABASE_URL": url}
    done = run([sys.executable, "-m", "kefu.migrate"], env)
    assert done.returncode == 1
    assert done.stdout == ""
    [line] = done.stderr.splitlines()
    assert line.startswith(f"kefu: cannot open KEFU_DATABASE_URL ({shown or url}): ")
    assert why in line
    assert "s3cret" not in line
