"""Loading conversations with their people, and freezing rows into event snapshots.

What storing a message reads of its conversation is in ``targets``."""

from datetime import datetime

from peewee import (
    JOIN,
    AutoField,
    CharField,
    DateTimeField,
    ForeignKeyField,
    IntegerField,
    TextField,
)

from kefu.errors import NotFound
from kefu.models import Agent, Conversation, Message, User, Visitor
from kefu.realtime.events import ConversationRef, MessageView, Person
from kefu.sqlcache import cached_select

AgentUser = User.alias()


def with_people(query=None):
    """Conversations joined to customer, visitor, agent and the agent's account: one query."""
    query = query if query is not None else Conversation.select()
    return (
        query.select_extend(User, Visitor, Agent, AgentUser)
        .join_from(Conversation, User, JOIN.LEFT_OUTER)
        .join_from(Conversation, Visitor, JOIN.LEFT_OUTER)
        .join_from(Conversation, Agent, JOIN.LEFT_OUTER)
        .join_from(Agent, AgentUser, JOIN.LEFT_OUTER, on=(Agent.user == AgentUser.id))
    )


def load(conversation_id: int) -> Conversation:
    if type(conversation_id) is int:
        rows = cached_select("load", _load_query, conversation_id, decode=_decode_with_people)
        conv = rows[0] if rows else None
    else:
        conv = with_people().where(Conversation.id == conversation_id).first()
    if conv is None:
        raise NotFound("Conversation not found")
    return conv


def _load_query(conversation_id):
    return with_people().where(Conversation.id == conversation_id).limit(1)


# The columns of ``with_people()`` in select order: each model's fields as declared.
_JOINED = (Conversation, User, Visitor, Agent, User)
# Fields whose database value is already the Python value on every backend.
_AS_STORED = (AutoField, IntegerField, CharField, TextField, ForeignKeyField)


def _readers(model) -> list:
    return [(f.name, _reader(f)) for f in model._meta.sorted_fields]


def _reader(field):
    if type(field) in _AS_STORED:
        return None
    if type(field) is DateTimeField:  # SQLite's text: fromisoformat is C, strptime is not
        return lambda value: _datetime(value, field)
    return field.python_value


def _datetime(value, field):
    if type(value) is str:
        try:
            return datetime.fromisoformat(value)
        except ValueError:
            pass
    return field.python_value(value)


_READERS = [(model, _readers(model)) for model in _JOINED]
_COLUMNS = [f.column_name for model in _JOINED for f in model._meta.sorted_fields]


def _decode_with_people(cursor):
    """A decoder for ``with_people()`` rows, or None if the columns are not as expected.

    peewee's generic join decoder spends about 40 µs per conversation; this one builds
    the same objects (the conversation with ``.user``, ``.visitor`` and ``.agent.user``
    set, or None where absent) from the row's slices in a fraction of that."""
    if [c[0] for c in cursor.description] != _COLUMNS:
        return None
    return _conversation_from_row


def _conversation_from_row(row) -> Conversation:
    conv, user, visitor, agent, agent_user = _instances(row)
    for owner, name, related in (
        (conv, "user", user),
        (conv, "visitor", visitor),
        (conv, "agent", agent),
        (agent, "user", agent_user),
    ):
        if owner is not None and owner.__data__.get(name) is not None:
            owner.__rel__[name] = related
    return conv


def _instances(row) -> list:
    made, start = [], 0
    for model, readers in _READERS:
        values = row[start : start + len(readers)]
        start += len(readers)
        if values[0] is None:  # the primary key: no joined row
            made.append(None)
            continue
        instance = model(__no_default__=True)
        instance.__data__ = {
            name: value if read is None or value is None else read(value)
            for (name, read), value in zip(readers, values, strict=True)
        }
        made.append(instance)
    return made


def person(user: User | None) -> Person | None:
    if user is None or user.id is None:
        return None
    return Person(user.id, user.uuid, user.username, user.nickname, user.avatar)


def conversation_ref(conv: Conversation) -> ConversationRef:
    """Freeze a conversation loaded by ``with_people`` (or with the same relations set)."""
    agent = conv.agent if conv.agent_id else None
    return ConversationRef(
        id=conv.id,
        status=conv.status,
        customer=person(conv.user) if conv.user_id else None,
        visitor_id=conv.visitor.key if conv.visitor_id else None,
        kefu_id=conv.agent_id,
        agent=person(agent.user) if agent else None,
        unread_count=conv.unread_count,
        kefu_unread_count=conv.kefu_unread_count,
    )


def message_view(msg: Message) -> MessageView:
    return MessageView(
        id=msg.id,
        seq=msg.seq,
        conversation_id=msg.conversation_id,
        sender_type=msg.sender_type,
        sender_id=msg.sender_id,
        content=msg.content,
        message_type=msg.message_type,
        file_url=msg.file_url,
        is_read=msg.is_read,
        read_at=msg.read_at,
        created_at=msg.created_at,
        updated_at=msg.updated_at,
    )
