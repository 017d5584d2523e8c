"""The widget keeps what the visitor writes: a message the server refuses (the visitor
rate limit) stays in the thread marked "Not sent" until it goes through, and one written
while the connection is down shows at once as pending and is stored once."""

import re
import time

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import open_widget, pages_server, shop_with_widget
from tests.support import retire

BUBBLE = "#kefu-widget .bubble"
FRAME = "#kefu-widget iframe"


@pytest.fixture(scope="module")
def kefu(tmp_path_factory):
    """The visitor limit as shipped (30 a minute: a burst of 10, then one every 2 s)."""
    srv = pages_server(tmp_path_factory, "widget-sending", visitor_messages_per_minute=30)
    yield srv
    retire(srv)


def stored(kefu, kefu_id: int) -> list[str]:
    rows = kefu.sql(
        "SELECT m.content FROM message m JOIN conversation c ON c.id = m.conversation_id"
        " WHERE c.kefu_id = ? AND m.sender_type = 1 ORDER BY m.id",
        kefu_id,
    )
    return [content for (content,) in rows]


def test_a_refused_message_is_kept_and_sent_again(kefu, host_site, new_page):
    agent = kefu.create_agent("rita")
    shop, widget = shop_with_widget(new_page, host_site, agent["kefu_id"])
    box = widget.locator("textarea")
    texts = [f"line {n}" for n in range(1, 13)]
    for text in texts:  # faster than the limit's burst of 10
        box.fill(text)
        box.press("Enter")

    failed = widget.locator(".msg.failed")
    expect(failed.first).to_be_visible()
    expect(failed.first).to_contain_text("Not sent")
    notice = widget.locator("#visitor-notice")
    expect(notice).to_have_text("Too many messages from this visitor; wait a moment")
    expect(widget.locator("#visitor-status")).not_to_contain_text("Too many")

    deadline = time.monotonic() + 30
    while failed.count() and time.monotonic() < deadline:
        shop.wait_for_timeout(2200)  # one more message's worth of the limit
        if failed.count():
            failed.first.get_by_role("button", name="Retry").click()
            shop.wait_for_timeout(300)
    expect(failed).to_have_count(0)
    expect(widget.locator(".msg.pending")).to_have_count(0)
    expect(widget.locator(".msg.mine")).to_have_count(len(texts))
    expect(notice).to_have_text("")  # cleared by the message that went through
    assert stored(kefu, agent["kefu_id"]) == texts  # each once, in order


def test_a_message_written_offline_shows_at_once_and_is_stored_once(kefu, host_site, new_page):
    """The socket goes down; the visitor writes; the page is even reloaded meanwhile. The
    message shows as pending all along. When the server is reachable again its answer is
    lost once (stored, but the reply never arrives), and the resend with the same op_id
    does not store it again."""
    agent = kefu.create_agent("otto")
    shop = new_page()
    mode = {"now": "pass", "lost": 0}  # pass | down | lose-answer
    routes = []

    def route(ws):
        routes.append(ws)
        if mode["now"] == "down":
            ws.close(code=1011, reason="down")
            return
        server = ws.connect_to_server()
        if mode["now"] == "lose-answer":

            def to_page(message):
                if "Visitor message sent" in str(message):
                    mode["lost"] += 1
                    ws.close(code=1011, reason="lost")  # stored, the answer lost
                    return
                ws.send(message)

            server.on_message(to_page)

    shop.context.route_web_socket(re.compile(r"/ws$"), route)
    shop.goto(host_site(agent["kefu_id"]))
    widget = open_widget(shop)
    box = widget.locator("textarea")
    box.fill("before the outage")
    box.press("Enter")
    expect(widget.locator(".msg.mine:not(.pending)")).to_have_count(1)

    mode["now"] = "down"
    for ws in list(routes):
        ws.close(code=1011, reason="down")
    expect(widget.locator("body")).to_have_attribute("data-live", "closed")
    box.fill("written offline")
    box.press("Enter")
    pending = widget.locator(".msg.pending")
    expect(pending).to_have_count(1)
    expect(pending).to_contain_text("written offline")
    expect(pending).to_contain_text("Sending")

    # A reload during the outage keeps it (sessionStorage).
    shop.reload()
    shop.locator(BUBBLE).click()
    widget = shop.frame_locator(FRAME)
    expect(widget.locator(".msg.mine:not(.pending)")).to_have_count(1)
    expect(widget.locator(".msg.pending")).to_contain_text("written offline")
    assert stored(kefu, agent["kefu_id"]) == ["before the outage"]

    mode["now"] = "lose-answer"
    deadline = time.monotonic() + 15
    while stored(kefu, agent["kefu_id"]) == ["before the outage"]:
        assert time.monotonic() < deadline, "never sent"
        shop.wait_for_timeout(200)  # (Playwright runs the route's handlers meanwhile)
    mode["now"] = "pass"
    expect(widget.locator(".msg.pending")).to_have_count(0, timeout=15000)
    assert mode["lost"] >= 1
    expect(widget.locator(".msg.mine")).to_have_count(2)
    expect(widget.locator(".msg.mine").last).to_contain_text("written offline")
    assert stored(kefu, agent["kefu_id"]) == ["before the outage", "written offline"]


def test_messages_held_over_a_reload_are_sent_with_the_panel_closed(kefu, host_site, new_page):
    """After a reload during an outage the chat loads (closed) by itself and sends what
    this tab holds: the visitor need not open the panel again for it to go."""
    agent = kefu.create_agent("tess")
    shop = new_page()
    down = {"now": False}
    routes = []

    def route(ws):
        routes.append(ws)
        if down["now"]:
            ws.close(code=1011, reason="down")
        else:
            ws.connect_to_server()

    shop.context.route_web_socket(re.compile(r"/ws$"), route)
    shop.goto(host_site(agent["kefu_id"]))
    widget = open_widget(shop)
    down["now"] = True
    for ws in list(routes):
        ws.close(code=1011, reason="down")
    expect(widget.locator("body")).to_have_attribute("data-live", "closed")
    box = widget.locator("textarea")
    for text in ["held first", "held second"]:
        box.fill(text)
        box.press("Enter")
    expect(widget.locator(".msg.pending")).to_have_count(2)

    shop.reload()
    expect(shop.locator(FRAME)).to_be_attached()  # loaded without a click...
    expect(shop.locator(FRAME)).not_to_have_class(re.compile(r"\bopen\b"))  # ...and closed
    assert stored(kefu, agent["kefu_id"]) == []

    down["now"] = False
    deadline = time.monotonic() + 15
    while stored(kefu, agent["kefu_id"]) != ["held first", "held second"]:
        assert time.monotonic() < deadline, f"never sent: {stored(kefu, agent['kefu_id'])}"
        shop.wait_for_timeout(200)  # (Playwright runs the route's handlers meanwhile)
    shop.locator(BUBBLE).click()
    widget = shop.frame_locator(FRAME)
    expect(widget.locator(".msg.pending")).to_have_count(0)
    expect(widget.locator(".msg.mine")).to_have_count(2)
