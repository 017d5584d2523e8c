"""The pages' live channel survives a server restart: visible state, resync of the gap, and
the page as it was (scroll position, focus, a reply being typed)."""

from playwright.sync_api import expect

from tests.browser.conftest import shop_with_widget, sign_in_agent, wait_live


def test_agent_page_reconnects_after_restart_and_fetches_missed(kefu, host_site, new_page):
    agent = kefu.create_agent("bob", password="bob-pass-1")
    desk = new_page()
    sign_in_agent(desk, kefu, "bob", "bob-pass-1")
    shop, widget = shop_with_widget(new_page, host_site, agent["kefu_id"])
    widget.locator("textarea").fill("first")
    widget.locator("textarea").press("Enter")
    desk.locator("#open-list .conv-row").click()
    expect(desk.locator(".thread .msg")).to_have_count(1)
    expect(desk.locator("#open-list .conv-row")).to_have_count(1)
    # A thread long enough to scroll, read at its newest message, and a reply half typed.
    visitor = kefu.ws()
    visitor_id = shop.evaluate("localStorage.getItem('kefu.visitor_id')")
    for n in range(20):
        data = {"visitor_id": visitor_id, "kefu_id": agent["kefu_id"], "content": f"line {n}"}
        sent = visitor.request(
            {"action": "kefu_message_visitor_send", "op_id": f"l{n}", "data": data}
        )
        assert sent["success"], sent
    visitor.close()
    expect(desk.locator(".thread .msg")).to_have_count(21)
    desk.locator("form[data-composer] textarea").fill("Let me look that up")
    thread = desk.locator(".thread")
    assert thread.evaluate("t => t.scrollHeight - t.clientHeight") > 200

    kefu.stop()  # every socket drops; the page must say so
    expect(desk.locator("#conn-status")).to_be_visible(timeout=10000)
    expect(desk.locator("body")).to_have_attribute("data-live", "closed")
    kefu.start()

    # The visitor writes while the agent's page is still away (its retry is jittered).
    expect(widget.locator("body")).to_have_attribute("data-live", "open", timeout=25000)
    widget.locator("textarea").fill("sent while the agent was away")
    widget.locator("textarea").press("Enter")
    expect(widget.locator(".msg.mine")).to_have_count(22)

    wait_live(desk, timeout=25000)
    expect(desk.locator("#conn-status")).to_be_hidden()
    expect(desk.locator(".thread .msg")).to_have_count(22, timeout=10000)
    expect(desk.locator(".thread")).to_contain_text("while the agent was away")
    expect(desk.locator("#open-list .conv-row")).to_have_count(1)
    # The page was left as it was: still at the newest message (the one it missed is in
    # view), the reply still being typed, with the keyboard still in it.
    assert thread.evaluate("t => t.scrollHeight - t.scrollTop - t.clientHeight") < 2
    reply = desk.locator("form[data-composer] textarea")
    expect(reply).to_have_value("Let me look that up")
    expect(reply).to_be_focused()
