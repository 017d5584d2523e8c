"""One notion of time: naive UTC datetimes in the database, two wire formats."""

import time
from datetime import UTC, datetime

WIRE_FORMAT = "%Y-%m-%d %H:%M:%S"


def now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def wire(value: datetime | None) -> str | None:
    """The guide's "2025-01-01 10:00:00" (UTC), or None."""
    return value.strftime(WIRE_FORMAT) if value else None


def unix(value: datetime | None = None) -> int:
    """Unix seconds of a stored UTC datetime, or of now."""
    if value is None:
        return int(time.time())
    return int(value.replace(tzinfo=UTC).timestamp())
