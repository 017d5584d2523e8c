"""The whole desk in Chromium: an agent answers a visitor on another website."""

import re

from playwright.sync_api import expect

from tests.browser.conftest import open_widget, shop_with_widget, sign_in_agent


def test_visitor_on_another_origin_chats_with_agent(kefu, host_site, new_page):
    agent = kefu.create_agent("alice", password="alice-pass-1")
    desk = new_page()
    sign_in_agent(desk, kefu, "alice", "alice-pass-1")
    expect(desk.locator("#ready-switch")).to_contain_text("Ready")

    shop = new_page()
    shop.goto(host_site(agent["kefu_id"]))
    assert shop.evaluate("location.hostname") == "localhost"  # kefu is on 127.0.0.1
    widget = open_widget(shop)
    expect(widget.locator("body")).to_have_class("visitor-page")  # not full-screen: no gap
    expect(widget.locator("#visitor-status")).to_have_text("Usually replies within minutes")
    widget.locator("textarea").fill("Hello, do you ship to Norway?")
    widget.locator("textarea").press("Enter")
    expect(widget.locator(".msg.mine")).to_contain_text("ship to Norway")

    # The agent sees it live: a new row with an unread badge and the preview.
    row = desk.locator("#open-list .conv-row")
    expect(row).to_have_count(1)
    expect(row).to_contain_text("ship to Norway")
    expect(row.locator(".badge")).to_have_text("1")
    row.click()
    expect(desk.locator(".thread .msg.theirs")).to_contain_text("ship to Norway")
    expect(row.locator(".badge")).to_have_class("badge empty")  # read on view

    desk.locator("form[data-composer] textarea").fill("Yes, in 3 to 5 days.")
    desk.locator("form[data-composer] textarea").press("Enter")
    expect(desk.locator(".thread .msg.mine")).to_have_count(1)
    expect(widget.locator(".msg.theirs")).to_contain_text("3 to 5 days")

    # A second visitor message arrives while the agent is viewing it: no badge stays.
    widget.locator("textarea").fill("Great, thanks!")
    widget.locator("textarea").press("Enter")
    expect(desk.locator(".thread .msg.theirs")).to_have_count(2)
    expect(desk.locator(".thread .msg")).to_have_count(3)

    desk.locator("button.end").click()  # confirm() is accepted by the fixture
    # (the dashboard's wording is its own: "has ended", "You ended this conversation")
    expect(desk.locator("#main [data-ended]")).to_contain_text(re.compile(r"\bended\b"))
    expect(desk.locator("#ended-list .conv-row")).to_have_count(1)
    expect(desk.locator("#open-list .conv-row")).to_have_count(0)
    expect(widget.locator("#ended")).to_be_visible()
    expect(widget.locator("#ended")).to_contain_text("has ended")

    # A return visit (same browser storage) shows the history.
    shop.reload()
    shop.locator("#kefu-widget .bubble").click()
    widget = shop.frame_locator("#kefu-widget iframe")
    expect(widget.locator(".msg")).to_have_count(3)
    expect(widget.locator("#ended")).to_be_visible()


def test_visitor_sends_an_image_link(kefu, host_site, new_page, tmp_path):
    from tests.browser.test_pages_chat import PNG

    agent = kefu.create_agent("vic", password="vic-pass-1")
    desk = new_page()
    sign_in_agent(desk, kefu, "vic", "vic-pass-1")
    _, widget = shop_with_widget(new_page, host_site, agent["kefu_id"])
    image = tmp_path / "shot.png"
    image.write_bytes(PNG)
    widget.locator("#attach").set_input_files(str(image))
    # Sent as its link (the visitor send carries text only), shown as the picture to the
    # visitor and to the agent, loaded from kefu's upload path.
    picture = widget.locator(".msg.mine img")
    expect(picture).to_have_attribute("src", re.compile(r"^/uploads/[\w-]+\.png$"))
    expect(picture).to_have_js_property("complete", True)
    assert picture.evaluate("img => img.naturalWidth") > 0
    row = desk.locator("#open-list .conv-row")
    expect(row).to_contain_text("/uploads/")
    row.click()
    seen = desk.locator(".thread .msg.theirs img")
    expect(seen).to_have_attribute("src", picture.get_attribute("src"))
    expect(seen).to_have_js_property("complete", True)
    path = picture.get_attribute("src")  # the message itself is the link, as sent
    assert kefu.sql("SELECT content FROM message WHERE content LIKE ?", f"%{path}") == [
        (kefu.url(path),)
    ]


def test_widget_on_a_phone_can_be_closed(kefu, host_site, new_page):
    """Under 480 px the chat fills the screen; the bubble, now a close button in the top
    corner, stays above it and clear of the chat's own "End chat" button."""
    agent = kefu.create_agent("wes", password="wes-pass-1")
    shop, widget = shop_with_widget(new_page, host_site, agent["kefu_id"], width=375, height=700)
    panel = shop.locator("#kefu-widget iframe")
    expect(panel).to_have_class("panel open")
    widget.locator("textarea").fill("hi")
    widget.locator("textarea").press("Enter")
    end_chat = widget.locator("#end-chat")
    expect(end_chat).to_be_visible()
    expect(widget.locator("body")).to_have_class(re.compile(r"\bfull-screen\b"))
    close = shop.locator("#kefu-widget .bubble").bounding_box()
    end = end_chat.bounding_box()
    assert end["x"] + end["width"] <= close["x"]  # side by side, not one over the other

    shop.locator("#kefu-widget .bubble").click(timeout=3000)
    expect(panel).to_have_class("panel")
    expect(panel).to_be_hidden()


def test_a_visitor_id_in_a_link_is_taken_only_inside_the_loaders_frame(kefu, new_page):
    """A link to the chat page carrying someone else's visitor id, opened on its own, must
    not put the reader in that visitor's conversation (which its author can read)."""
    agent = kefu.create_agent("vera", password="vera-pass-1")
    planted = "v_" + "ab" * 16
    page = new_page()
    page.goto(kefu.url(f"/visitor?kefu_id={agent['kefu_id']}#vid={planted}"))
    expect(page.locator("body")).to_have_attribute("data-live", "open", timeout=10000)
    page.locator("textarea").fill("my address is 12 Elm St")
    page.locator("textarea").press("Enter")
    # The stored bubble, not the "Sending…" one shown at once: then the row is there.
    expect(page.locator(".msg.mine:not(.pending)")).to_contain_text("12 Elm St")
    keys = kefu.sql(
        "SELECT v.key FROM message m JOIN conversation c ON c.id = m.conversation_id"
        " JOIN visitor v ON v.id = c.visitor_id WHERE m.content = ?",
        "my address is 12 Elm St",
    )
    assert len(keys) == 1 and keys[0][0] != planted
