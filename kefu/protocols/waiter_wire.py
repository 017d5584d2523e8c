"""The waiter protocol's wire shapes: frames, people as frames name them (a visitor as
``visitor:<visitor_id>``), and a stored message as a frame's payload. waiter_codec
renders domain events with them; the handlers build their replies with them."""

from dataclasses import dataclass

from kefu import clock
from kefu.models import IMAGE, SENDER_USER
from kefu.protocols import compact_json

# User uuids are uuid4 strings (hex digits and dashes), so none starts with this, while a
# bare visitor_id could be anything a visitor chooses, another user's uuid included.
VISITOR_PREFIX = "visitor:"


@dataclass(frozen=True)
class VisitorPeer:
    """A visitor where a frame names a person: ``from`` / ``to`` and profiles."""

    visitor_id: str

    @property
    def uuid(self) -> str:
        return VISITOR_PREFIX + self.visitor_id

    def profile(self) -> dict:
        # The address is both its id and its uuid: get_history's user_id takes either.
        address, name = self.uuid, self.visitor_id
        return {
            "id": address,
            "uuid": address,
            "username": name,
            "nickname": name,
            "avatar": "",
            "visitor_id": name,
        }


def visitor_id_of(address) -> str | None:
    """The visitor_id a waiter's address names, or None (a user's uuid or id)."""
    if isinstance(address, str) and address.startswith(VISITOR_PREFIX):
        return address[len(VISITOR_PREFIX) :] or None
    return None


def customer_of(conv):
    """A conversation's customer as frames name it: the user, or the visitor."""
    return conv.customer if conv.customer is not None else VisitorPeer(conv.visitor_id)


def frame(type_: str, payload=None, op_id=None, sender=None, to=None) -> str:
    """One outgoing frame; ``sender`` and ``to`` are people (anything with ``uuid``)."""
    body = {
        "op_id": op_id,
        "from": sender.uuid if sender else None,
        "to": to.uuid if to else None,
        "type": type_,
        "payload": payload,
    }
    return compact_json(body)


def error(message: str, op_id=None, to=None) -> str:
    return frame("error", {"message": message}, op_id, None, to)


def message_type_name(msg) -> str:
    """Images are ``message_image``; text and ds/kefu file messages (no waiter type of
    their own) are ``message_text``, a file carrying its ``file_url``."""
    return "message_image" if msg.message_type == IMAGE else "message_text"


def message_payload(msg, conversation_id: int) -> dict:
    if msg.message_type == IMAGE:
        payload = {"image": msg.file_url}
        if msg.content:  # a caption (ds/kefu and the pages send one): an extra field
            payload["text"] = msg.content
    else:
        payload = {"text": msg.text}
        if msg.file_url:
            payload["file_url"] = msg.file_url
    payload.update(
        message_id=msg.id,
        conversation_id=conversation_id,
        created_at=clock.wire(msg.created_at),
    )
    return payload


def as_seen(msg, conv, own: bool, me, other) -> str:
    """A message as one side's socket shows it: ``<type>_success`` if that side wrote it
    (elsewhere: another tab, the dashboard), else ``<type>`` from the other side."""
    name, payload = message_type_name(msg), message_payload(msg, conv.id)
    if own:
        return frame(f"{name}_success", payload, None, me, other)
    return frame(name, payload, None, other, me)


def to_waiter(msg, conv) -> str:
    """A message as a waiter socket shows it (its customer's, or its own side's)."""
    return as_seen(msg, conv, msg.sender_type != SENDER_USER, conv.agent, customer_of(conv))
