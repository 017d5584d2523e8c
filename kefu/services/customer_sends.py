"""Messages sent without naming a conversation: a user's from /chat goes into the open
conversation, or into one opened for it; a resend of a user's or an agent's (the
waiter protocol's sends name a person) is answered with the message its op_id names,
wherever that went."""

from kefu import db, groupcommit
from kefu.principal import Principal
from kefu.services import conversations, messages
from kefu.services.message_rules import check_send
from kefu.services.snapshots import conversation_ref, load


def send_opening(who: Principal, content, message_type, file_url, op_id):
    """Store the message, opening the user's conversation if none is open, in one
    transaction: a send refused opens nothing. A resend (its op_id stored with this body)
    is answered with the stored message wherever it went, also into a conversation ended
    since, and opens nothing; an op_id stored with another body is refused. Opened apart,
    a refused op_id left a new conversation queued for an agent, and a resend after the
    agent ended the chat opened one and was then refused.

    Returns (MessageView, events)."""
    body = check_send(content, message_type, file_url, op_id)
    return groupcommit.run(_send_opening_locked, conversations.customer(who), *body)


def resent(who: Principal, content, message_type, file_url, op_id):
    """(message, its conversation's ref) for the stored message this send repeats (its
    op_id stored with this body), wherever it went, also into a conversation ended
    since; None if the op_id names nothing. An op_id stored with another body is
    refused (OpIdReused). For a send that names no conversation and found none open, or
    its op_id stored in an earlier one."""
    body = check_send(content, message_type, file_url, op_id)
    with db.read():
        first = _repeated(who, *body)
        return first and (first, conversation_ref(load(first.conversation_id)))


def _repeated(who, content, message_type, file_url, op_id):
    return messages.repeated(who.sender[2], op_id, content, message_type, file_url)


def _send_opening_locked(who, content, message_type, file_url, op_id):
    first = _repeated(who, content, message_type, file_url, op_id)
    if first is not None:
        return first, []
    body = (content, message_type, file_url, op_id)
    return messages.again_if_ended(_send_into_open, who, *body)


def _send_into_open(who, content, message_type, file_url, op_id):
    conv, opened = conversations.open_for_user_locked(who.user_id)
    view, sent, _ = messages.send_locked(who, conv.id, content, message_type, file_url, op_id)
    return view, opened + sent
