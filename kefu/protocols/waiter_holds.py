"""Messages a waiter socket must not show yet: those of a user it has not been told
about (``new_connection``). They wait for that announcement (``held_for``), for the
end of a sign-in (``hold_early`` / ``release_early``: the socket takes pushes before
its users are read, and PostgreSQL and MySQL yield meanwhile), or, for a conversation
it was never told about (its assignment's news is behind the message: another
worker's, or another greenlet's that published later), for at most
``UNANNOUNCED_HOLD_SECONDS``. None is held for good.
"""

import gevent

from kefu.protocols.waiter_wire import to_waiter

UNANNOUNCED_HOLD_SECONDS = 1.0  # as the PostgreSQL broker's hold for a message's predecessor


def hold_unannounced(conn, msg, conv) -> None:
    """A message of a conversation this socket was never told about: it waits for that
    conversation's ``announcement``, or goes ``UNANNOUNCED_HOLD_SECONDS`` after the
    first of its messages was held (a tester saw messages come before their user's
    new_connection with three workers: the broker holds a message only for its
    predecessor, not for news of the assignment). One timer per held conversation."""
    held = conn.state.setdefault("unannounced", {})
    waiting = held.get(conv.id)
    if waiting is None:
        waiting = held[conv.id] = []
        gevent.spawn_later(UNANNOUNCED_HOLD_SECONDS, _release_unannounced, conn, conv.id, waiting)
    waiting.append((msg, conv))


def _release_unannounced(conn, conversation_id: int, waiting: list) -> None:
    held = conn.state.get("unannounced", {})
    if held.get(conversation_id) is not waiting:
        return  # announced or released meanwhile (and perhaps held anew: its own timer)
    del held[conversation_id]
    for msg, conv in waiting:
        conn.send(to_waiter(msg, conv))


def held_for(conn, conversation_id: int) -> list:
    """The messages waiting for this conversation's announcement, taken out."""
    return [
        *conn.state.get("early", {}).pop(conversation_id, ()),
        *conn.state.get("unannounced", {}).pop(conversation_id, ()),
    ]


def release_held(conn, conversation_id: int):
    """Its announcement will not come (ended, requeued): what waited for it goes now,
    before the news, as it would have without the hold."""
    for msg, conv in held_for(conn, conversation_id):
        yield to_waiter(msg, conv)


def hold_early(conn) -> None:
    """A sign-in begins: messages of users not announced yet wait for their
    ``announcement`` until ``release_early``."""
    conn.state.setdefault("early", {})


def release_early(conn):
    """The sign-in is over: what still waits (its user was not among those announced,
    ended meanwhile, say) goes as it would have, so nothing is held for good."""
    for held in conn.state.pop("early", {}).values():
        yield from (to_waiter(msg, conv) for msg, conv in held)
