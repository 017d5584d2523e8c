"""Service level, on a real database (a SQLite file unless KEFU_TEST_DATABASE names
another): a raised limit refills capacity at once (there is no live trigger for it in
the waiter protocol), and the history queries behind the waiter frames. Events are
rendered through the waiter codec as a socket would see them."""

import json
from types import SimpleNamespace

import pytest

from kefu import create_app
from kefu.errors import Invalid
from kefu.migrate import upgrade
from kefu.principal import principal_for
from kefu.protocols.waiter_codec import USER, WAITER, WaiterCodec
from kefu.realtime import wire
from kefu.realtime.events import ConversationAssigned, ConversationRequeued, QueueMoved
from kefu.services import accounts, conversations, history, messages, presence, routing
from kefu.services.queue_place import queue_place
from kefu.services.snapshots import conversation_ref
from tests.support import drop_database, fresh_database_url


@pytest.fixture
def app(tmp_path):
    url = fresh_database_url(tmp_path)  # SQLite unless KEFU_TEST_DATABASE says otherwise
    upgrade(url)
    app = create_app({"DATABASE_URL": url})
    with app.app_context():
        yield app
    app.extensions["kefu.db"].close_all()
    drop_database(url)


def socket_of(principal, role):
    """A socket stand-in: ``sent`` holds what is sent outside a render (a timer's)."""
    sent = []
    return SimpleNamespace(
        id="test:1",
        principal=principal,
        state={},
        codec=WaiterCodec(role),
        sent=sent,
        send=sent.append,
    )


def rendered(conn, events):
    """The frames ``conn`` gets for ``events`` once published: as the live layer does,
    a QueueMoved goes out as a snapshot of the queue read then."""
    published = [routing.queue_snapshot() if isinstance(e, QueueMoved) else e for e in events]
    return [json.loads(f) for e in published for f in conn.codec.render(e, conn, None)]


def people(count):
    return [principal_for(accounts.create_user(f"svc-user-{i}")[0]) for i in range(count)]


def test_raised_limit_serves_the_queue_head_first(app):
    user, agent_row, _ = accounts.create_agent("svc-agent", max_concurrent=1)
    waiter = principal_for(user)
    presence.use(lambda: frozenset({agent_row.id}))  # the agent is online
    first, second, third = people(3)
    convs = [conversations.open_for_user(p)[0] for p in (first, second, third)]
    assert [c.agent_id for c in convs] == [agent_row.id, None, None]
    assert queue_place(convs[1].id) == 1 and queue_place(convs[2].id) == 2

    stale = routing.queue_snapshot()  # read before the assignment below
    events = routing.set_max_concurrent(agent_row.id, 2)
    desk, waiting = socket_of(waiter, WAITER), socket_of(second, USER)
    frames = rendered(desk, events)
    assert [(f["type"], f["from"]) for f in frames] == [("new_connection", second.uuid)]
    waiting.state["connect_op"] = None  # its connect was answered: places may follow
    assert [f["type"] for f in rendered(waiting, events)] == ["connect_success"]
    # Pushes from different publishers can cross (a broadcast to thousands takes turns
    # with other sockets): a place read before the assignment is not sent after it.
    assert rendered(waiting, [stale]) == []
    requeued = ConversationRequeued(conversation_ref(convs[1]), None)
    rendered(waiting, [requeued])  # had its agent left, places would count again
    assert [f["type"] for f in rendered(waiting, [stale])] == ["connect_queue"]
    behind = socket_of(third, USER)
    assert rendered(behind, events) == []  # no place before its connect was answered
    behind.state["connect_op"] = None  # its connect (without op_id) has been answered
    assert rendered(behind, events) == [
        {
            "op_id": None,
            "from": None,
            "to": third.uuid,
            "type": "connect_queue",
            "payload": {"location": 1},
        }
    ]
    assert queue_place(convs[2].id) == 1
    assert routing.set_max_concurrent(agent_row.id, 3)[1:] != []  # and again: third served
    assert conversations.current_for_user(third.user_id).agent_id == agent_row.id


def test_history_queries(app):
    user, agent_row, _ = accounts.create_agent("svc-agent-2", max_concurrent=5)
    waiter = principal_for(user)
    presence.use(lambda: frozenset({agent_row.id}))
    (customer,) = people(1)
    conv, _ = conversations.open_for_user(customer)
    messages.send(customer, conv.id, "one")
    messages.send(waiter, conv.id, "two")
    conversations.end(conv.id, customer)
    conversations.rate(conv.id, customer, 4)
    again, _ = conversations.open_for_user(customer)
    messages.send(customer, again.id, "three")

    entries = history.user_messages(customer.user_id)
    assert [(e.message.content, e.sender.uuid, e.recipient.uuid) for e in entries] == [
        ("one", customer.uuid, waiter.uuid),
        ("two", waiter.uuid, customer.uuid),
        ("three", customer.uuid, waiter.uuid),
    ]
    older = history.user_messages(customer.user_id, before=entries[2].message.id, limit=1)
    assert [e.message.content for e in older] == ["two"]
    # Bounds past 64 bits, as a caller other than the waiter protocol might pass them
    # (it refuses them itself): every message is older, none is the one to resume after.
    everything = history.user_messages(customer.user_id, before=2**70)
    assert [e.message.content for e in everything] == ["one", "two", "three"]
    with pytest.raises(Invalid, match="after_id is not one of this user's messages"):
        history.user_messages(customer.user_id, after_id=2**70)
    sessions = history.agent_sessions(agent_row.id)
    assert [(s.conversation.id, s.rating) for s in sessions] == [(again.id, None), (conv.id, 4)]
    assert history.has_served(agent_row.id, customer.user_id)
    assert history.latest_ended(customer.user_id) == conv.id
    assert history.find_user(customer.uuid) == customer.user_id
    assert history.find_user(str(customer.user_id)) == customer.user_id
    assert history.find_user("no-such-uuid") is None
    assert history.open_with(agent_row.id, customer.uuid).id == again.id
    assert [r.id for r in history.open_for_agent(agent_row.id)] == [again.id]


def test_the_agent_taking_a_conversation_gets_what_it_has_not_read(app):
    """``ConversationAssigned.pending``: the customer's unread messages, the latest
    ``PENDING_MAX``, oldest first, read in the assigning transaction."""
    _, agent_row, _ = accounts.create_agent("svc-agent-3", max_concurrent=1)
    online = set()
    presence.use(lambda: frozenset(online))  # nobody online: the customer waits
    (customer,) = people(1)
    conv, _ = conversations.open_for_user(customer)
    sent = [messages.send(customer, conv.id, f"m{i}")[0].id for i in range(history.PENDING_MAX + 2)]
    online.add(agent_row.id)
    (assigned,) = [e for e in routing.dispatch() if isinstance(e, ConversationAssigned)]
    expected = [f"m{i}" for i in range(2, history.PENDING_MAX + 2)]
    assert [m.content for m in assigned.pending] == expected
    # The PostgreSQL broker carries it to other workers whole.
    (revived,), _ = wire.loads(wire.dumps([assigned], None))
    assert revived == assigned
    # What was read, or what the agent wrote, is not pending for the next one.
    agent = principal_for(accounts.agent_profile(agent_row.id).user)
    messages.send(agent, conv.id, "an answer")
    conversations.mark_read(conv.id, agent, sent[:-1], 1)
    routing.requeue_agent(agent_row.id)  # still online: nothing moves
    online.clear()
    requeued = routing.requeue_agent(agent_row.id)
    assert isinstance(requeued[0], ConversationRequeued)
    online.add(agent_row.id)
    (again,) = [e for e in routing.dispatch() if isinstance(e, ConversationAssigned)]
    assert [m.content for m in again.pending] == [expected[-1]]
