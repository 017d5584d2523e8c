"""The hub routes events by audience, once per connection, with no protocol knowledge."""

from dataclasses import dataclass

import gevent
import pytest

from kefu.realtime.broker import MemoryBroker
from kefu.realtime.events import AGENTS, user_key
from kefu.realtime.hub import Hub
from tests.test_multiworker_units import message

pytestmark = pytest.mark.ignores_test_database


class Recorder:
    """A connection stand-in that records what it is given (no socket involved)."""

    def __init__(self, name):
        self.name, self.got = name, []

    def deliver(self, event, origin):
        self.got.append((event, origin))


@dataclass(frozen=True)
class Ping:
    keys: tuple

    def audience(self):
        return self.keys


def test_delivers_once_per_connection_to_every_key():
    hub = Hub(MemoryBroker())
    agent_tab, agent_tab2, user_tab, bystander = (Recorder(n) for n in "abcd")
    for conn, keys in [
        (agent_tab, [user_key(1), AGENTS]),
        (agent_tab2, [user_key(1)]),
        (user_tab, [user_key(2)]),
        (bystander, [user_key(3)]),
    ]:
        hub.join(conn)
        for key in keys:
            hub.attach(conn, key)
    event = Ping((user_key(1), user_key(2), AGENTS))
    hub.publish([event], origin="x")
    assert agent_tab.got == [(event, "x")]  # matched twice, delivered once
    assert agent_tab2.got == [(event, "x")] and user_tab.got == [(event, "x")]
    assert bystander.got == []


def test_presence_follows_agent_connections():
    hub = Hub(MemoryBroker())
    first, second = Recorder("1"), Recorder("2")
    for conn in (first, second):
        hub.join(conn)
        hub.attach(conn, user_key(9))
    assert hub.add_agent(first, 4) is True
    assert hub.add_agent(second, 4) is False
    assert hub.online_agent_ids() == {4}
    assert hub.remove(first) is None  # still online through the second socket
    assert hub.remove(second) == 4
    assert hub.online_agent_ids() == frozenset()
    assert hub.connections(user_key(9)) == set()
    assert hub.connection_count() == 0


def test_a_failing_connection_does_not_starve_others():
    class Broken(Recorder):
        def deliver(self, event, origin):
            raise RuntimeError("codec bug")

    hub = Hub(MemoryBroker())
    broken, fine = Broken("b"), Recorder("f")
    for conn in (broken, fine):
        hub.join(conn)
        hub.attach(conn, "k")
    hub.publish([Ping(("k",))])
    assert len(fine.got) == 1


# -- the memory broker on a database with row locks (MemoryBroker(hold_seconds)) --------


def published_seqs(broker: MemoryBroker) -> list:
    seqs = []
    broker.subscribe(lambda events, origin: seqs.append(events[0].message.seq))
    return seqs


def test_a_push_published_before_its_predecessor_waits_for_it():
    """Two greenlets of one worker publish after their own commits: seq 3 can come
    first (seen on PostgreSQL and MariaDB). It goes right after 2."""
    broker = MemoryBroker(hold_seconds=1.0)
    seqs = published_seqs(broker)
    broker.publish([message(1)], None)
    broker.publish([message(3)], "conn-b")
    assert seqs == [1]
    broker.publish([message(2)], "conn-a")
    assert seqs == [1, 2, 3]


def test_the_first_two_messages_of_a_conversation_come_in_order():
    """Seq 2 of a new conversation published first (a reviewer's case) waits for 1."""
    broker = MemoryBroker(hold_seconds=1.0)
    seqs = published_seqs(broker)
    broker.publish([message(2)], None)
    assert seqs == []
    broker.publish([message(1)], None)
    assert seqs == [1, 2]


def test_a_held_push_goes_when_its_predecessor_never_comes():
    broker = MemoryBroker(hold_seconds=0.2)
    seqs = published_seqs(broker)
    broker.publish([message(41)], None)  # first seen since the worker started: it
    gevent.sleep(0.3)  # waits a little (0.1 s) for 40, which went before the restart
    assert seqs == [41]
    broker.publish([message(43)], None)
    gevent.sleep(0.1)
    assert seqs == [41]
    gevent.sleep(0.3)
    assert seqs == [41, 43]
    broker.publish([message(42)], None)  # late, still delivered once
    assert seqs == [41, 43, 42]


def test_without_a_hold_pushes_go_as_published():
    """SQLite: the group commit publishes a batch in order, and nothing is held."""
    broker = MemoryBroker()
    seqs = published_seqs(broker)
    for seq in (1, 3, 2):
        broker.publish([message(seq)], None)
    assert seqs == [1, 3, 2]
