"""Wire protocols: thin adapters from frames to services and codecs from events to frames."""

import json

# One encoder for every frame: ``json.dumps`` with options builds a new JSONEncoder per
# call, a third of the cost of encoding a small frame.
compact_json = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
