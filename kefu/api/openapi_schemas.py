"""The shapes ``GET /api/openapi.json`` names (its components.schemas): a conversation,
a message, an upload's answer and an error, as the REST API writes them.

Apart from openapi.py, which lays out the paths that return them, so that each file
reads as one thing: what the API answers here, where it answers there. Both are kept
true by tests/test_openapi.py; when a field of ``conversation_json`` or ``message_json``
(kefu/protocols/dskefu_codec.py) changes, change its schema here in the same commit.
"""

from kefu.errors import ID_MAX

TIME = {
    "type": ["string", "null"],
    "pattern": r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}$",
    "description": "UTC, `YYYY-MM-DD HH:MM:SS`",
    "examples": ["2025-01-01 10:00:00"],
}
ID = {"type": "integer", "minimum": 1, "maximum": ID_MAX}

CONVERSATION = {
    "type": "object",
    "properties": {
        "id": ID,
        "kefu_id": {"type": ["integer", "null"], "description": "null while queued"},
        "user_id": {"type": ["integer", "null"]},
        "status": {"enum": [1, 2], "description": "1 open, 2 ended"},
        "last_message_at": TIME,
        "unread_count": {"type": "integer", "minimum": 0},
        "kefu_unread_count": {"type": "integer", "minimum": 0},
        "created_at": TIME,
        "updated_at": TIME,
    },
}

MESSAGE = {
    "type": "object",
    "properties": {
        "id": ID,
        "conversation_id": ID,
        "sender_id": {"type": "integer", "description": "user_id, or kefu_id for agents"},
        "sender_type": {"enum": [1, 2], "description": "1 user or visitor, 2 agent"},
        "content": {"type": "string"},
        "message_type": {"enum": [1, 2, 3], "description": "1 text, 2 image, 3 file"},
        "file_url": {"type": ["string", "null"]},
        "is_read": {"enum": [0, 1]},
        "read_at": TIME,
        "created_at": TIME,
        "updated_at": TIME,
    },
}

# Every field is always present (null where the guide allows it).
CONVERSATION["required"] = list(CONVERSATION["properties"])
MESSAGE["required"] = list(MESSAGE["properties"])

UPLOADED = {
    "type": "object",
    "required": ["url", "message_type", "size"],
    "properties": {
        "url": {"type": "string", "pattern": "^/uploads/[A-Za-z0-9_-]+\\.[a-z]+$"},
        "message_type": {"enum": [2, 3], "description": "2 image, 3 file"},
        "size": {"type": "integer", "minimum": 0},
    },
}

ERROR = {
    "type": "object",
    "required": ["code", "message"],
    "properties": {
        "code": {"type": "integer", "minimum": 400, "maximum": 599},
        "message": {"type": "string"},
    },
}
