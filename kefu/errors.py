"""Domain errors: a status and an exact message; each adapter renders them its own way."""


class KefuError(Exception):
    status = 400

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class Invalid(KefuError):
    """The request is well-formed but a field is missing, of the wrong type or out of range."""

    status = 422


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
