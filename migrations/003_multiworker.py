"""003: what N workers share through the database when KEFU_BROKER=postgres.

broker_event holds published events (NOTIFY carries only the row id); worker_presence
is each worker's heartbeat; live_key counts a worker's live sockets per hub key (a
person, a visitor, ``a:<kefu_id>`` for an agent); agent_away remembers since when an
agent holding conversations has been offline everywhere; rate_window counts visitor
messages per minute across workers. The tables exist on every database (so one schema
serves all), but only the PostgreSQL broker uses them; they are reached by plain SQL in
kefu/realtime/pg_broker.py and kefu/realtime/presence_db.py, not through models.
"""

import peewee as pw
from peewee_migrate import Migrator

from kefu.migrate import create_model


def migrate(migrator: Migrator, database: pw.Database, *, fake=False):
    @create_model(migrator)
    class BrokerEvent(pw.Model):
        id = pw.BigAutoField()
        payload = pw.TextField()
        created_at = pw.DoubleField(index=True)

        class Meta:
            table_name = "broker_event"

    @create_model(migrator)
    class WorkerPresence(pw.Model):
        worker_id = pw.CharField(max_length=100, primary_key=True)
        expires_at = pw.DoubleField()

        class Meta:
            table_name = "worker_presence"

    @create_model(migrator)
    class LiveKey(pw.Model):
        id = pw.BigAutoField()
        worker_id = pw.CharField(max_length=100)
        key = pw.CharField(max_length=200, index=True)
        connections = pw.IntegerField(default=0)

        class Meta:
            table_name = "live_key"
            indexes = [(("worker_id", "key"), True)]

    @create_model(migrator)
    class AgentAway(pw.Model):
        kefu_id = pw.IntegerField(primary_key=True)
        since = pw.DoubleField()

        class Meta:
            table_name = "agent_away"

    @create_model(migrator)
    class RateWindow(pw.Model):
        id = pw.BigAutoField()
        key = pw.CharField(max_length=200)
        minute = pw.BigIntegerField(index=True)  # unix time // 60
        hits = pw.IntegerField(default=0)

        class Meta:
            table_name = "rate_window"
            indexes = [(("key", "minute"), True)]


def rollback(migrator: Migrator, database: pw.Database, *, fake=False):
    for table in ("rate_window", "agent_away", "live_key", "worker_presence", "broker_event"):
        migrator.remove_model(table)
