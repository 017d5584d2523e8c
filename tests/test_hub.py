"""The hub routes events by audience, once per connection, with no protocol knowledge."""

from dataclasses import dataclass

import pytest

from kefu.realtime.broker import MemoryBroker
from kefu.realtime.events import AGENTS, user_key
from kefu.realtime.hub import Hub

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
