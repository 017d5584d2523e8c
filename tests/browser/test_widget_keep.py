"""The widget: a message refused for good can be discarded, so those behind it go; the
length limit is counted as the server counts it (characters), nothing is cut."""

import functools
import json
import re

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import (
    box_keeps_to_the_limit,
    open_widget,
    pages_server,
    shop_with_widget,
)
from tests.browser.test_widget_sending import stored
from tests.support import retire

LIMIT = 40  # KEFU_MAX_CONTENT_CHARS for this module


@pytest.fixture(scope="module")
def kefu(tmp_path_factory):
    srv = pages_server(tmp_path_factory, "widget-keep", max_content_chars=LIMIT)
    yield srv
    retire(srv)


def send(widget, text: str) -> None:
    widget.locator("textarea").fill(text)
    widget.locator("textarea").press("Enter")


def test_a_message_refused_for_good_can_be_discarded(kefu, host_site, new_page):
    """The server refuses one message whatever happens (the test answers for it); those
    written after it queue behind it and fail too, over a reload as well. Discard drops
    it (from what the tab keeps too), and the ones behind it go."""
    agent = kefu.create_agent("dina")
    shop = new_page()

    def route(ws):
        server = ws.connect_to_server()

        def to_server(message):
            frame = json.loads(message)
            if (frame.get("data") or {}).get("content") == "refuse me":
                refused = {"op_id": frame["op_id"], "success": False, "message": "Refused for good"}
                ws.send(json.dumps(refused))
            else:
                server.send(message)

        ws.on_message(to_server)

    shop.context.route_web_socket(re.compile(r"/ws$"), route)
    shop.goto(host_site(agent["kefu_id"]))
    widget = open_widget(shop)
    send(widget, "hello")
    expect(widget.locator(".msg.mine:not(.pending)")).to_have_count(1)
    send(widget, "refuse me")
    send(widget, "behind it")
    failed = widget.locator(".msg.failed")
    expect(failed).to_have_count(2)

    shop.reload()
    widget = open_widget(shop)
    failed = widget.locator(".msg.failed")
    expect(failed).to_have_count(2)  # still held up
    assert stored(kefu, agent["kefu_id"]) == ["hello"]

    discard = failed.filter(has_text="refuse me").get_by_role("button", name="Discard")
    expect(discard).to_be_visible(timeout=5000)
    discard.click()
    expect(widget.locator(".msg.pending")).to_have_count(0)
    expect(widget.locator(".msg.mine .text")).to_have_text(["hello", "behind it"])
    assert stored(kefu, agent["kefu_id"]) == ["hello", "behind it"]

    shop.reload()
    widget = open_widget(shop)
    expect(widget.locator(".msg.mine")).to_have_count(2)
    expect(widget.locator(".msg", has_text="refuse me")).to_have_count(0)


def test_the_box_holds_what_the_server_takes_counted_as_it_counts(kefu, host_site, new_page):
    agent = kefu.create_agent("ella")
    shop, widget = shop_with_widget(new_page, host_site, agent["kefu_id"])
    box, notice = widget.locator("textarea"), widget.locator("#visitor-notice")
    sent = functools.partial(stored, kefu, agent["kefu_id"])
    box_keeps_to_the_limit(shop, box, widget, notice, sent, LIMIT)
