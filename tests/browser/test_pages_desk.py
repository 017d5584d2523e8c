"""The dashboard live: the list keeps a reload's order, a reply being written outlives the
conversation's end, the console stays quiet, and "Reconnecting…" covers nothing."""

from playwright.sync_api import expect

from tests.browser.conftest import sign_in_agent, wait_live


def customer(kefu, new_page, sub: str, name: str, first: str):
    chat = new_page(width=390, height=780)
    chat.goto(kefu.url("/chat?token=" + kefu.host_jwt(sub, name=name)))
    wait_live(chat)
    box = chat.locator("form[data-composer] textarea")
    box.fill(first)
    box.press("Enter")
    expect(chat.locator(".msg.mine")).to_have_count(1)
    return chat, box


def overlap(a: dict, b: dict) -> bool:
    return (
        a["x"] < b["x"] + b["width"]
        and b["x"] < a["x"] + a["width"]
        and a["y"] < b["y"] + b["height"]
        and b["y"] < a["y"] + a["height"]
    )


def trouble(page, found: list) -> None:
    """Console errors (htmx:oobErrorNoTarget, a missing favicon) and failed requests."""
    page.on("console", lambda m: m.type == "error" and found.append(m.text))
    page.on("response", lambda r: r.status >= 400 and found.append(f"{r.status} {r.url}"))


def test_a_conversation_handed_over_takes_its_place_and_nothing_is_logged(kefu, new_page):
    kefu.create_agent("quinn", password="quinn-pass-1")
    found = []
    desk = new_page()
    trouble(desk, found)
    sign_in_agent(desk, kefu, "quinn", "quinn-pass-1")
    ann, ann_box = customer(kefu, new_page, "shopper-ann", "Ann", "hello")
    trouble(ann, found)
    names = desk.locator("#open-list .conv-row .name")
    expect(names).to_have_text(["Ann"])

    desk.locator("#ready-switch button").click()  # not ready: Ben waits in the queue
    expect(desk.locator("#ready-switch button")).to_have_attribute("aria-checked", "false")
    ben, _ = customer(kefu, new_page, "shopper-ben", "Ben", "waiting since now")
    trouble(ben, found)
    expect(ben.locator("#chat-head")).to_contain_text("in the queue")
    ann_box.fill("a newer message")
    ann_box.press("Enter")
    expect(desk.locator("#open-list .conv-row", has_text="Ann")).to_contain_text("a newer")

    desk.locator("#ready-switch button").click()  # ready: Ben is handed over
    expect(ben.locator("#chat-head")).to_contain_text("is helping you")
    # Ben's last activity is older than Ann's: below her, as a reload orders them.
    expect(names).to_have_text(["Ann", "Ben"])
    desk.reload()
    expect(names).to_have_text(["Ann", "Ben"])
    wait_live(desk)
    assert found == []


def test_the_reply_being_written_outlives_the_end_and_reconnecting_covers_nothing(kefu, new_page):
    kefu.create_agent("pia", password="pia-pass-1")
    desk = new_page()
    sign_in_agent(desk, kefu, "pia", "pia-pass-1")
    chat, _ = customer(kefu, new_page, "shopper-ray", "Ray", "Can you refund order 7?")
    desk.locator("#open-list .conv-row", has_text="Ray").click()
    reply = desk.locator("form[data-composer] textarea")
    draft = "Sure, the refund for order 7 is on its way and"
    reply.fill(draft)

    # "Reconnecting…" sits in a strip of its own above the page: it covers no header.
    headers = {desk: [".me", ".switches", ".conv-head"], chat: [".chat-head", ".chat-sign-out"]}
    for page, parts in headers.items():
        page.evaluate("document.body.classList.add('offline')")
        strip = page.locator("#conn-status")
        expect(strip).to_be_visible()
        for part in parts:
            assert not overlap(strip.bounding_box(), page.locator(part).bounding_box()), part
        page.evaluate("document.body.classList.remove('offline')")

    chat.locator(".end-link button").click()  # the customer ends it (confirmed)
    note = desk.locator("[data-ended]")
    expect(note).to_contain_text("The customer ended this conversation.")
    left = desk.locator(".left-draft textarea")
    expect(left).to_be_visible()
    expect(left).to_have_value(draft)

    # Still there when the conversation is opened again, until discarded.
    desk.reload()
    expect(note).to_contain_text("This conversation has ended.")
    expect(left).to_have_value(draft)
    desk.locator("[data-discard-draft]").click()
    expect(left).to_be_hidden()
    desk.reload()
    expect(note).to_be_visible()
    expect(left).to_be_hidden()
