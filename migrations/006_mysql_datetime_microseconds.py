"""006: on MySQL/MariaDB, every DATETIME column of kefu's tables keeps microseconds.

Tables made since e7da7b5 are created as DATETIME(6) (kefu/db.py); a database made
before kept plain DATETIME, which drops the fraction of a second, so "credentials changed
after this socket signed in" failed within the same second and "newest first" tied.
Each column keeps its NULL/NOT NULL, default and the rest of its definition, as the
server itself prints it. A column already DATETIME(6) is left alone, so a run cut short
(one ALTER TABLE per table, each atomic) is finished by the next. Nothing to do on
SQLite (text, any precision) or PostgreSQL (TIMESTAMP keeps microseconds).

MySQL copies a table to change a column's type: on a big ``message`` table this takes
a while, and the table cannot be written meanwhile (docs/deployment.md).
"""

import re

import peewee as pw
from peewee_migrate import Migrator

SECOND_PRECISION = (
    "SELECT column_name FROM information_schema.columns WHERE table_schema = DATABASE()"
    " AND table_name = %s AND data_type = 'datetime' AND datetime_precision = 0"
)
# A column's line in SHOW CREATE TABLE: "  `name` datetime NOT NULL DEFAULT …,"
COLUMN_LINE = re.compile(r"^\s*(`(?:[^`]|``)+`) (.*?),?$")


def migrate(migrator: Migrator, database: pw.Database, *, fake=False):
    tables = [model._meta.table_name for model in migrator.orm]
    migrator.run(_microseconds, database, tables)


def rollback(migrator: Migrator, database: pw.Database, *, fake=False):
    """Nothing: narrowing the columns again would only lose the fractions."""


def _microseconds(database: pw.Database, tables: list[str]) -> None:
    if not isinstance(database, pw.MySQLDatabase):
        return
    for table in tables:
        columns = [row[0] for row in database.execute_sql(SECOND_PRECISION, (table,))]
        if columns:
            definitions = _definitions(database, table)
            changes = ", ".join(f"MODIFY {_widened(*definitions[c])}" for c in columns)
            database.execute_sql(f"ALTER TABLE `{table}` {changes}")


def _definitions(database: pw.Database, table: str) -> dict[str, tuple[str, str]]:
    """Each column's quoted name and definition as the server prints it."""
    create = database.execute_sql(f"SHOW CREATE TABLE `{table}`").fetchone()[1]
    found = {}
    for line in create.splitlines():
        match = COLUMN_LINE.match(line)
        if match:
            found[match.group(1)[1:-1].replace("``", "`")] = match.groups()
    return found


def _widened(quoted_name: str, definition: str) -> str:
    """``datetime`` -> ``datetime(6)``; a CURRENT_TIMESTAMP default or ON UPDATE must
    then have the same precision, or MySQL refuses it."""
    definition = re.sub(r"^datetime\b", "datetime(6)", definition, flags=re.IGNORECASE)
    definition = re.sub(
        r"current_timestamp(\(\))?", "current_timestamp(6)", definition, flags=re.IGNORECASE
    )
    return f"{quoted_name} {definition}"
