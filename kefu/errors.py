"""Domain errors (a status and an exact message; each adapter renders them its own way),
and the checks of outside values that adapters and services share."""


class KefuError(Exception):
    status = 400

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class Invalid(KefuError):
    """The request is well-formed but a field is missing, of the wrong type or out of range."""

    status = 422


def row_id(value) -> int | None:
    """``value`` as a row id: a positive 64-bit int, or a string of ASCII digits naming
    one (the guide sends kefu_id as "1"); None for anything else. ``str.isdigit`` also
    takes "²", which ``int`` refuses, as it refuses more than 4,300 digits; and SQLite
    cannot bind an int past 64 bits."""
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) < 20:
        value = int(value)
    if isinstance(value, int) and not isinstance(value, bool) and 0 < value < 2**63:
        return value
    return None


def refuse_nul(name: str, value: str | None) -> None:
    """Invalid for text holding a NUL: PostgreSQL stores none (it refuses the whole
    statement), so text from outside is refused alike on every database."""
    if value is not None and "\x00" in value:
        raise Invalid(f"{name} must not contain NUL characters")


class Unauthorized(KefuError):
    status = 401


class Forbidden(KefuError):
    status = 403


class NotFound(KefuError):
    status = 404


class TooManyRequests(KefuError):
    """A rate limit or a connection cap was hit; waiting a moment helps."""

    status = 429


class Conflict(KefuError):
    """The request is valid but the state does not allow it (e.g. conversation ended)."""

    status = 409
