"""008: an assigned conversation keeps the queue entry it was taken from.

``queued_at`` is cleared when an agent takes the conversation (the queue's index holds
waiting conversations only); ``taken_entry`` keeps that value while the agent serves it,
so a socket that signs in afterwards knows that a requeue naming this entry, another
worker's news come late, is older than the hand-back it is shown
(kefu/protocols/queue_entries.py). Conversations assigned before this migration have
none: for them a socket knows only what it saw, as before.
"""

import peewee as pw
from peewee_migrate import Migrator

from kefu.migrate import add_fields


def migrate(migrator: Migrator, database: pw.Database, *, fake=False):
    add_fields(migrator, "conversation", taken_entry=pw.DoubleField(null=True))


def rollback(migrator: Migrator, database: pw.Database, *, fake=False):
    migrator.remove_fields("conversation", "taken_entry")
