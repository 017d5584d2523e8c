"""The widget's panel as a visitor meets it: ending a chat asks first, conversations are
set apart, the keyboard works, the host page's CSS stays out, and a wrong kefu id or an
absent agent is said plainly."""

import re

from playwright.sync_api import expect

from tests.browser.conftest import open_widget, shop_with_widget, sign_in_agent

BUBBLE = "#kefu-widget .bubble"
FRAME = "#kefu-widget iframe"


def conversations(kefu, kefu_id: int) -> list[tuple]:
    return kefu.sql("SELECT status FROM conversation WHERE kefu_id = ? ORDER BY id", kefu_id)


def test_end_chat_asks_first_and_conversations_are_set_apart(kefu, host_site, new_page):
    agent = kefu.create_agent("enzo")
    shop, widget = shop_with_widget(new_page, host_site, agent["kefu_id"])
    box = widget.locator("textarea")
    box.fill("first visit")
    box.press("Enter")
    expect(widget.locator(".msg.mine:not(.pending)")).to_have_count(1)

    dialog = widget.locator("#end-confirm")
    widget.locator("#end-chat").click()
    expect(dialog).to_be_visible()
    expect(dialog).to_contain_text("End this conversation?")
    expect(widget.locator("#end-keep")).to_be_focused()
    shop.keyboard.press("Escape")  # cancels the question, leaves the panel open
    expect(dialog).to_be_hidden()
    expect(shop.locator(FRAME)).to_be_visible()
    expect(widget.locator("#ended")).to_be_hidden()
    assert conversations(kefu, agent["kefu_id"]) == [(1,)]

    widget.locator("#end-chat").click()
    widget.locator("#end-keep").click()
    expect(dialog).to_be_hidden()
    assert conversations(kefu, agent["kefu_id"]) == [(1,)]

    widget.locator("#end-chat").click()
    widget.locator("#end-yes").click()
    expect(widget.locator("#ended")).to_be_visible()
    expect(widget.locator("#end-chat")).to_be_hidden()
    expect(widget.locator("#ended")).to_contain_text("has ended")

    box.fill("second visit")
    box.press("Enter")
    divider = widget.locator(".conv-divider")
    expect(divider).to_have_count(1)
    expect(divider).to_contain_text("Conversation ended")
    assert conversations(kefu, agent["kefu_id"]) == [(2,), (1,)]

    # A return visit shows both, set apart, in order.
    shop.reload()
    shop.locator(BUBBLE).click()
    widget = shop.frame_locator(FRAME)
    expect(widget.locator(".msg")).to_have_count(2)
    order = widget.locator(".thread > *").evaluate_all(
        "els => els.map(e => e.classList.contains('conv-divider') ? '|'"
        " : e.querySelector('.text').textContent)"
    )
    assert order == ["first visit", "|", "second visit"]


def test_the_widget_works_from_the_keyboard(kefu, host_site, new_page):
    agent = kefu.create_agent("kira")
    shop = new_page()
    choosers = []  # listening from the start: the chat's frame is intercepted as it attaches
    shop.on("filechooser", lambda chooser: choosers.append(chooser))
    shop.goto(host_site(agent["kefu_id"]))
    bubble = shop.locator(BUBBLE)
    bubble.focus()
    shop.keyboard.press("Enter")
    widget = shop.frame_locator(FRAME)
    box = widget.locator("textarea")
    expect(box).to_be_focused()  # opening puts the focus in the message box

    # The attach control is a button in the tab order; Enter opens the file chooser.
    shop.keyboard.press("Shift+Tab")
    attach = widget.locator("#attach-button")
    expect(attach).to_be_focused()
    for key in ("Enter", " "):
        attach.focus()
        count = len(choosers)
        shop.keyboard.press(key)
        for _ in range(50):
            if len(choosers) > count:
                break
            shop.wait_for_timeout(100)
        assert len(choosers) == count + 1, key

    box.focus()
    shop.keyboard.press("Escape")  # closes the panel, the focus back on the bubble
    expect(shop.locator(FRAME)).to_be_hidden()
    expect(bubble).to_be_focused()
    shop.keyboard.press("Enter")
    expect(box).to_be_focused()
    bubble.focus()
    shop.keyboard.press("Escape")  # on the bubble too
    expect(shop.locator(FRAME)).to_be_hidden()


def test_the_host_pages_css_does_not_reach_the_widget(kefu, host_site, new_page):
    agent = kefu.create_agent("hugo")
    shop = new_page()
    shop.goto(host_site(agent["kefu_id"]))
    shop.add_style_tag(
        content="div { border: 1px solid green; padding: 12px; }"
        " #kefu-widget { outline: 4px solid red !important; transform: scale(.5); }"
        " button, iframe { display: none !important; }"
    )
    host = shop.locator("#kefu-widget")
    style = host.evaluate(
        "el => { const s = getComputedStyle(el);"
        " return [s.borderTopStyle, s.paddingTop, s.outlineStyle, s.transform]; }"
    )
    assert style == ["none", "0px", "none", "none"]
    widget = open_widget(shop)
    expect(widget.locator("textarea")).to_be_visible()
    box = shop.locator(FRAME).bounding_box()
    assert box["width"] == 370 and box["height"] == 560


def test_a_wrong_kefu_id_says_so_in_the_panel(kefu, host_site, new_page):
    shop = new_page()
    shop.goto(host_site(987654))
    shop.locator(BUBBLE).click()
    widget = shop.frame_locator(FRAME)
    unavailable = widget.locator(".widget-unavailable")
    expect(unavailable).to_contain_text("this chat is not available")
    expect(unavailable).to_contain_text("Kefu not found")
    color = widget.locator(".chat-head").evaluate("el => getComputedStyle(el).backgroundColor")
    assert re.fullmatch(r"rgb\(37, 99, 235\)", color)  # styled like the chat


def test_the_header_says_when_the_agent_is_away(kefu, host_site, new_page):
    agent = kefu.create_agent("ada", password="ada-pass-1")
    shop = new_page()
    shop.goto(host_site(agent["kefu_id"]))
    status = open_widget(shop).locator("#visitor-status")
    expect(status).to_have_text("Away — we'll reply when we're back")  # not signed in
    desk = new_page()
    sign_in_agent(desk, kefu, "ada", "ada-pass-1")
    shop.reload()
    status = open_widget(shop).locator("#visitor-status")
    expect(status).to_have_text("Usually replies within minutes")
    desk.locator("#ready-switch button").click()  # Not ready: takes no new conversations
    expect(desk.locator("#ready-switch")).to_contain_text("Not ready")
    shop.reload()
    status = open_widget(shop).locator("#visitor-status")
    expect(status).to_have_text("Away — we'll reply when we're back")
