"""Hypothesis strategies for WebSocket frames of both protocols (tests/test_fuzz_frames).

Frames are mostly valid-ish (``Ref`` placeholders are resolved to real tokens, ids and
uuids of the live server) with garbage mixed in: wrong types, missing fields, huge
numbers, odd unicode, nested junk.
"""

import json
import math
import re

from hypothesis import strategies as st

MAX_FRAME_BYTES = 64 * 1024


class Ref(str):
    """A value known only once the server runs (a token, an id), filled in at send time."""


def resolve(value, ctx: dict):
    if isinstance(value, Ref):
        return ctx[str(value)]
    if isinstance(value, dict):
        return {k: resolve(v, ctx) for k, v in value.items()}
    if isinstance(value, list):
        return [resolve(v, ctx) for v in value]
    return value


# -- strategies -------------------------------------------------------------------------

BIG = st.integers(min_value=-(2**80), max_value=2**80)
JUNK = st.recursive(
    st.none() | st.booleans() | BIG | st.floats() | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner),
    max_leaves=8,
)
# Lone surrogates: valid JSON escapes, not UTF-8. Only where the server does not echo
# them back (see test_lone_surrogate_echoed_back_is_answered). "²" is a digit to
# str.isdigit() that int() refuses.
ODD = st.sampled_from(["\ud800", "a\udfffb", "\u202e", "\x00", "👩‍👩‍👧", "\u00b2"])


TEXT = st.text(max_size=40)


def mostly(good, *others, weight: int = 3):
    """``good`` ``weight`` times as often as each of ``others``."""
    return st.sampled_from([good] * weight + list(others)).flatmap(lambda s: s)


def value(*known, text=TEXT):
    """Mostly known-good values, else other values of the right type, odd text, junk."""
    return mostly(st.sampled_from(known) if known else text, text, ODD, JUNK)


TOKEN = value(Ref("user_token"), Ref("agent_token"), Ref("bearer_user"), "x.y.z", "")
CONV = value(Ref("conv"), Ref("conv_str"), text=st.integers(0, 40))
KEFU = value(Ref("kefu"), Ref("kefu_str"), text=st.integers(0, 5))
CONTENT = value(text=st.text(max_size=40) | st.integers(4990, 5010).map(lambda n: "字" * n))
URL = value("/uploads/a.png", "https://example.com/a.png", "javascript:x", "//e/x")
VISITOR = value("fuzz-visitor", "fuzz-visitor-2", text=st.text(min_size=1, max_size=130))
UUID = value(Ref("user_uuid"), Ref("agent_uuid"))
SMALL = st.integers(-2, 200) | JUNK
OP_ID = mostly(st.uuids().map(str) | st.integers(0, 10**9), st.text(max_size=70), BIG, JUNK)

DS_ACTIONS = {
    "login": {"token": TOKEN},
    "ping": {},
    "kefu_message_send": {
        "conversation_id": CONV,
        "content": CONTENT,
        "message_type": st.sampled_from([1, 2, 3]) | JUNK,
        "file_url": URL,
        "sender_type": st.sampled_from([1, 2]) | JUNK,
    },
    "kefu_message_read": {
        "conversation_id": CONV,
        "message_ids": st.lists(st.integers(0, 300), max_size=5) | JUNK,
        "sender_type": st.sampled_from([1, 2]) | JUNK,
    },
    "kefu_message_end": {"conversation_id": CONV},
    "kefu_message_visitor_bind_fd": {"bind_key": VISITOR},
    "kefu_message_visitor_send": {"visitor_id": VISITOR, "kefu_id": KEFU, "content": CONTENT},
    "kefu_message_visitor_end": {"visitor_id": VISITOR, "kefu_id": KEFU},
}
PAGE = {"before": SMALL, "limit": SMALL}
WAITER_USER_TYPES = {
    "auth": {"token": TOKEN},
    "connect": {},
    "disconnect": {},
    "message_text": {"text": CONTENT},
    "message_image": {"image": URL},
    "get_history": PAGE,
    "rate": {"rate": st.integers(0, 6) | JUNK, "conversation_id": CONV},
}
WAITER_TYPES = {
    "auth": {"token": TOKEN},
    "ready": {},
    "unready": {},
    "disconnect": {"uuid": UUID},
    "message_text": {"text": CONTENT},
    "message_image": {"image": URL},
    "get_history": {"user_id": st.sampled_from([Ref("user_id")]) | UUID, **PAGE},
    "get_history_session": PAGE,
}
SPECIAL = [
    '{"action": "ping", "op_id": ' + "9" * 5000 + "}",  # past int()'s digit limit
    "[" * 30000 + "]" * 30000,  # nested past the recursion limit
    '{"action": "ping", "op_id": NaN}',
    '{"action": "ping", "action": "login"}',
    "x" * (MAX_FRAME_BYTES + 1),  # over KEFU_MAX_FRAME_BYTES: refused, socket kept
    "",
]


def frames(table: dict, kind_key: str, body_key: str, extra: dict):
    """("obj" | "bytes", a frame to serialise) or ("text" | "raw", what to send as is)."""
    structured = st.one_of(
        *(
            st.fixed_dictionaries(
                {
                    kind_key: st.just(kind),
                    body_key: mostly(
                        st.fixed_dictionaries(fields),
                        st.fixed_dictionaries({}, optional=fields),
                        JUNK,
                    ),
                    **extra,
                },
                optional={"op_id": OP_ID},
            )
            for kind, fields in table.items()
        ),
        st.fixed_dictionaries(
            {}, optional={kind_key: st.text(max_size=20) | JUNK, body_key: JUNK, "op_id": OP_ID}
        ),
    )
    return mostly(
        structured.map(lambda f: ("obj", f)),
        structured.map(lambda f: ("bytes", f)),
        JUNK.map(lambda v: ("obj", v)),
        st.text(max_size=60).map(lambda t: ("text", t)),
        st.binary(max_size=60).map(lambda b: ("raw", b)),
        st.sampled_from(SPECIAL).map(lambda t: ("text", t)),
        weight=6,
    )


DS_FRAMES = frames(DS_ACTIONS, "action", "data", {})
TO = mostly(st.none() | st.just(Ref("user_uuid")), UUID)  # absent (null) or a uuid, mostly
WAITER_USER_FRAMES = frames(WAITER_USER_TYPES, "type", "payload", {"to": TO})
WAITER_FRAMES = frames(WAITER_TYPES, "type", "payload", {"to": TO})


def expected_op_id(raw):
    """The op_id a reply echoes: a string or (finite) number op_id of a frame that parsed."""
    try:
        text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
        if len(text.encode("utf-8", "surrogatepass")) > MAX_FRAME_BYTES:
            return None
        frame = json.loads(text)
    except (ValueError, RecursionError):
        return None
    if not isinstance(frame, dict):
        return None
    op_id = frame.get("op_id")
    if has_lone_surrogate(op_id):  # refused too, but an op_id like this cannot be echoed
        return None
    if isinstance(op_id, float):
        return op_id if math.isfinite(op_id) else None
    return op_id if isinstance(op_id, str | int) and not isinstance(op_id, bool) else None


def has_lone_surrogate(frame) -> bool:
    """Such a frame is refused (half a surrogate pair is no text to store or send back)."""
    return any(re.search("[\ud800-\udfff]", text) for text in strings(frame))


def strings(value):
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield key
            yield from strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from strings(item)
