"""001: users, tokens, agents, visitors, conversations, messages."""

import peewee as pw
from peewee_migrate import Migrator

from kefu.migrate import create_model


def migrate(migrator: Migrator, database: pw.Database, *, fake=False):
    @create_model(migrator)
    class User(pw.Model):
        id = pw.AutoField()
        uuid = pw.CharField(max_length=36, unique=True)
        username = pw.CharField(max_length=150, unique=True)
        nickname = pw.CharField(default="", max_length=150)
        avatar = pw.CharField(default="", max_length=500)
        external_id = pw.CharField(max_length=150, null=True, unique=True)
        password_hash = pw.CharField(max_length=255, null=True)
        is_active = pw.BooleanField(default=True)
        created_at = pw.DateTimeField()

        class Meta:
            table_name = "user"

    @create_model(migrator)
    class Agent(pw.Model):
        id = pw.AutoField()
        user = pw.ForeignKeyField(
            column_name="user_id",
            field="id",
            model=migrator.orm["user"],
            on_delete="CASCADE",
            unique=True,
        )
        max_concurrent = pw.IntegerField(default=5)
        current_concurrent = pw.IntegerField(default=0)
        accepting = pw.BooleanField(default=True)
        last_assigned_at = pw.DoubleField(null=True)

        class Meta:
            table_name = "agent"

    @create_model(migrator)
    class Visitor(pw.Model):
        id = pw.AutoField()
        key = pw.CharField(max_length=128, unique=True)
        created_at = pw.DateTimeField()

        class Meta:
            table_name = "visitor"

    @create_model(migrator)
    class Conversation(pw.Model):
        id = pw.AutoField()
        user = pw.ForeignKeyField(
            column_name="user_id",
            field="id",
            model=migrator.orm["user"],
            null=True,
            on_delete="CASCADE",
        )
        visitor = pw.ForeignKeyField(
            column_name="visitor_id",
            field="id",
            model=migrator.orm["visitor"],
            null=True,
            on_delete="CASCADE",
        )
        agent = pw.ForeignKeyField(
            column_name="kefu_id", field="id", model=migrator.orm["agent"], null=True
        )
        status = pw.SmallIntegerField(default=1)
        open_key = pw.CharField(max_length=200, null=True, unique=True)
        queued_at = pw.DoubleField(index=True, null=True)
        last_seq = pw.IntegerField(default=0)
        last_message_at = pw.DateTimeField(null=True)
        unread_count = pw.IntegerField(default=0)
        kefu_unread_count = pw.IntegerField(default=0)
        rating = pw.SmallIntegerField(null=True)
        ended_at = pw.DateTimeField(null=True)
        created_at = pw.DateTimeField()
        updated_at = pw.DateTimeField()

        class Meta:
            table_name = "conversation"

    @create_model(migrator)
    class Message(pw.Model):
        id = pw.AutoField()
        conversation = pw.ForeignKeyField(
            column_name="conversation_id",
            field="id",
            model=migrator.orm["conversation"],
            on_delete="CASCADE",
        )
        seq = pw.IntegerField()
        sender_type = pw.SmallIntegerField()
        sender_id = pw.IntegerField()
        content = pw.TextField(default="")
        message_type = pw.SmallIntegerField(default=1)
        file_url = pw.CharField(max_length=1000, null=True)
        is_read = pw.SmallIntegerField(default=0)
        read_at = pw.DateTimeField(null=True)
        sender_key = pw.CharField(max_length=40)
        op_id = pw.CharField(max_length=64, null=True)
        created_at = pw.DateTimeField()
        updated_at = pw.DateTimeField()

        class Meta:
            table_name = "message"
            indexes = [(("conversation", "seq"), True), (("sender_key", "op_id"), True)]

    @create_model(migrator)
    class Token(pw.Model):
        id = pw.AutoField()
        user = pw.ForeignKeyField(
            column_name="user_id", field="id", model=migrator.orm["user"], on_delete="CASCADE"
        )
        token_hash = pw.CharField(max_length=64, unique=True)
        created_at = pw.DateTimeField()

        class Meta:
            table_name = "token"


def rollback(migrator: Migrator, database: pw.Database, *, fake=False):
    migrator.remove_model("token")

    migrator.remove_model("message")

    migrator.remove_model("conversation")

    migrator.remove_model("visitor")

    migrator.remove_model("agent")

    migrator.remove_model("user")
