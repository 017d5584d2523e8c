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


# The datetime wire() last wrote and its text: a message's reply and its pushes all
# stamp the same ``created_at``, which ``stored_text`` has already formatted.
_last_wire = {"pair": (None, None)}


def wire(value: datetime | None) -> str | None:
    """The guide's "2025-01-01 10:00:00" (UTC), or None. (isoformat is several times
    cheaper than strftime, and every message pushed is stamped with it.)"""
    if not value:
        return None
    seen, text = _last_wire["pair"]
    if seen is not value:  # datetimes are immutable: the same object, the same text
        text = value.isoformat(" ", "seconds")
        _last_wire["pair"] = (value, text)
    return text


def stored_text(value: datetime) -> str:
    """The text SQLite's datetime adapter would store for ``value`` (without its Python
    call per use). For a naive datetime its first 19 characters are ``wire(value)``,
    kept for the reply and pushes that follow."""
    text = value.isoformat(" ")
    if value.tzinfo is None:
        _last_wire["pair"] = (value, text[:19])
    return text


def at(unix_seconds: float) -> datetime:
    """The stored (naive UTC) datetime of a Unix time, as ``now()`` makes them."""
    return _EPOCH + timedelta(seconds=unix_seconds)


def unix(value: datetime | None = None) -> int:
    """Unix seconds of a stored (naive UTC) datetime, or of now."""
    if value is None:
        return int(time.time())
    return (value - _EPOCH) // _SECOND
