"""Keyboard and screen reader: the attach control takes Tab and Enter/Space, the Ready
switch keeps the focus, and messages, images and unread counts say what they are."""

import re

from playwright.sync_api import expect

from tests.browser.conftest import sign_in_agent, wait_live
from tests.browser.test_pages_chat import PNG

FOCUSED_ID = "() => document.activeElement && document.activeElement.id"


def tab_to_attach(page):
    """From the message box, Shift+Tab: the attach control, with a visible ring."""
    page.locator("form[data-composer] textarea").focus()
    page.keyboard.press("Shift+Tab")
    expect(page.locator("form[data-composer] input[data-upload]")).to_be_focused()
    ring = page.locator("form[data-composer] .attach").evaluate(
        "l => getComputedStyle(l).outlineStyle + ' ' + getComputedStyle(l).outlineWidth"
    )
    assert ring == "solid 2px", ring


def chooser_by_key(page, choosers: list, key: str):
    """The file chooser the key opens on the focused attach control."""
    count = len(choosers)
    page.keyboard.press(key)
    for _ in range(50):
        if len(choosers) > count:
            return choosers[-1]
        page.wait_for_timeout(100)
    raise AssertionError(f"{key} opened no file chooser")


def test_attach_by_keyboard_and_who_said_what(kefu, new_page, tmp_path):
    kefu.create_agent("kai", password="kai-pass-1")
    desk, chat = new_page(), new_page(390, 780)
    # Listening from the start: file choosers are intercepted once a listener is on.
    choosers = {desk: [], chat: []}
    for page, found in choosers.items():
        page.on("filechooser", lambda chooser, found=found: found.append(chooser))
    sign_in_agent(desk, kefu, "kai", "kai-pass-1")
    chat.goto(kefu.url("/chat?token=" + kefu.host_jwt("shopper-kb", name="Ana")))
    wait_live(chat)
    image = tmp_path / "photo.png"
    image.write_bytes(PNG)

    tab_to_attach(chat)
    chooser_by_key(chat, choosers[chat], "Enter").set_files(str(image))
    expect(chat.get_by_role("img", name="Image you sent")).to_have_count(1)

    row = desk.locator("#open-list .conv-row", has_text="Ana")
    # The count reads as such, not as a bare number run into the preview.
    expect(desk.get_by_role("link", name=re.compile(r"\[image\] 1 unread$"))).to_have_count(1)
    row.click()
    expect(desk.get_by_role("img", name="Image from the customer")).to_have_count(1)
    # Who said it, for a screen reader only (CSS content: not in the bubble's own text).
    message = desk.locator(".thread .msg")
    assert message.aria_snapshot().startswith('- text: "Customer said:"\n')
    assert "said" not in message.inner_text()
    tab_to_attach(desk)
    chooser_by_key(desk, choosers[desk], "Space")
    desk.keyboard.press("Tab")
    expect(desk.locator("form[data-composer] textarea")).to_be_focused()


def test_the_ready_switch_keeps_the_focus(kefu, new_page):
    kefu.create_agent("lin", password="lin-pass-1")
    desk = new_page()
    sign_in_agent(desk, kefu, "lin", "lin-pass-1")
    switch = desk.locator("#ready-switch button")
    expect(switch).to_have_attribute("aria-checked", "true")
    switch.focus()
    for key, state in (("Space", "false"), ("Enter", "true")):
        # The answer replaces the switch, and so does the push that tells every tab.
        desk.evaluate(
            "() => { window.pushed = new Promise(done => document.addEventListener("
            "'htmx:wsAfterMessage', e => String(e.detail.message).includes('ready-switch')"
            " && done())); }"
        )
        desk.keyboard.press(key)
        expect(switch).to_have_attribute("aria-checked", state)
        desk.evaluate("() => window.pushed")
        assert desk.evaluate(FOCUSED_ID) == "ready-toggle"
        desk.wait_for_timeout(200)  # whichever came last, the focus is still there
        assert desk.evaluate(FOCUSED_ID) == "ready-toggle"
