"""005: the unique index of idempotent sends becomes (op_id, sender_key).

The same pairs are unique either way, and the lookup of a resend names both columns.
With the sender first, each sender's new entry went to a B-tree page of its own, so a
commit of 32 messages from 28 senders dirtied 28 pages of this index, each written to
the WAL again at every commit (about 45% of the log's frames). Clients number or
timestamp their op_ids (the bench's counters, kefu's widget), so with op_id first a
commit's new entries lie side by side: 28 -> 4 pages per commit, 61 -> 37 frames in all.
Random op_ids land on random pages either way.
"""

import peewee as pw
from peewee_migrate import Migrator

from kefu.migrate import add_index, drop_index


def migrate(migrator: Migrator, database: pw.Database, *, fake=False):
    drop_index(migrator, "message", "sender_key", "op_id")
    add_index(migrator, "message", "op_id", "sender_key", unique=True)


def rollback(migrator: Migrator, database: pw.Database, *, fake=False):
    migrator.drop_index("message", "op_id", "sender_key")
    migrator.add_index("message", "sender_key", "op_id", unique=True)
