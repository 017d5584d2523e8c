"""The pages' live channel survives a server restart: visible state, resync of the gap."""

from playwright.sync_api import expect

from tests.browser.conftest import open_widget, sign_in_agent, wait_live


def test_agent_page_reconnects_after_restart_and_fetches_missed(kefu, host_site, new_page):
    agent = kefu.create_agent("bob", password="bob-pass-1")
    desk = new_page()
    sign_in_agent(desk, kefu, "bob", "bob-pass-1")
    shop = new_page()
    shop.goto(host_site(agent["kefu_id"]))
    widget = open_widget(shop)
    widget.locator("textarea").fill("first")
    widget.locator("textarea").press("Enter")
    desk.locator("#open-list .conv-row").click()
    expect(desk.locator(".thread .msg")).to_have_count(1)
    expect(desk.locator("#open-list .conv-row")).to_have_count(1)

    kefu.stop()  # every socket drops; the page must say so
    expect(desk.locator("#conn-status")).to_be_visible(timeout=10000)
    expect(desk.locator("body")).to_have_attribute("data-live", "closed")
    kefu.start()

    # The visitor writes while the agent's page is still away (its retry is jittered).
    expect(widget.locator("body")).to_have_attribute("data-live", "open", timeout=25000)
    widget.locator("textarea").fill("sent while the agent was away")
    widget.locator("textarea").press("Enter")
    expect(widget.locator(".msg.mine")).to_have_count(2)

    wait_live(desk, timeout=25000)
    expect(desk.locator("#conn-status")).to_be_hidden()
    expect(desk.locator(".thread .msg")).to_have_count(2, timeout=10000)
    expect(desk.locator(".thread")).to_contain_text("while the agent was away")
    expect(desk.locator("#open-list .conv-row")).to_have_count(1)
