"""Ending conversations whose customer left without a word (``KEFU_INACTIVE_END_SECONDS``).

Every worker sweeps now and then. A conversation counts as left when no message was
written for the whole period and its customer has no socket open on any worker; it is
ended as if the customer had left, which frees the agent's slot and tells whoever is
still connected. Ending is idempotent, so two workers sweeping at once end it once.
"""

import logging
from functools import partial

import gevent

from kefu.errors import Busy
from kefu.services import inactivity

log = logging.getLogger(__name__)


def sweep_every(idle_seconds: float) -> float:
    """A conversation ends at most a quarter of the period late (and a minute at most)."""
    return min(60.0, max(0.5, idle_seconds / 4))


def end_inactive_forever(live, idle_seconds: float) -> None:
    while True:
        gevent.sleep(sweep_every(idle_seconds))
        try:
            end_inactive(live, idle_seconds)
        except Busy:  # the next sweep finds the same conversations
            log.warning("ending inactive conversations postponed: no database connection free")
        except Exception:
            log.exception("ending inactive conversations failed")


def end_inactive(live, idle_seconds: float) -> int:
    """One sweep, a page of conversations at a time; how many it ended."""
    ended, after_key = 0, ""
    while page := inactivity.quiet(idle_seconds, after_key):
        for conversation_id, _, customer_key in page:
            present = partial(live.connections_anywhere, customer_key)
            if present():
                continue  # the customer is still there, reading
            events = inactivity.end_if_still_quiet(conversation_id, idle_seconds, present)
            if events:
                live.publish(events)
                ended += 1
        after_key = page[-1][1]
        gevent.sleep(0)  # other sockets between pages
    return ended
