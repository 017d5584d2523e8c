"""Failures that repeat. A full disk or a lost database fails every write, and every WAL
checkpoint, alike while it lasts: their traceback (about 80 lines for a send) was logged
for each. Each cause now gets its traceback once, then one line per ``REPEAT_SECONDS``
that counts the failures in between, and a line when it works again."""

import logging
from time import monotonic

import gevent
from peewee import OperationalError

from kefu.db_errors import error_text

REPEAT_SECONDS = 10.0
_seen = {}  # (what, cause) -> [when its last line was written, failures since, flush due]


def cause_of(exc: BaseException) -> str:
    """One line naming the driver's error that peewee wraps, as an operator reads it."""
    driver = getattr(exc, "orig", None) or exc
    return f"{type(driver).__module__}.{type(driver).__name__}: {error_text(driver)}"


def log_failure(log: logging.Logger, what: str, exc: Exception) -> None:
    """Log ``what`` failing with ``exc``: a bug gets its traceback every time; the
    database's own failure (peewee's ``OperationalError``) is a repeat (``repeated``)."""
    if isinstance(exc, OperationalError):
        repeated(log, what, exc)
    else:
        log.error(what, exc_info=exc)


def repeated(log: logging.Logger, what: str, exc: Exception) -> None:
    """The traceback the first time ``what`` fails for this cause, then a counting line
    at most every ``REPEAT_SECONDS``."""
    cause = cause_of(exc)
    key, now = (what, cause), monotonic()
    seen = _seen.get(key)
    if seen is None:
        if len(_seen) >= 100:  # causes name few texts; never let them pile up
            _seen.clear()
        _seen[key] = [now, 0, False]
        log.error("%s: %s", what, cause, exc_info=exc)
        return
    seen[1] += 1
    if not seen[2]:  # one line for all the failures until it is due
        seen[2] = True
        gevent.spawn_later(max(0.0, seen[0] + REPEAT_SECONDS - now), _flush, log, key, seen)


def _flush(log: logging.Logger, key: tuple, seen: list) -> None:
    if _seen.get(key) is not seen or not seen[1]:  # recovered (and said so) meanwhile
        return
    now = monotonic()
    log.error("%s %d more times in %.0f s: %s", key[0], seen[1], now - seen[0], key[1])
    seen[:] = [now, 0, False]


def recovered(log: logging.Logger, what: str) -> None:
    """``what`` works again: one line if it was failing, and its failures are forgotten."""
    for key in [key for key in _seen if key[0] == what]:
        seen = _seen.pop(key)
        log.warning(
            "%s works again (%d more failures since the last line: %s)", what, seen[1], key[1]
        )
