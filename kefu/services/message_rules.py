"""What a message may be: the guide's rules for a body, its file URL and its op_id.

Every way in (ds/kefu, waiter, the pages) checks a message here before it is stored.
"""

import re
from urllib.parse import urlsplit

from kefu.errors import Conflict, Invalid, refuse_nul
from kefu.models import FILE, IMAGE, TEXT

LIMITS = {"content_chars": 5000, "page_size_max": 100}
MESSAGE_TYPES = frozenset((TEXT, IMAGE, FILE))  # one hashed look, not a tuple built per send
FILE_URL_MAX = 1000
OP_ID_MAX = 64  # the column's length
# The one kind of local path a file URL may name: what POST /api/kefu/upload hands out.
# A browser loads a message's file with the viewer's cookies, so any other path could
# act for the agent (an image of /chat?token=… signed the agent in as the customer).
UPLOAD_PATH = re.compile(r"/uploads/[A-Za-z0-9_-]{1,64}\.[a-z0-9]{1,8}")


def configure(content_chars: int, page_size_max: int) -> None:
    LIMITS.update(content_chars=content_chars, page_size_max=page_size_max)


def is_upload_path(url: str) -> bool:
    return UPLOAD_PATH.fullmatch(url) is not None


# What no URL a browser would load as given holds: whitespace, control characters, and
# backslashes (which browsers read as slashes: "https:\\evil" is a host).
_NOT_IN_URLS = re.compile(r"[\s\\\x00-\x1f\x7f]")


def is_file_url(url) -> bool:
    """An http(s) URL with a host (a client may upload elsewhere; the scheme in any
    case), or one of this server's uploads; never protocol-relative (``//evil.example``),
    ``javascript:``, ``data:`` or another local path. What is stored is what is shown."""
    if not isinstance(url, str) or not url or _NOT_IN_URLS.search(url) or url.startswith("//"):
        return False
    if url.startswith("/"):
        return is_upload_path(url)
    try:
        parts = urlsplit(url)
    except ValueError:  # "http://[::1": a broken IPv6 host
        return False
    return parts.scheme.lower() in ("http", "https") and bool(parts.netloc)


def check_file_url(url: str, field: str = "file_url") -> None:
    if len(url) > FILE_URL_MAX:
        raise Invalid(f"{field} is too long (max {FILE_URL_MAX} characters)")
    if not is_file_url(url):
        raise Invalid(f"{field} must be an http(s) URL or an upload's path (/uploads/<name>)")


def check_body(
    content, message_type, file_url, names=("content", "file_url")
) -> tuple[str, int, str | None]:
    """The guide's rules: text needs content; image and file need a file_url. ``names``
    are what the protocol calls the two fields, for its errors (the waiter's payloads
    say ``text`` and ``image``)."""
    if message_type not in MESSAGE_TYPES:
        raise Invalid("message_type must be 1 (text), 2 (image) or 3 (file)")
    content_name, file_url_name = names
    content = content or ""
    # refuse_nul's tests written out, and it called only to refuse: every message comes
    # through here (and idempotency_key, and Fields.text), and a call costs more.
    if "\x00" in content:  # the pages' forms reach here without Fields.text
        refuse_nul(content_name, content)
    if file_url is not None and "\x00" in file_url:
        refuse_nul(file_url_name, file_url)
    if len(content) > LIMITS["content_chars"]:
        raise Invalid(f"{content_name} is too long (max {LIMITS['content_chars']} characters)")
    if message_type == TEXT:
        if not content.strip():
            raise Invalid(f"{content_name} is required")
    elif not file_url:
        raise Invalid(f"{file_url_name} is required for image and file messages")
    if file_url is not None:
        check_file_url(file_url, file_url_name)
    return content, message_type, file_url or None


def idempotency_key(op_id: str | None) -> str | None:
    """The op_id a send is stored under. An empty one is no key: a client that sends ""
    to mean "none" would otherwise have every later message answered with its first,
    and nothing stored. Checked here because the pages' forms pass it as is."""
    if not op_id:
        return None
    if "\x00" in op_id:  # refuse_nul's test: see check_body
        refuse_nul("op_id", op_id)
    if len(op_id) > OP_ID_MAX:
        raise Invalid(f"op_id is too long (max {OP_ID_MAX} characters)")
    return op_id


def check_send(content, message_type, file_url, op_id) -> tuple:
    """A send's (content, message_type, file_url, op_id) as stored, or what is wrong
    with it: all ``messages.send`` refuses before it looks at the conversation."""
    # Unpacked and packed by name: a starred tuple display builds a list on the way.
    content, message_type, file_url = check_body(content, message_type, file_url)
    return content, message_type, file_url, idempotency_key(op_id)


class OpIdReused(Conflict):
    """A send's op_id names a stored message with another body. A resend repeats its
    message; anything else is a client reusing op_ids (a literal copied from the guide's
    examples, a counter restarted by a reload), and answering it with the first message
    would report a new message as sent while storing nothing. Refused, as payment APIs
    refuse an idempotency key reused with other parameters: nothing is lost unseen."""

    def __init__(self):
        super().__init__(
            "op_id was already used for another message; send each message with a new op_id"
        )


def is_resend(first, conversation_id, content, message_type, file_url) -> bool:
    """Whether ``first`` (the stored message with this op_id) is what this send asks to
    store: the same conversation and body."""
    return first.conversation_id == conversation_id and same_body(
        first, content, message_type, file_url
    )


def same_body(first, content, message_type, file_url) -> bool:
    """Whether ``first`` holds this body, compared as ``check_body`` left it."""
    return (
        first.content == content
        and first.message_type == message_type
        and first.file_url == file_url
    )
