"""Validation at the edge: one precise message per missing or mistyped field."""

import json
import math
from decimal import Decimal

from kefu.errors import (
    ID_MAX,
    Invalid,
    digits_as_int,
    has_lone_surrogate,
    refuse_nul,
    row_id,
)
from kefu.services.message_rules import OP_ID_MAX


class FrameError(Invalid):
    """The frame itself is unusable (not JSON, not an object, too large). ``op_id`` is
    the frame's own when it was read and can be echoed (a refusal echoes it)."""

    def __init__(self, message: str, op_id=None):
        super().__init__(message)
        self.op_id = op_id


def parse_frame(raw, max_bytes: int) -> dict:
    if isinstance(raw, bytes):
        if len(raw) > max_bytes:
            raise FrameError(f"Frame too large (max {max_bytes} bytes)")
        try:
            raw = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise FrameError("Frame is not valid UTF-8") from None
    elif len(raw) * 4 > max_bytes and _utf8_length_over(raw, max_bytes):  # most: no call
        raise FrameError(f"Frame too large (max {max_bytes} bytes)")
    try:
        frame = _loads(raw)
    except ValueError:
        raise FrameError("Invalid JSON") from None
    except RecursionError:
        raise FrameError("Frame is nested too deeply") from None
    if not isinstance(frame, dict):
        raise FrameError("Frame must be a JSON object")
    if "\\u" in raw and has_lone_surrogate(frame):
        # JSON may escape half a surrogate pair ("\ud800"): such a string is not Unicode
        # text, cannot be stored or sent back, and would break the reply that echoes it.
        op_id = echoable_op_id(frame.get("op_id"))
        echo = None if has_lone_surrogate(op_id) else op_id
        raise FrameError("Frame contains invalid Unicode (a lone surrogate)", echo)
    return frame


# The standard library's own scanner, which ``json.loads`` reaches through three Python
# calls and two regex matches for the whitespace around the value (every frame).
_scan_once = json.JSONDecoder().scan_once


def _loads(raw: str):
    """``json.loads(raw)``: the scanner straight on a frame with no whitespace around its
    value (what clients send); anything else (whitespace, a BOM, no value, extra data)
    goes to ``json.loads`` itself, so every frame parses, or fails, as it did."""
    try:
        value, end = _scan_once(raw, 0)
    except StopIteration:  # nothing a value starts with at 0: loads says what is wrong
        return json.loads(raw)
    return value if end == len(raw) else json.loads(raw)


def parse_counted(raw, max_bytes: int, live, conn) -> dict:
    """``parse_frame``; a frame that does not parse is counted against the socket's rate
    (``live.admit_frame``) before its error goes back, so a flood of bad frames is
    limited like any other. One that parses is counted by the caller, once it knows
    the op_id that a refusal must echo."""
    try:
        return parse_frame(raw, max_bytes)
    except FrameError:
        live.admit_frame(conn)
        raise


def _utf8_length_over(text: str, limit: int) -> bool:
    """Whether ``text`` takes more than ``limit`` bytes as UTF-8 (what went over the
    wire), encoding it only when its length cannot tell: a character takes 1 to 4."""
    if len(text) > limit:
        return True
    if len(text) * 4 <= limit:
        return False
    return len(text.encode("utf-8", "surrogatepass")) > limit


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


class Fields:
    """Typed reads from a frame's data object."""

    def __init__(self, data, name: str = "data"):
        if type(data) is not dict:  # what a frame holds passes with one test
            if data is None:
                data = {}
            elif not isinstance(data, dict):
                raise Invalid(f"{name} must be an object")
        self.data = data

    def id(self, name: str, required: bool = True):
        """A positive integer id; a string of digits is accepted (the guide sends kefu_id
        as "1")."""
        value = self.data.get(name)
        if type(value) is int and 0 < value <= ID_MAX:  # is_row_id: what clients send
            return value
        if value is None or value == "":
            if required:
                raise Invalid(f"{name} is required")
            return None
        number = row_id(value)
        if number is None:
            raise Invalid(f"{name} must be a positive integer")
        return number

    def integer(self, name: str, default=None, choices=None):
        value = self.data.get(name)
        if type(value) is int and (choices is None or value in choices):
            return value  # what clients send: no conversion, no check's call
        value = digits_as_int(value)
        if value is None:
            return default
        if not _is_int(value):
            raise Invalid(f"{name} must be an integer")
        if choices is not None and value not in choices:
            allowed = ", ".join(str(c) for c in choices)
            raise Invalid(f"{name} must be one of {allowed}")
        return value

    def text(self, name: str, required: bool = False, max_len: int | None = None):
        value = self.data.get(name)
        if value is None or (required and value == ""):
            if required:
                raise Invalid(f"{name} is required")
            return None
        if not isinstance(value, str):
            raise Invalid(f"{name} must be a string")
        if "\x00" in value:  # refuse_nul's test (see message_rules.check_body)
            refuse_nul(name, value)
        if max_len is not None and len(value) > max_len:
            raise Invalid(f"{name} is too long (max {max_len} characters)")
        return value

    def id_list(self, name: str, max_items: int = 1000) -> list[int]:
        value = self.data.get(name)
        if value is None:
            raise Invalid(f"{name} is required")
        if not isinstance(value, list):
            raise Invalid(f"{name} must be an array of integers")
        if len(value) > max_items:
            raise Invalid(f"{name} has too many items (max {max_items})")
        value = [digits_as_int(v) for v in value]
        if not all(_is_int(v) for v in value):
            raise Invalid(f"{name} must be an array of integers")
        return value


def is_op_id(value) -> bool:
    """A string or a number: the guide makes op_id optional and echoed as it is, and
    clients use counters, strings and ``Math.random()``. Not a boolean, an object, or a
    number that JSON cannot carry back (NaN, Infinity)."""
    if isinstance(value, float):
        return math.isfinite(value)
    return isinstance(value, str | int) and not isinstance(value, bool)


def echoable_op_id(value):
    """What a reply may echo of a frame's op_id, even one refused: None if not an op_id."""
    return value if is_op_id(value) else None


def op_key(op_id) -> str | None:
    """An op_id as a send stores it: a string as it is, an integer as its digits, any
    other number as JavaScript writes it (``String(n)``): one number is one key however
    it is spelled (7, 7.0 and 7e0 are "7", as is the string "7"). Stored as ``str()``, 7
    and 7.0 were two keys and a resend was stored twice. Integers stay exact: ids past
    2**53 (a snowflake's) are distinct numbers to the clients that send them."""
    if isinstance(op_id, float):
        return js_number_text(op_id)
    return None if op_id is None else str(op_id)


def js_number_text(value: float) -> str:
    """ECMAScript's Number::toString for a finite double: the shortest digits that
    read back as ``value`` (``repr`` finds them), laid out as JavaScript lays them."""
    if value == 0:
        return "0"
    _, digit_tuple, exponent = Decimal(repr(abs(value))).as_tuple()
    digits = "".join(map(str, digit_tuple))
    n = len(digits) + exponent  # abs(value) = 0.<digits> * 10**n
    digits = digits.rstrip("0")
    k = len(digits)
    if k <= n <= 21:
        text = digits + "0" * (n - k)
    elif 0 < n <= 21:
        text = digits[:n] + "." + digits[n:]
    elif -6 < n <= 0:
        text = "0." + "0" * -n + digits
    else:
        mantissa = digits if k == 1 else digits[0] + "." + digits[1:]
        text = f"{mantissa}e{'+' if n - 1 >= 0 else '-'}{abs(n - 1)}"
    return ("-" if value < 0 else "") + text


def op_id_of(frame: dict):
    """The op_id to echo and to deduplicate sends by: a string or number, 64 chars at most."""
    op_id = frame.get("op_id")
    if op_id is None:
        return None
    if type(op_id) is not str and not is_op_id(op_id):  # a string is one: no call
        raise Invalid("op_id must be a string or a number")
    if len(str(op_id)) > OP_ID_MAX:
        raise Invalid(f"op_id is too long (max {OP_ID_MAX} characters)")
    return op_id
