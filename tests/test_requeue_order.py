"""A requeue and the hand-back that undoes it, rendered in the order several workers can
deliver them. An agent's grace runs out on worker A, which requeues its user; the agent
signs in again on worker B, which gives the user straight back. Events reach a worker in
the order their publishers' broker transactions committed, so B's assignment can come
before A's requeue: rendered after it, the requeue told the agent that its user had left
(waiter ``disconnected``, the dashboard's row deleted) and the user that it waited again.
That order cannot be made on cue through real servers, so real service events, on a real
database (SQLite unless KEFU_TEST_DATABASE names another), are rendered into socket
stand-ins in that order, as test_waiter_holds.py does; a socket that signs in runs the
protocols' own sign-in reads."""

import json
from types import SimpleNamespace

import pytest

from kefu.principal import principal_for
from kefu.protocols import waiter_codec as codec
from kefu.protocols.fields import Fields
from kefu.protocols.pages import resync
from kefu.protocols.pages_codec import PagesCodec
from kefu.protocols.waiter import tell_serving
from kefu.protocols.waiter_codec import USER, WAITER
from kefu.protocols.waiter_frames import Request, user_connect
from kefu.realtime.events import ConversationAssigned, ConversationRequeued, QueueMoved
from kefu.services import accounts, conversations, history, messages, presence, routing
from tests.test_waiter_services import app, people, rendered, socket_of  # noqa: F401

pytestmark = pytest.mark.usefixtures("app")  # the services' database, as theirs


def grace_ends_as_the_agent_returns(name: str) -> SimpleNamespace:
    """The agent's user requeued (A) and given back to it (B), as services return them."""
    user, agent_row, _ = accounts.create_agent(name, max_concurrent=1)
    online = {agent_row.id}
    presence.use(lambda: frozenset(online))
    (customer,) = people(1)
    conv, opened = conversations.open_for_user(customer)
    online.clear()  # away past the grace
    requeue = routing.requeue_agent(agent_row.id)
    waiting = routing.queue_snapshot()  # A's queue news, read before the hand-back
    online.add(agent_row.id)  # signed in again, on B
    hand_back = routing.dispatch()
    (requeued,) = [e for e in requeue if type(e) is ConversationRequeued]
    (assigned,) = [e for e in hand_back if type(e) is ConversationAssigned]
    assert assigned.conversation.kefu_id == agent_row.id
    assert requeued.queued_at is not None and assigned.queued_at == requeued.queued_at
    return SimpleNamespace(
        waiter=principal_for(user),
        agent_row=agent_row,
        customer=customer,
        conv=conv,
        opened=opened,
        requeue=requeue,
        queued=[requeued],  # without its QueueMoved (read when rendered: after B's news)
        waiting=waiting,
        hand_back=hand_back,
        leave=online.clear,
    )


def test_a_requeue_delivered_after_its_hand_back_leaves_the_agent_its_user():
    race = grace_ends_as_the_agent_returns("order-agent-1")
    back = socket_of(race.waiter, WAITER)  # the agent's new waiter socket, on B
    frames = rendered(back, race.hand_back)
    assert [(f["type"], f["from"]) for f in frames] == [("new_connection", race.customer.uuid)]
    assert rendered(back, race.requeue) == []  # not "disconnected": the user is its own
    _, sent, _ = messages.send(race.customer, race.conv.id, "still there?")
    assert [f["payload"]["text"] for f in rendered(back, sent)] == ["still there?"]

    # A socket whose sign-in told of the user before the hand-back's news came.
    signed_in = socket_of(race.waiter, WAITER)
    (ref,) = history.open_for_agent(race.agent_row.id)
    assert len(list(codec.announcement(signed_in, ref, "a1"))) == 1  # new_connection
    assert rendered(signed_in, race.hand_back) == []  # told already
    assert rendered(signed_in, race.requeue) == []

    # In the order they happened: the requeue of a user not told of, then the hand-back.
    in_order = socket_of(race.waiter, WAITER)
    assert [f["type"] for f in rendered(in_order, race.requeue + race.hand_back)] == [
        "new_connection"
    ]

    # A later requeue makes a new queue entry: the agent is told its user left.
    race.leave()
    again = routing.requeue_agent(race.agent_row.id)
    for conn in (back, signed_in, in_order):
        assert [f["type"] for f in rendered(conn, again)] == ["disconnected"]


def test_a_requeue_delivered_after_its_hand_back_does_not_send_the_user_back_to_the_queue():
    race = grace_ends_as_the_agent_returns("order-agent-2")
    user = socket_of(race.customer, USER)
    user.state["connect_op"] = None  # its connect was answered
    assert [f["type"] for f in rendered(user, race.opened)] == ["connect_success"]
    assert rendered(user, race.hand_back) == []  # the same agent: nothing new to say
    assert rendered(user, race.queued) == []
    # A's queue news read while the user waited is older than the hand-back.
    assert rendered(user, [race.waiting]) == []


def pages(principal) -> SimpleNamespace:
    return SimpleNamespace(principal=principal, id="p1", state={"csrf": "t"}, visitor_id=None)


def shown(conn, events) -> str:
    news = [e for e in events if type(e) is not QueueMoved]
    return "".join(html for e in news for html in PagesCodec().render(e, conn, None))


def test_the_pages_keep_a_conversation_handed_back_before_its_requeue_came():
    race = grace_ends_as_the_agent_returns("order-agent-3")
    row = f'id="conv-{race.conv.id}"'
    dashboard = pages(race.waiter)
    assert row in shown(dashboard, race.hand_back)
    assert shown(dashboard, race.queued) == ""  # the row is not deleted
    chat = pages(race.customer)
    assert "is helping you" in shown(chat, race.hand_back)
    assert shown(chat, race.queued) == ""  # the header keeps naming the agent
    # In the order they happened: the row goes, then comes back.
    in_order = pages(race.waiter)
    html = shown(in_order, race.queued + race.hand_back)
    assert html.index('hx-swap-oob="delete"') < html.index("#open-list")
    race.leave()
    later = [e for e in routing.requeue_agent(race.agent_row.id) if type(e) is not QueueMoved]
    assert 'hx-swap-oob="delete"' in shown(dashboard, later)


# -- a socket that signs in after the hand-back's news went by -------------------------
# It never saw the assignment, so it knew no entry taken: the requeue, later still,
# told the agent its user had left. The sign-in now reads the entry with the
# conversation (``Conversation.taken_entry``).


def test_a_waiter_signed_in_after_the_hand_back_keeps_its_user_when_the_requeue_comes():
    race = grace_ends_as_the_agent_returns("order-agent-5")
    late = socket_of(race.waiter, WAITER)
    tell_serving(late, race.agent_row.id, "a1", None)  # the sign-in's read
    told = [json.loads(f) for f in late.sent]
    assert [(f["type"], f["from"]) for f in told] == [("new_connection", race.customer.uuid)]
    assert rendered(late, race.requeue) == []  # not "disconnected"
    assert rendered(late, race.hand_back) == []  # told already
    race.leave()
    again = routing.requeue_agent(race.agent_row.id)  # a new entry: the user did leave
    assert [f["type"] for f in rendered(late, again)] == ["disconnected"]


def test_a_user_socket_connected_after_the_hand_back_is_not_sent_back_to_the_queue():
    race = grace_ends_as_the_agent_returns("order-agent-6")
    user = socket_of(race.customer, USER)
    user_connect(user, Request("c1", None, Fields(None)), None)
    assert [json.loads(f)["type"] for f in user.sent] == ["connect_success"]
    assert rendered(user, race.queued) == []
    assert rendered(user, [race.waiting]) == []  # no connect_queue: it is served
    race.leave()
    again = routing.requeue_agent(race.agent_row.id)
    assert [f["type"] for f in rendered(user, again)] == ["connect_queue"]


def test_pages_signed_in_after_the_hand_back_keep_the_conversation():
    race = grace_ends_as_the_agent_returns("order-agent-7")
    row = f'id="conv-{race.conv.id}"'
    dashboard = pages(race.waiter)
    assert row in resync(dashboard, {"type": "hello"})  # the page's hello, on connect
    assert shown(dashboard, race.queued) == ""  # the row is not deleted
    chat = pages(race.customer)
    assert "is helping you" in resync(chat, {"type": "hello"})
    assert shown(chat, race.queued) == ""  # the header keeps naming the agent
    race.leave()
    later = [e for e in routing.requeue_agent(race.agent_row.id) if type(e) is not QueueMoved]
    assert 'hx-swap-oob="delete"' in shown(dashboard, later)
    assert "is helping you" not in shown(chat, later)


def test_a_second_requeue_behind_the_same_head_is_news_to_a_socket_that_saw_the_first():
    """A requeue puts its users just before the queue's head: a user requeued, handed
    back and requeued again while the same customer waited at the head got the same
    entry twice, and its socket, which had seen the first hand-back, took the second
    requeue for that one's late news: no queue place, no "Waiting" header."""
    _, agent_row, _ = accounts.create_agent("order-agent-8", max_concurrent=1)
    online = {agent_row.id}
    presence.use(lambda: frozenset(online))
    customer, behind = people(2)
    conv, _ = conversations.open_for_user(customer)
    conversations.open_for_user(behind)  # waits at the head throughout (no room)
    mobile, chat = socket_of(customer, USER), pages(customer)
    user_connect(mobile, Request("c1", None, Fields(None)), None)
    resync(chat, {"type": "hello"})
    for _ in range(2):
        online.clear()
        requeue = routing.requeue_agent(agent_row.id)
        assert [f["type"] for f in rendered(mobile, requeue)] == ["connect_queue"]
        assert "Waiting for an agent" in shown(chat, requeue)
        online.add(agent_row.id)
        hand_back = routing.dispatch()
        assert [f["type"] for f in rendered(mobile, hand_back)] == ["connect_success"]
        assert "is helping you" in shown(chat, hand_back)
    assert history.open_for_agent(agent_row.id)[0].id == conv.id
