"""002: users remember when their credentials last changed (password, disabling), so
sockets and sessions opened before that moment can be closed."""

import peewee as pw
from peewee_migrate import Migrator

from kefu.migrate import add_fields


def migrate(migrator: Migrator, database: pw.Database, *, fake=False):
    add_fields(migrator, "user", credentials_changed_at=pw.DateTimeField(null=True))


def rollback(migrator: Migrator, database: pw.Database, *, fake=False):
    migrator.remove_fields("user", "credentials_changed_at")
