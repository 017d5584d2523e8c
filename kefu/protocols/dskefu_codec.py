"""The ds/kefu wire shapes: REST objects, /ws responses, and events rendered as pushes.

Field names, order and texts follow ../shared/spec/ds-kefu-user-integration.zh.md. In
pushes an agent appears as its ``kefu_id`` (spec README); every push about a
conversation carries ``conversation_id``.
"""

from kefu import clock
from kefu.models import SENDER_USER
from kefu.protocols import compact_json
from kefu.realtime.events import (
    ConversationAssigned,
    ConversationEnded,
    ConversationRef,
    MessageCreated,
)


def conversation_json(conv) -> dict:
    return {
        "id": conv.id,
        "kefu_id": conv.agent_id,
        "user_id": conv.user_id,
        "status": conv.status,
        "last_message_at": clock.wire(conv.last_message_at),
        "unread_count": conv.unread_count,
        "kefu_unread_count": conv.kefu_unread_count,
        "created_at": clock.wire(conv.created_at),
        "updated_at": clock.wire(conv.updated_at),
    }


def message_json(msg) -> dict:
    return {
        "id": msg.id,
        "conversation_id": msg.conversation_id,
        "sender_id": msg.sender_id,
        "sender_type": msg.sender_type,
        "content": msg.content,
        "message_type": msg.message_type,
        "file_url": msg.file_url,
        "is_read": msg.is_read,
        "read_at": clock.wire(msg.read_at),
        "created_at": clock.wire(msg.created_at),
        "updated_at": clock.wire(msg.updated_at),
    }


def ok(message: str, data, op_id) -> str:
    return compact_json({"success": True, "message": message, "data": data, "op_id": op_id})


def fail(message: str, op_id) -> str:
    return compact_json({"success": False, "message": message, "op_id": op_id})


def _is_party(conn, conv: ConversationRef) -> bool:
    """Pushes about a conversation go only to its customer's and its agent's sockets."""
    if conv.visitor_id is not None and conn.visitor_id == conv.visitor_id:
        return True
    who = conn.principal
    if who is None:
        return False
    if conv.customer is not None and who.user_id == conv.customer.user_id:
        return True
    return conv.agent is not None and who.user_id == conv.agent.user_id


def _to_assignee(conn, conv: ConversationRef) -> bool:
    """A visitor chose its agent; the guide gives visitors only message and end pushes."""
    if not _is_party(conn, conv):
        return False
    return conv.visitor_id is None or conn.visitor_id is None


def _message_push(event: MessageCreated) -> dict:
    conv, msg = event.conversation, event.message
    created_at, stamp = clock.wire_and_unix(msg.created_at)
    if conv.visitor_id is not None:
        return {
            "type": "push_message",
            "action": "kefu_visitor_message",
            "visitor_id": conv.visitor_id,
            "kefu_id": str(conv.kefu_id),
            "message_id": msg.id,
            "content": msg.text,  # visitors get text only: an agent's image is its link
            "sender_type": msg.sender_type,
            "created_at": created_at,
            "timestamp": stamp,
            "conversation_id": conv.id,
        }
    from_user = msg.sender_type == SENDER_USER
    return {
        "type": "push_message",
        "action": "kefu_message",
        "conversation_id": conv.id,
        "message_id": msg.id,
        "sender_id": msg.sender_id,
        "sender_type": msg.sender_type,
        "from_uid": msg.sender_id,
        "to_uid": conv.kefu_id if from_user else conv.customer.user_id,
        "content": msg.content,
        "message_type": msg.message_type,
        "file_url": msg.file_url,
        "created_at": created_at,
        "timestamp": stamp,
    }


def _end_push(event: ConversationEnded) -> dict:
    conv = event.conversation
    if conv.visitor_id is not None:
        return {
            "type": "push_message",
            "action": "kefu_visitor_conversation_end",
            "visitor_id": conv.visitor_id,
            "kefu_id": str(conv.kefu_id),
            "sender_type": event.operator_type,
            "timestamp": clock.unix(),
            "conversation_id": conv.id,
        }
    recipients = [conv.customer.user_id]
    if conv.kefu_id is not None:
        recipients.append(conv.kefu_id)
    return {
        "type": "push_message",
        "action": "kefu_message_end",
        "conversation_id": conv.id,
        "operator_id": event.operator_id,
        "operator_type": event.operator_type,
        "from_uid": event.operator_id,
        "to_uid": recipients,
        "timestamp": clock.unix(),
    }


def assigned_push(conv: ConversationRef) -> str:
    """``kefu_conversation_assigned`` for ``conv``, as a frame."""
    return compact_json(_assigned_push(conv))


def _assigned_push(conv: ConversationRef) -> dict:
    push = {
        "type": "push_message",
        "action": "kefu_conversation_assigned",
        "conversation_id": conv.id,
        "kefu_id": conv.kefu_id,
        "user_id": conv.customer.user_id if conv.customer else None,
        "timestamp": clock.unix(),
    }
    if conv.visitor_id is not None:
        push["visitor_id"] = conv.visitor_id
    return push


class DsKefuCodec:
    """Renders domain events as ds/kefu pushes for one connection."""

    def render(self, event, conn, origin) -> tuple:
        """The frames of ``event`` for ``conn``: a tuple, not a generator (one frame at
        most, and the hub renders every event for every socket it reaches)."""
        if isinstance(event, MessageCreated):
            # The sending socket already has its response; every other socket of both
            # people gets the push (multi-device, and the sender's other tabs stay in step).
            if origin != conn.id and _is_party(conn, event.conversation):
                return (compact_json(_message_push(event)),)
        elif isinstance(event, ConversationEnded):
            if _is_party(conn, event.conversation):
                return (compact_json(_end_push(event)),)
        elif isinstance(event, ConversationAssigned) and _to_assignee(conn, event.conversation):
            return (assigned_push(event.conversation),)
        return ()
