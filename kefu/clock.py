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


def wire(value: datetime | None) -> str | None:
    """The guide's "2025-01-01 10:00:00" (UTC), or None. (isoformat is several times
    cheaper than strftime, and every message pushed is stamped with it.)"""
    return value.isoformat(" ", "seconds") if value else None


def unix(value: datetime | None = None) -> int:
    """Unix seconds of a stored (naive UTC) datetime, or of now."""
    if value is None:
        return int(time.time())
    return (value - _EPOCH) // _SECOND
