"""004: drop the single-column index on message.conversation_id.

The unique index on (conversation_id, seq) starts with the same column, so it already
serves every lookup by conversation and the foreign key (MySQL accepts it for the
constraint). The second index only cost writes: every stored message dirtied one more
B-tree page, which SQLite writes to the WAL at each commit.
"""

import peewee as pw
from peewee_migrate import Migrator

from kefu.migrate import drop_index


def migrate(migrator: Migrator, database: pw.Database, *, fake=False):
    drop_index(migrator, "message", "conversation")


def rollback(migrator: Migrator, database: pw.Database, *, fake=False):
    migrator.add_index("message", "conversation")
