"""The hub routes events by audience, once per connection, with no protocol knowledge."""

import time
from collections import deque
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


# -- order across a delivery that takes turns (Hub.deliver_local, MemoryBroker) --------


class SlowFor(Recorder):
    """Rendering ``slow`` events takes a while (a page socket's HTML), others not."""

    def __init__(self, name, slow):
        super().__init__(name)
        self.slow = slow

    def deliver(self, event, origin):
        if event in self.slow:
            started = time.perf_counter()
            while time.perf_counter() - started < 0.0002:
                pass
        super().deliver(event, origin)


@pytest.mark.parametrize("hold_seconds", [0.0, 1.0], ids=["sqlite", "row-locks"])
def test_a_push_published_while_its_predecessor_goes_out_comes_after_it(hold_seconds):
    """Forty sockets of one conversation (a user's and an agent's tabs): seq 1 takes
    turns with other greenlets on its way out (more than 32 sockets, slow to render),
    and another greenlet publishes seq 2 meanwhile. No socket gets 2 before 1."""
    first, second = message(1), message(2)
    hub = Hub(MemoryBroker(hold_seconds))
    tabs = [SlowFor(str(n), slow=(first,)) for n in range(40)]
    for tab in tabs:
        hub.join(tab)
        hub.attach(tab, user_key(7))
    publishers = [gevent.spawn(hub.publish, [event]) for event in (first, second)]
    gevent.joinall(publishers, raise_error=True)
    assert [[event for event, _ in tab.got] for tab in tabs] == [[first, second]] * 40


def test_what_waits_in_line_still_goes_when_the_publisher_is_killed():
    """The greenlet handing a long delivery out dies mid-way (its socket's handler was
    killed): what others published meanwhile is still delivered, before what comes
    next."""
    slow, later = Ping(("k", "slow")), Ping(("k", "later"))
    hub = Hub(MemoryBroker())
    tabs = [SlowFor(str(n), slow=(slow,)) for n in range(40)]
    for tab in tabs:
        hub.join(tab)
        hub.attach(tab, "k")
    publisher = gevent.spawn(hub.publish, [slow])
    gevent.sleep(0)  # it delivers to 32 of them and takes turns
    hub.publish([later])  # waits in line
    assert sorted(len(tab.got) for tab in tabs) == [0] * 8 + [1] * 32
    publisher.kill()
    last = Ping(("k", "last"))
    hub.publish([last])  # after what waits in line, not before it
    gevent.sleep(0.01)
    assert all([event for event, _ in tab.got][-2:] == [later, last] for tab in tabs)
    assert hub.broker._line == deque()


def test_what_waited_in_line_is_handed_out_in_turns():
    """A hundred pushes published during a long broadcast go after it, in order, and
    handing them out takes turns too (0.2 ms each): another greenlet runs after a dozen
    or so of them, not after all hundred."""
    broadcast = Ping(("k", "broadcast"))
    pushes = [Ping(("s", str(n))) for n in range(100)]
    hub = Hub(MemoryBroker())
    tabs = [SlowFor(str(n), slow=(broadcast,)) for n in range(40)]
    one = SlowFor("s", slow=pushes)
    for tab, key in [*((tab, "k") for tab in tabs), (one, "s")]:
        hub.join(tab)
        hub.attach(tab, key)
    publisher = gevent.spawn(hub.publish, [broadcast])
    gevent.sleep(0)  # it delivers to 32 sockets and takes turns
    for push in pushes:
        hub.publish([push])  # in line
    seen = []
    gevent.spawn(lambda: seen.append(len(one.got)))  # runs at the line's first turn
    publisher.join()
    assert [event for event, _ in one.got] == pushes
    assert seen and seen[0] <= 24, seen
