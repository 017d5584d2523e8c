"""Regenerate docs/img/*.png: ``.venv/bin/python -m tests.browser.make_screenshots``.

Starts a throwaway kefu, fills it with a small believable desk through the real pages
and protocols, and photographs the three pages in Debian's Chromium.
"""

import sys
import tempfile
from pathlib import Path

from playwright.sync_api import expect, sync_playwright

from tests.browser.conftest import ARGS, CHROMIUM, sign_in_agent, wait_live
from tests.support import ROOT, Server

OUT = ROOT / "docs" / "img"


def chat_as(browser, kefu, sub, name, lines, width=1100, height=760):
    page = browser.new_context(viewport={"width": width, "height": height}).new_page()
    page.goto(kefu.url("/chat?token=" + kefu.host_jwt(sub, name=name)))
    wait_live(page)
    for line in lines:
        page.locator("textarea").fill(line)
        page.locator("textarea").press("Enter")
        expect(page.locator(".msg.mine").last).to_contain_text(line[:10])
    return page


def visitor_says(kefu, kefu_id, visitor_id, text):
    ws = kefu.ws()
    ws.request(
        {
            "action": "kefu_message_visitor_send",
            "data": {"visitor_id": visitor_id, "kefu_id": kefu_id, "content": text},
        }
    )
    ws.close()


def reply(desk, name, text):
    row = desk.locator("#open-list .conv-row", has_text=name)
    row.click()
    conv_id = row.get_attribute("data-conv")
    expect(desk.locator("#conversation")).to_have_attribute("data-conv", conv_id)
    desk.locator("form[data-composer] textarea").fill(text)
    desk.locator("form[data-composer] textarea").press("Enter")
    expect(desk.locator(".thread .msg.mine").last).to_contain_text(text[:10])


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    kefu = Server(Path(tempfile.mkdtemp()) / "shots").start()
    try:
        agent = kefu.create_agent("mei", password="mei-pass-1")
        kefu.cli("kefu", "create-agent", "tom", "--nickname", "Tom")
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            desk = browser.new_context(viewport={"width": 1280, "height": 800}).new_page()
            desk.on("dialog", lambda d: d.accept())
            sign_in_agent(desk, kefu, "mei", "mei-pass-1")
            first = chat_as(
                browser,
                kefu,
                "u-1",
                "Lena Fischer",
                ["Hi! My order #48213 says delivered but nothing arrived."],
            )
            reply(desk, "Lena Fischer", "Sorry about that, Lena. Let me check with the courier.")
            first.locator("textarea").fill("Thanks! It was supposed to come on Monday.")
            first.locator("textarea").press("Enter")
            done = chat_as(browser, kefu, "u-3", "Ravi Patel", ["Can I change my address?"])
            reply(desk, "Ravi Patel", "Done, the new address is saved.")
            desk.locator("button.end").click()
            done.locator(".rate button[value='5']").click()
            chat_as(browser, kefu, "u-2", "Noah Kim", ["Do you have the trail shoes in size 44?"])
            kid = agent["kefu_id"]
            visitor_says(kefu, kid, "v_" + "7" * 32, "Is there a discount for students?")
            expect(done.locator(".thanks")).to_be_visible()
            desk.reload()  # ratings are read when the page loads
            wait_live(desk)
            desk.locator("#open-list .conv-row", has_text="Lena").click()
            expect(desk.locator(".thread .msg")).to_have_count(3)
            desk.locator("#ended-list").evaluate("e => e.closest('details').open = true")
            desk.mouse.move(0, 0)
            desk.screenshot(path=str(OUT / "agent-dashboard.png"))

            phone = browser.new_context(viewport={"width": 390, "height": 760}).new_page()
            phone.goto(kefu.url("/chat?token=" + kefu.host_jwt("u-1")))
            expect(phone.locator(".msg")).to_have_count(3)
            phone.screenshot(path=str(OUT / "user-chat.png"))

            host = browser.new_context(viewport={"width": 1100, "height": 760}).new_page()
            host.goto(kefu.url(f"/widget/demo?kefu_id={kid}"))
            host.locator("#kefu-widget .bubble").click()
            widget = host.frame_locator("#kefu-widget iframe")
            expect(widget.locator("body")).to_have_attribute("data-live", "open")
            widget.locator("textarea").fill("Hello! Do you ship to Norway?")
            widget.locator("textarea").press("Enter")
            reply(desk, "ship to Norway", "Yes, we do, in 3 to 5 working days.")
            expect(widget.locator(".msg.theirs")).to_have_count(1)
            host.screenshot(path=str(OUT / "visitor-widget.png"))
            browser.close()
    finally:
        kefu.stop()
    print("wrote", *sorted(p.name for p in OUT.glob("*.png")), file=sys.stderr)


if __name__ == "__main__":
    main()
