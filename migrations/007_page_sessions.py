"""007: page sessions kept on the server (the agent dashboard, the user chat).

The session cookie holds a random secret; this table holds its SHA-256, the person, the
role it signed in as, and when it expires. Signing out deletes the row, so a copy of the
cookie taken before is refused afterwards (it was a signed cookie alone until now).
"""

import peewee as pw
from peewee_migrate import Migrator

from kefu.migrate import create_model


def migrate(migrator: Migrator, database: pw.Database, *, fake=False):
    @create_model(migrator)
    class PageSession(pw.Model):
        id = pw.AutoField()
        user = pw.ForeignKeyField(
            column_name="user_id", field="id", model=migrator.orm["user"], on_delete="CASCADE"
        )
        role = pw.CharField(max_length=10)
        secret_hash = pw.CharField(max_length=64, unique=True)
        created_at = pw.DateTimeField()
        expires_at = pw.DateTimeField()

        class Meta:
            table_name = "page_session"
            legacy_table_names = False  # indexes named page_session_…, as kefu's model names them


def rollback(migrator: Migrator, database: pw.Database, *, fake=False):
    migrator.remove_model("page_session")
