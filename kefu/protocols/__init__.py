"""Wire protocols: thin adapters from frames to services and codecs from events to frames."""
