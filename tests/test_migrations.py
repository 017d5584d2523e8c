"""Migrations that change indexes: applied and rolled back on a database with rows,
on whichever database the suite runs against (SQLite, PostgreSQL, MySQL)."""

import pytest
from peewee import IntegrityError
from peewee_migrate import Router

from kefu.db import make_database
from kefu.migrate import MIGRATIONS
from tests.support import drop_database, fresh_database_url

BEFORE_005 = "004_drop_redundant_message_index"


@pytest.fixture
def database(tmp_path):
    url = fresh_database_url(tmp_path)
    database = make_database(url, pool_size=1)
    yield database
    database.close_all()
    drop_database(url)


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

    router.run()
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
