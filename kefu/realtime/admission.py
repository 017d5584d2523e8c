"""What a socket and a visitor may do before the desk serves them: the frame rate,
visitor message rates, new visitor ids and visitor uploads per address, the
per-identity socket cap, counted across workers through the registry when there is one,
and the agent sign-in form's attempts.

A part of ``Live`` (a mixin): it uses the ``hub``, ``registry`` and ``limits`` that
``Live`` sets up, and keeps its own state from ``_init_admission``.
"""

import logging

from kefu.errors import TooManyRequests
from kefu.realtime.events import visitor_key
from kefu.realtime.limits import KeyedBuckets, NewKeyLimit

log = logging.getLogger(__name__)


class TooManyConnections(TooManyRequests):
    """The per-identity socket cap."""


class Admission:
    def _init_admission(self) -> None:
        self._registered: dict[object, list[str]] = {}  # conn → keys counted in registry
        per_minute = self.limits["VISITOR_MESSAGES_PER_MINUTE"]
        self.visitor_messages = KeyedBuckets(per_minute / 60.0, max(1.0, per_minute / 3))
        self.new_visitors = NewKeyLimit(self.limits["NEW_VISITORS_PER_ADDRESS_PER_MINUTE"])
        uploads = self.limits["VISITOR_UPLOADS_PER_ADDRESS_PER_MINUTE"]
        self.visitor_uploads = KeyedBuckets(uploads / 60.0, max(1.0, uploads))
        rate, burst = self.limits["WS_RATE_PER_SECOND"], self.limits["WS_RATE_BURST"]
        self.page_sends = KeyedBuckets(rate, burst)
        per_username = self.limits["SIGN_IN_ATTEMPTS_PER_USERNAME"]
        per_address = self.limits["SIGN_IN_ATTEMPTS_PER_IP"]
        self.sign_in_attempts = (  # attempts per minute, and as many at once
            KeyedBuckets(per_username / 60, per_username),
            KeyedBuckets(per_address / 60, per_address),
        )

    def admit_page_send(self, person_key: str) -> None:
        """A message sent from a page (a form post, not a frame) at the rate a socket's
        frames have, per person (per worker): a script holding a page session posted
        hundreds a second, each stored and pushed."""
        if not self.page_sends.allow(person_key):
            raise TooManyRequests("Too many messages at once; slow down")

    def admit_frame(self, conn) -> None:
        """Spend one frame of the socket's rate budget, or refuse the frame."""
        if not conn.rate.allow():
            raise TooManyRequests("Rate limit exceeded: too many frames, slow down")

    def admit_visitor_message(self, visitor_id: str, address: str | None = None) -> None:
        """Refuse a visitor's message past its rate, or from an address that has used too
        many new visitor ids lately (per worker; 0 in the setting turns that off)."""
        self._admit_visitor_id(visitor_id, address)
        if self.registry is not None:  # counted across workers, per minute
            allowed = self.registry.admit(
                visitor_key(visitor_id), self.limits["VISITOR_MESSAGES_PER_MINUTE"]
            )
        else:
            allowed = self.visitor_messages.allow(visitor_id)
        if not allowed:
            raise TooManyRequests("Too many messages from this visitor; wait a moment")

    def _admit_visitor_id(self, visitor_id: str, address: str | None) -> None:
        per_address = self.limits["NEW_VISITORS_PER_ADDRESS_PER_MINUTE"]
        if address and per_address and not self.new_visitors.allow(address, visitor_id):
            raise TooManyRequests("Too many new visitors from this address; wait a moment")

    def admit_visitor_upload(self, address: str | None) -> None:
        """Per client address, since a script can make up a visitor id for every upload
        (per worker, in memory; 0 in the setting turns it off)."""
        per_minute = self.limits["VISITOR_UPLOADS_PER_ADDRESS_PER_MINUTE"]
        if per_minute and not self.visitor_uploads.allow(address or "?"):
            raise TooManyRequests("Too many uploads from this address; wait a moment")

    def admit_sign_in(self, username: str, address: str | None) -> None:
        """Per username and per client address, so guessing one account from many
        addresses and many accounts from one address are both slowed down (per worker,
        in memory). A refused address spends none of the username's budget."""
        by_username, by_address = self.sign_in_attempts
        if not (by_address.allow(address or "?") and by_username.allow(username)):
            raise TooManyRequests("Too many sign-in attempts; wait a minute and try again.")

    def connections_anywhere(self, key: str) -> int:
        """Live sockets under ``key`` on every worker (this one's hub if it is alone)."""
        if self.registry is not None:
            return self.registry.count(key)
        return len(self.hub.connections(key))

    def _check_cap(self, key: str, conn) -> None:
        cap = self.limits["MAX_CONNECTIONS_PER_IDENTITY"]
        if conn in self.hub.connections(key):
            return
        if self.connections_anywhere(key) >= cap:
            raise TooManyConnections(f"Too many connections for this identity (max {cap})")

    def _count(self, conn, key: str) -> None:
        """Count ``conn`` under ``key`` in the shared registry (once per socket and key)."""
        if self.registry is None:
            return
        keys = self._registered.setdefault(conn, [])
        if key not in keys:
            # Noted only once counted: a sign-in refused here (no connection free) must
            # not take back, when its socket closes, another socket's count.
            self.registry.connected(key)
            keys.append(key)

    def _uncount(self, conn, key: str | None = None) -> None:
        """Take back one key of ``conn`` (or all of them) from the shared registry."""
        if self.registry is None:
            return
        keys = self._registered.get(conn, [])
        for gone in [k for k in keys if key is None or k == key]:
            keys.remove(gone)
            try:
                self.registry.disconnected(gone)
            except Exception:  # the heartbeat's rewrite or the TTL corrects it
                log.exception("uncounting %s failed", gone)
        if not keys:
            self._registered.pop(conn, None)
