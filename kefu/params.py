"""Numbers from query strings and forms, one rule for the API and the pages: ASCII
digits (with a minus sign), one precise message per problem. ``int()`` also takes
" 34 ", "+34", "3_4" and Arabic-Indic digits, and ``type=int`` turned garbage into a
default: a send with ``message_type=abc`` was stored as text."""

import re

from kefu.errors import ID_MAX, Invalid

_NUMBER = re.compile(r"-?[0-9]+")
# A paging bound ("before" a sequence number) past 64 bits still means what it says
# (older than every message); the query clamps it (errors.seq_bound).
BOUND_MAX = ID_MAX + 1


def number(
    source, name: str, default: int | None = None, high: int | None = ID_MAX, low: int | None = None
) -> int:
    """``source[name]`` (``request.args`` or ``request.form``) as an int; ``default``
    when absent or empty, and required when there is no default. ``high=None``: no
    limit (a number past 64 bits is then ``ID_MAX + 1``)."""
    raw = source.get(name)
    if raw is None or raw == "":
        if default is None:
            raise Invalid(f"{name} is required")
        return default
    if not _NUMBER.fullmatch(raw):
        raise Invalid(f"{name} must be an integer")
    if len(raw.lstrip("-")) > 19:  # past 64 bits either way (and int() of many is slow)
        value = -ID_MAX - 1 if raw.startswith("-") else ID_MAX + 1
    else:
        value = int(raw)
    if high is not None and value > high:
        raise Invalid(f"{name} is too large (max {high})")
    if low is not None and value < low:
        raise Invalid(f"{name} must be {low} or more")
    return value


def optional_number(source, name: str, **limits) -> int | None:
    """``number``, or None when ``source`` has no (or an empty) ``name``."""
    raw = source.get(name)
    return None if raw is None or raw == "" else number(source, name, **limits)
