"""One notion of time: naive UTC datetimes in the database, two wire formats."""

import time
from datetime import datetime, timedelta

_EPOCH = datetime(1970, 1, 1)
_SECOND = timedelta(seconds=1)


def now() -> datetime:
    # The epoch plus the system clock: the same instant as
    # datetime.now(UTC).replace(tzinfo=None), whose replace() alone costs more than
    # this whole sum (every message is stamped with it).
    return _EPOCH + timedelta(microseconds=time.time_ns() // 1000)


# The datetimes wire() and stored_text() formatted lately, by id, with their texts: a
# message's reply and its pushes stamp the ``created_at`` that ``stored_text`` formatted
# already, but a group-commit batch stores all its messages before any reply goes out,
# so the last one alone would serve only one message of the batch. An entry keeps its
# datetime, so its id is not reused while it is in the table.
_wire_texts: dict[int, tuple[datetime, str]] = {}
_WIRE_TEXTS_MAX = 256  # more than a batch holds; emptied when full


def _remember(value: datetime, text: str) -> None:
    if len(_wire_texts) >= _WIRE_TEXTS_MAX:
        _wire_texts.clear()
    _wire_texts[id(value)] = (value, text)


def wire(value: datetime | None) -> str | None:
    """The guide's "2025-01-01 10:00:00" (UTC), or None. (isoformat is several times
    cheaper than strftime, and every message pushed is stamped with it.)"""
    if not value:
        return None
    known = _wire_texts.get(id(value))
    if known is not None and known[0] is value:  # immutable: the same object, the same text
        return known[1]
    text = value.isoformat(" ", "seconds")
    _remember(value, text)
    return text


def stored_text(value: datetime) -> str:
    """The text SQLite's datetime adapter would store for ``value`` (without its Python
    call per use). For a naive datetime its first 19 characters are ``wire(value)``,
    kept for the reply and pushes that follow."""
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
    return (value - _EPOCH) // _SECOND
