"""Signed-in sockets checked against the accounts: a person disabled, or whose password
changed after the socket signed in, is closed (1008), and a disabled user's open
conversation is ended. The CLI that changes accounts runs in another process, so each
worker asks the database every ``REVALIDATE_SECONDS``."""

import logging

import gevent

from kefu.errors import Busy
from kefu.realtime.turns import LOOP_TURN_SECONDS, turns
from kefu.services import accounts, inactivity, page_sessions

log = logging.getLogger(__name__)


def revalidate_forever(live, every: float) -> None:
    while True:
        gevent.sleep(every)
        try:
            revalidate(live.hub)
            end_disabled_customers(live)
        except Busy:  # the next pass checks the same again
            log.warning("revalidation postponed: no database connection free")
        except Exception:
            log.exception("revalidating signed-in sockets failed")


def revalidate(hub) -> None:
    # Every pass over the sockets takes turns by time: at 10,000 sockets the plain
    # comprehensions and the first chunk of the query held the hub 12-27 ms.
    signed_in, user_ids = [], set()
    for conn in turns.paced(hub.all_connections(), LOOP_TURN_SECONDS):
        if conn.principal and not conn.closed:
            signed_in.append(conn)
            user_ids.add(conn.principal.user_id)
    changes = accounts.credential_changes(user_ids, between=turns.pass_turn)
    _close_ended_page_sessions(signed_in)
    if not changes:
        return
    for conn in turns.paced(signed_in, LOOP_TURN_SECONDS):
        change = changes.get(conn.principal.user_id)
        if change is None:
            continue
        active, changed_at = change
        if not active:
            conn.close(1008, "Account disabled")
        elif changed_at is not None and changed_at > conn.signed_in_at:
            conn.close(1008, "Credentials changed; sign in again")


def _close_ended_page_sessions(signed_in) -> None:
    """A page's live channel whose session has ended (expired, or signed out where this
    worker did not hear it) is closed, as the session's pages are refused."""
    paced = turns.paced(signed_in, LOOP_TURN_SECONDS)
    pages = [conn for conn in paced if conn.state.get("session")]
    if not pages:
        return
    on = page_sessions.still_on({conn.state["session"] for conn in pages}, turns.pass_turn)
    for conn in pages:
        if conn.state["session"] not in on and not conn.closed:
            conn.close(1008, "Session ended; sign in again")


def end_disabled_customers(live) -> int:
    """End the open conversations of disabled users, as if they had left: each held its
    agent's slot until the inactivity sweep (an hour by default). How many it ended."""
    ended = 0
    for conversation_id in inactivity.of_disabled_users():
        events = inactivity.end_if_customer_disabled(conversation_id)
        if events:
            live.publish(events)
            ended += 1
    return ended
