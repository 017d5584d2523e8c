"""Limits of the live layer: their defaults, and token buckets per socket and per visitor id
(in-process, cheap)."""

import time
from collections import OrderedDict

# The live layer's limits and periods, by their config names (the KEFU_ variables without
# the prefix); init_app takes each from the app's config.
DEFAULT_LIMITS = {
    "WS_RATE_PER_SECOND": 20.0,
    "WS_RATE_BURST": 40,
    "VISITOR_MESSAGES_PER_MINUTE": 30.0,
    "NEW_VISITORS_PER_ADDRESS_PER_MINUTE": 20.0,
    "VISITOR_UPLOADS_PER_ADDRESS_PER_MINUTE": 10.0,
    "SIGN_IN_ATTEMPTS_PER_USERNAME": 5.0,
    "SIGN_IN_ATTEMPTS_PER_IP": 30.0,
    "MAX_CONNECTIONS_PER_IDENTITY": 20,
    "WS_LOGIN_TIMEOUT_SECONDS": 30.0,
    "REVALIDATE_SECONDS": 10.0,
    "QUEUE_UPDATE_SECONDS": 0.05,
    "INACTIVE_END_SECONDS": 3600.0,
}


class TokenBucket:
    """``rate`` tokens per second, at most ``burst`` saved up."""

    __slots__ = ("burst", "last", "rate", "tokens")

    def __init__(self, rate: float, burst: float):
        self.rate, self.burst = rate, burst
        self.tokens, self.last = float(burst), time.monotonic()

    def allow(self) -> bool:
        now = time.monotonic()
        tokens = self.tokens + (now - self.last) * self.rate
        if tokens > self.burst:  # min() would cost a tuple and a generic loop (every frame)
            tokens = self.burst
        self.last = now
        if tokens < 1:
            self.tokens = tokens
            return False
        self.tokens = tokens - 1
        return True


class KeyedBuckets:
    """One bucket per key (e.g. a visitor id), the least recently used forgotten first."""

    def __init__(self, rate: float, burst: float, max_keys: int = 50_000):
        self.rate, self.burst, self.max_keys = rate, burst, max_keys
        self._buckets: OrderedDict[str, TokenBucket] = OrderedDict()

    def allow(self, key: str) -> bool:
        bucket = self._buckets.pop(key, None) or TokenBucket(self.rate, self.burst)
        self._buckets[key] = bucket
        if len(self._buckets) > self.max_keys:
            self._buckets.popitem(last=False)
        return bucket.allow()


class NewKeyLimit:
    """Per owner (a client address), how often it may use a key (a visitor id) it has
    not used lately; a key it has used costs nothing again. A script that makes up a
    visitor id per message, each opening a conversation with the agent, is slowed down;
    a visitor keeps its id and pays once."""

    def __init__(self, per_minute: float, max_seen: int = 50_000):
        self.buckets = KeyedBuckets(per_minute / 60.0, max(1.0, per_minute))
        self.max_seen = max_seen
        self._seen: OrderedDict[tuple[str, str], None] = OrderedDict()

    def allow(self, owner: str, key: str) -> bool:
        pair = (owner, key)
        if pair in self._seen:
            self._seen.move_to_end(pair)
            return True
        if not self.buckets.allow(owner):
            return False
        self._seen[pair] = None
        if len(self._seen) > self.max_seen:
            self._seen.popitem(last=False)
        return True
