"""One notion of time: naive UTC datetimes in the database, two wire formats."""

import time
from datetime import datetime, timedelta

_EPOCH = datetime(1970, 1, 1)
_SECOND = timedelta(seconds=1)

# The second ``now()`` stamped last: (its Unix number, its datetime's packed fields down
# to the second, its wire text). Every message is stamped with ``now()``, and its stored
# text, its reply's and its push's texts and its push's Unix time all follow from that
# second and the microsecond: building the datetime from fields and the stored text from
# the second's costs less than half of a timedelta sum, an ``isoformat`` and a timedelta
# division each time. One tuple, replaced whole.
_this_second = {"now": (None, b"", "")}


def now() -> datetime:
    """The same instant as datetime.now(UTC).replace(tzinfo=None), whose replace() alone
    costs more than this (see ``_this_second``)."""
    return now_stored()[0]


def now_stored() -> tuple[datetime, str]:
    """``now()`` and its ``stored_text``, what every message stored on SQLite takes. The
    text follows from the second's and the microsecond, at hand here, where
    ``stored_text`` would look them up again (two calls cost about 1,900 instructions a
    message more). ``now()`` is this, its text unused: a message's path makes no call
    more for it (as a shared helper of the two, it made one)."""
    second, micro = divmod(time.time_ns() // 1000, 1_000_000)
    known = _this_second["now"]
    if known[0] != second:
        known = _new_second(second)
    value = datetime(known[1] + micro.to_bytes(3, "big"))  # see _packed_second
    # _remember's lines and _with_micro's, without their calls (every message)
    if len(_wire_texts) >= _WIRE_TEXTS_MAX:
        _wire_texts.clear()
    _wire_texts[id(value)] = (value, known[2], second)
    return value, f"{known[2]}.{str(1_000_000 + micro)[1:]}" if micro else known[2]


def _with_micro(second_text: str, micro: int) -> str:
    """A stored text from its second's and the microsecond, as ``isoformat(" ")``
    writes it: the microseconds in six digits, none when they are 0."""
    return f"{second_text}.{str(1_000_000 + micro)[1:]}" if micro else second_text


def _new_second(second: int) -> tuple:
    base = _EPOCH + timedelta(seconds=second)
    known = _this_second["now"] = (second, _packed_second(base), base.isoformat(" "))
    return known


def _packed_second(base: datetime) -> bytes:
    """``base``'s fields down to the second as ``datetime`` packs them (its pickled
    form: the year in two bytes, then a byte each for month, day, hour, minute and
    second, then the microsecond in three, big-endian). ``datetime(packed)`` builds a
    naive datetime from the ten bytes without parsing seven arguments: about 900
    instructions less per message."""
    year = base.year
    return bytes((year >> 8, year & 255, base.month, base.day, base.hour, base.minute, base.second))


# The datetimes now(), wire() and stored_text() made or formatted lately, by id, with
# their wire texts and (for now()'s) their Unix seconds: a message's reply and its pushes
# stamp the ``created_at`` that ``now()`` made, but a group-commit batch stores all its
# messages before any reply goes out, so the last one alone would serve only one message
# of the batch. An entry keeps its datetime, so its id is not reused while it is in the
# table.
_wire_texts: dict[int, tuple[datetime, str, int | None]] = {}
_WIRE_TEXTS_MAX = 256  # more than a batch holds; emptied when full


def _remember(value: datetime, text: str, unix_seconds: int | None = None) -> None:
    if len(_wire_texts) >= _WIRE_TEXTS_MAX:
        _wire_texts.clear()
    _wire_texts[id(value)] = (value, text, unix_seconds)


def _known(value: datetime):
    """The table's entry for ``value`` itself, or None."""
    known = _wire_texts.get(id(value))
    return known if known is not None and known[0] is value else None


def wire(value: datetime | None) -> str | None:
    """The guide's "2025-01-01 10:00:00" (UTC), or None. (isoformat is several times
    cheaper than strftime, and every message pushed is stamped with it.)"""
    if not value:
        return None
    # ``_known``'s lines, not its call: every message's reply comes here.
    known = _wire_texts.get(id(value))
    if known is not None and known[0] is value:  # immutable: the same object, the same text
        return known[1]
    text = value.isoformat(" ", "seconds")
    _remember(value, text)
    return text


def wire_and_unix(value: datetime) -> tuple[str | None, int]:
    """``(wire(value), unix(value))``, what every message push carries: for a datetime
    ``now()`` made, one look in the table instead of two calls that each look."""
    known = _wire_texts.get(id(value))
    if known is not None and known[0] is value and known[2] is not None:
        return known[1], known[2]
    return wire(value), unix(value)


def stored_text(value: datetime) -> str:
    """The text SQLite's datetime adapter would store for ``value`` (without its Python
    call per use): ``isoformat(" ")``. For a naive datetime its first 19 characters are
    ``wire(value)``, and the microseconds follow unless they are 0."""
    known = _known(value)
    if known is not None and value.tzinfo is None:
        return _with_micro(known[1], value.microsecond)
    text = value.isoformat(" ")
    if value.tzinfo is None:
        _remember(value, text[:19])
    return text


def at(unix_seconds: float) -> datetime:
    """The stored (naive UTC) datetime of a Unix time, as ``now()`` makes them."""
    return _EPOCH + timedelta(seconds=unix_seconds)


def unix(value: datetime | None = None) -> int:
    """Unix seconds of a stored (naive UTC) datetime, or of now."""
    if value is None:
        return int(time.time())
    known = _known(value)
    if known is not None and known[2] is not None:  # made by now(): its second
        return known[2]
    return (value - _EPOCH) // _SECOND
