"""The pages codec renders domain events with the very partials the pages use, and only
for the people concerned. No server, no database: events are plain snapshots."""

from datetime import datetime
from types import SimpleNamespace

import pytest

from kefu import create_app
from kefu.principal import Principal
from kefu.protocols.pages_codec import PagesCodec
from kefu.realtime.events import (
    ConversationAssigned,
    ConversationEnded,
    ConversationRef,
    MessageCreated,
    MessageView,
    Person,
    QueueChanged,
)
from kefu.web.render import partial

pytestmark = pytest.mark.ignores_test_database

AT = datetime(2026, 1, 2, 3, 4, 5)
AGENT = Person(7, "u-7", "mei", "Mei", "")
CUSTOMER = Person(9, "u-9", "lena", "Lena <b>", "")


@pytest.fixture(scope="module", autouse=True)
def app(tmp_path_factory):
    return create_app({"DATABASE_URL": f"sqlite:///{tmp_path_factory.mktemp('c')}/k.db"})


def conn(principal):
    return SimpleNamespace(principal=principal, id="c1", state={"csrf": "tok"}, visitor_id=None)


def agent_conn(kefu_id=3, user_id=7):
    return conn(Principal(user_id, "u", "mei", "Mei", "", kefu_id=kefu_id))


def customer_conn(user_id=9):
    return conn(Principal(user_id, "u-9", "lena", "Lena", ""))


def ref(status=1):
    return ConversationRef(5, status, CUSTOMER, None, 3, AGENT, 0, 1)


def message(content="<script>x</script>", sender_type=1):
    return MessageView(11, 4, 5, sender_type, 9, content, 1, None, 0, None, AT, AT)


def render(event, connection):
    return "".join(PagesCodec().render(event, connection, origin=None))


def test_message_uses_the_page_partial_for_each_side():
    event = MessageCreated(ref(), message())
    for_agent = render(event, agent_conn())
    assert partial("parts/message.html", m=event.message, side=2) in for_agent
    assert 'hx-swap-oob="beforeend:#thread-5"' in for_agent
    assert 'hx-swap-oob="afterbegin:#open-list"' in for_agent  # the row moves to the top
    assert "<script>x" not in for_agent and "&lt;script&gt;x" in for_agent
    assert "Lena &lt;b&gt;" in for_agent
    for_customer = render(event, customer_conn())
    assert partial("parts/message.html", m=event.message, side=1) in for_customer
    assert 'class="msg mine"' in for_customer and 'class="msg theirs"' in for_agent


def test_strangers_get_nothing():
    event = MessageCreated(ref(), message())
    assert render(event, agent_conn(kefu_id=4, user_id=8)) == ""
    assert render(event, customer_conn(user_id=10)) == ""
    assert render(ConversationEnded(ref(2), 2, 3), agent_conn(kefu_id=4, user_id=8)) == ""


def test_queue_counts_for_agents_and_places_for_customers():
    event = QueueChanged(((8, 1), (6, CUSTOMER.user_id)))
    assert ">2 waiting<" in render(event, agent_conn())
    assert "number 2 in the queue" in render(event, customer_conn())


def test_end_shows_the_rating_form_to_the_customer_with_its_csrf_token():
    html = render(ConversationEnded(ref(2), 2, 3), customer_conn())
    assert 'id="footer-5" hx-swap-oob="innerHTML"' in html
    assert 'name="csrf_token" value="tok"' in html and 'hx-post="/chat/rate"' in html


def test_a_queue_place_older_than_the_assignment_is_not_shown():
    # Pushes from different publishers can cross (a broadcast to thousands takes turns
    # with other sockets): after the "assigned" header, a snapshot that still lists
    # the conversation as waiting must not turn the header back into a queue place.
    customer = customer_conn()
    assigned = ConversationAssigned(ConversationRef(6, 1, CUSTOMER, None, 3, AGENT, 0, 0))
    assert "Mei" in render(assigned, customer)
    stale = QueueChanged(((8, 1), (6, CUSTOMER.user_id)))
    assert render(stale, customer) == ""
    assert "number 2 in the queue" in render(stale, customer_conn())  # a fresh socket
