"""``GET /api/openapi.json``: the REST API described by hand (OpenAPI 3.1).

Kept true by tests/test_openapi.py, which runs schemathesis against a live server. When
a route under ``/api/`` changes, change this document in the same commit. The shapes the
paths return (conversation, message, upload, error) are in openapi_schemas.py.
"""

from flask import jsonify

from kefu.api import PAGE_MAX, bp
from kefu.api.openapi_schemas import CONVERSATION, ERROR, ID, MESSAGE, UPLOADED
from kefu.errors import ID_MAX


def _ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


def _ok(data: dict, description: str) -> dict:
    """A 200 response in the ``{"code": 200, "data": …}`` envelope."""
    return {
        "description": description,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "required": ["code", "data"],
                    "properties": {"code": {"const": 200}, "data": data},
                }
            }
        },
    }


# gunicorn answers a request line over its limit (limit_request_line, 4094 bytes) itself,
# before kefu sees it: an HTML page, not the JSON envelope.
URI_TOO_LONG = {
    "description": "Request line too long (over 4094 bytes): refused by the server itself",
    "content": {"text/html": {"schema": {"type": "string"}}},
}


def _errors(*statuses: int) -> dict:
    """Error responses in the ``{"code", "message"}`` envelope (components.responses)."""
    return {str(s): {"$ref": f"#/components/responses/E{s}"} for s in statuses}


def _query(
    name: str, schema: dict, description: str, required: bool = False, empty_is_default=False
) -> dict:
    """``empty_is_default``: ``?name=`` reads as absent (``kefu.params.number``), which
    OpenAPI says with allowEmptyValue (schemathesis once took the 200 for a schema breach)."""
    return {
        "name": name,
        "in": "query",
        "required": required,
        "description": description,
        "schema": schema,
        **({"allowEmptyValue": True} if empty_is_default else {}),
    }


UPLOAD_TYPES = (
    "image/png",
    "image/jpeg",
    "image/gif",
    "image/webp",
    "application/pdf",
    "text/plain",
    "text/csv",
    "application/zip",
    "application/msword",
    "application/vnd.ms-excel",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "application/octet-stream",
)

PATHS = {
    "/api/kefu/message/getConversation": {
        "get": {
            "operationId": "getConversation",
            "summary": "The caller's open conversation, created (and assigned or queued) if none",
            "description": (
                "For users only; an agent gets 403. A new conversation goes to the least "
                "busy available agent, or waits in the queue with `kefu_id: null`."
            ),
            "security": [{"bearerAuth": []}],
            "responses": {
                "200": {
                    **_ok(_ref("Conversation"), "The open conversation"),
                    "links": {
                        "ListMessages": {
                            "operationId": "listMessages",
                            "parameters": {"conversation_id": "$response.body#/data/id"},
                        }
                    },
                },
                **_errors(401, 403),
            },
        }
    },
    "/api/kefu/message/list": {
        "get": {
            "operationId": "listMessages",
            "summary": "One page of a conversation's messages",
            "description": (
                "Page 1 holds the newest `page_size` messages; inside a page messages run "
                "oldest to newest. Allowed for the conversation's user and its assigned "
                "agent; anyone else gets 404."
            ),
            "security": [{"bearerAuth": []}],
            "parameters": [
                _query("conversation_id", ID, "The conversation", required=True),
                _query(
                    "page",
                    {"type": "integer", "minimum": 1, "maximum": PAGE_MAX, "default": 1},
                    "1 = the newest messages; empty: 1",
                    empty_is_default=True,
                ),
                _query(
                    "page_size",
                    {"type": "integer", "minimum": 1, "default": 10},
                    "Messages per page; a larger one is capped at KEFU_PAGE_SIZE_MAX (100); "
                    "empty: 10",
                    empty_is_default=True,
                ),
                _query(
                    "after_id",
                    {"type": "integer", "minimum": 0, "maximum": ID_MAX},
                    "Resync cursor: the messages after this one (0: from the first), oldest "
                    "first, at most `page_size`; `page` is ignored. 422 if it is not a "
                    "message of this conversation.",
                ),
            ],
            "responses": {
                "200": _ok({"type": "array", "items": _ref("Message")}, "Messages"),
                **_errors(401, 404, 422),
                "414": URI_TOO_LONG,
            },
        }
    },
    "/api/kefu/upload": {
        "post": {
            "operationId": "upload",
            "summary": "Upload an image or a file for a message_type 2 or 3 message",
            "description": (
                "Accepted: png, jpg/jpeg, gif, webp images (declared type and magic bytes "
                "must agree) and pdf, txt, csv, zip, docx, xlsx, doc, xls files, chosen by "
                "the file name's extension. Callers: a bearer token, a page session (with "
                "its `csrf_token` form field), or a visitor (`visitor_id`, images only, "
                "KEFU_UPLOAD_VISITOR_MAX_BYTES). The returned `url` goes in `file_url`."
            ),
            "security": [{"bearerAuth": []}, {}],
            "requestBody": {
                "required": True,
                "content": {
                    "multipart/form-data": {
                        "schema": {
                            "type": "object",
                            "required": ["file"],
                            "properties": {
                                "file": {"type": "string", "format": "binary"},
                                "visitor_id": {
                                    "type": "string",
                                    "description": (
                                        "For visitors, who send no token (1-128 characters); "
                                        "ignored when a token or a session signs the upload"
                                    ),
                                },
                                "csrf_token": {
                                    "type": "string",
                                    "description": "For page sessions (cookie sign-in)",
                                },
                            },
                        },
                        "encoding": {"file": {"contentType": ", ".join(UPLOAD_TYPES)}},
                    }
                },
            },
            "responses": {
                "200": _ok(_ref("Uploaded"), "Stored; the url to send as file_url"),
                **_errors(401, 403, 413, 422, 429),
            },
        }
    },
    "/api/openapi.json": {
        "get": {
            "operationId": "openapi",
            "summary": "This document",
            "security": [],
            "responses": {
                "200": {
                    "description": "OpenAPI 3.1 document",
                    "content": {"application/json": {"schema": {"type": "object"}}},
                }
            },
        }
    },
}

ERROR_TEXTS = {
    401: "No, or an invalid, bearer token",
    403: "Signed in, but not allowed",
    404: "Not found, or not yours (the two are not told apart)",
    405: "Method not allowed",
    409: "The state does not allow it",
    413: "Body too large",
    422: "A parameter is missing, of the wrong type or out of range",
    429: "Too many requests from this client address; wait a moment",
}

DOCUMENT = {
    "openapi": "3.1.0",
    "info": {
        "title": "kefu REST API",
        "version": "1",
        "description": (
            'The ds/kefu REST API. Successes are `{"code": 200, "data": …}`; errors are '
            '`{"code": N, "message": "…"}` with the same HTTP status, on every path '
            "under /api/. Real-time traffic goes over the WebSockets described in "
            "docs/protocol-dskefu.md and docs/protocol-waiter.md."
        ),
    },
    "paths": PATHS,
    "components": {
        "securitySchemes": {
            "bearerAuth": {
                "type": "http",
                "scheme": "bearer",
                "description": "A kefu bearer token (CLI) or a host-signed HS256 JWT",
            }
        },
        "schemas": {
            "Conversation": CONVERSATION,
            "Message": MESSAGE,
            "Uploaded": UPLOADED,
            "Error": ERROR,
        },
        "responses": {
            f"E{status}": {
                "description": text,
                "content": {"application/json": {"schema": _ref("Error")}},
            }
            for status, text in ERROR_TEXTS.items()
        },
    },
}


@bp.get("/openapi.json")
def openapi_document():
    return jsonify(DOCUMENT)
