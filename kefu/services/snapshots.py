"""Loading conversations with their people, and freezing rows into event snapshots."""

from peewee import JOIN

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
        rows = cached_select("load", _load_query, conversation_id)
        conv = rows[0] if rows else None
    else:
        conv = with_people().where(Conversation.id == conversation_id).first()
    if conv is None:
        raise NotFound("Conversation not found")
    return conv


def _load_query(conversation_id):
    return with_people().where(Conversation.id == conversation_id).limit(1)


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
