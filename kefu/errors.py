"""Domain errors (a status and an exact message; each adapter renders them its own way),
and the checks of outside values that adapters and services share."""

import json


class KefuError(Exception):
    status = 400

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class Invalid(KefuError):
    """The request is well-formed but a field is missing, of the wrong type or out of range."""

    status = 422


# The largest integer a BIGINT holds: a larger one would overflow every database driver.
ID_MAX = 2**63 - 1


def is_row_id(value) -> bool:
    """An int that could be a row's id: positive and within a BIGINT."""
    return type(value) is int and 0 < value <= ID_MAX


def digits_as_int(value):
    """A string of ASCII digits as its number, anything else as it is: ids already take
    ``"1"`` (the guide sends kefu_id so), and a client that does it for one number does
    it for all of them (``sender_type: "2"``, ``message_ids: ["5"]``). ``str.isdigit``
    also takes "²", which ``int`` refuses, as it refuses more than 4,300 digits; 20
    digits are past 64 bits already."""
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) < 20:
        return int(value)
    return value


def row_id(value) -> int | None:
    """``value`` as a row id: a positive 64-bit int, or a string of ASCII digits naming
    one; None for anything else (SQLite cannot bind an int past 64 bits)."""
    value = digits_as_int(value)
    return value if is_row_id(value) else None


def seq_bound(value: int) -> int:
    """A paging bound from outside ("before" or "after" a sequence number) as one the
    database can bind. Sequence numbers run from 1 to ``ID_MAX``, so moving a bound
    below or above them into that range changes no answer."""
    return min(max(value, 0), ID_MAX)


def refuse_nul(name: str, value: str | None) -> None:
    """Invalid for text holding a NUL: PostgreSQL stores none (it refuses the whole
    statement), so text from outside is refused alike on every database."""
    if value is not None and "\x00" in value:
        raise Invalid(f"{name} must not contain NUL characters")


def has_lone_surrogate(value) -> bool:
    """Whether a JSON value holds half a surrogate pair (JSON may escape one, "\\ud800"):
    such a string is no Unicode text; no database stores it and no reply can carry it."""
    try:
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except (UnicodeEncodeError, RecursionError):
        return True
    return False


class TooLarge(KefuError):
    status = 413


class Unauthorized(KefuError):
    status = 401


class Forbidden(KefuError):
    status = 403


class NotFound(KefuError):
    status = 404


class TooManyRequests(KefuError):
    """A rate limit or a connection cap was hit; waiting a moment helps."""

    status = 429


class Busy(KefuError):
    """No database connection came free in time: the request did nothing, and the
    same request a moment later can succeed (HTTP 503 with Retry-After)."""

    status = 503


class Conflict(KefuError):
    """The request is valid but the state does not allow it (e.g. conversation ended)."""

    status = 409


class SentAfterEnd(Conflict):
    """A message sent into a conversation that has ended (the event of the end is
    ``events.ConversationEnded``)."""

    def __init__(self):
        super().__init__("Conversation has ended")
