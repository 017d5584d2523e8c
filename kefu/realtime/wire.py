"""Events on the wire: frozen event dataclasses to JSON and back, for the PostgreSQL
broker. Each dataclass travels as ``{"@": type name, field: value…}``; datetimes as
``{"@dt": ISO 8601}``; tuples as lists (every sequence field of an event is a tuple).
Only the classes of ``kefu.realtime.events`` are known, so a stored payload can never
name an arbitrary class.
"""

import dataclasses
import json
from datetime import datetime

from kefu.realtime import events as _events

_TYPES = {
    name: cls
    for name, cls in vars(_events).items()
    if isinstance(cls, type) and dataclasses.is_dataclass(cls)
}


def _plain(value):
    if dataclasses.is_dataclass(value):
        out = {"@": type(value).__name__}
        for f in dataclasses.fields(value):
            out[f.name] = _plain(getattr(value, f.name))
        return out
    if isinstance(value, datetime):
        return {"@dt": value.isoformat()}
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    return value


def _revive(value):
    if isinstance(value, list):
        return tuple(_revive(v) for v in value)
    if isinstance(value, dict):
        if "@dt" in value:
            return datetime.fromisoformat(value["@dt"])
        kind = value.get("@")
        if kind is not None:
            cls = _TYPES[kind]  # KeyError: a payload from a newer release; caller logs it
            return cls(**{k: _revive(v) for k, v in value.items() if k != "@"})
        return {k: _revive(v) for k, v in value.items()}
    return value


def dumps(events, origin: str | None) -> str:
    return json.dumps(
        {"origin": origin, "events": [_plain(e) for e in events]},
        ensure_ascii=False,
        separators=(",", ":"),
    )


def loads(payload: str) -> tuple[list, str | None]:
    data = json.loads(payload)
    return [_revive(e) for e in data["events"]], data.get("origin")
