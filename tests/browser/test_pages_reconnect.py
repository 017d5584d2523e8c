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


def test_a_page_back_on_its_socket_gets_what_it_missed_despite_its_own_send(kefu, new_page):
    """The hello asked for what came after the highest seq on the page. A message the user
    sent (over HTTP) while only the socket was down is shown with its seq, above the
    agent's reply from that gap, which then never arrived until a reload."""
    agent = kefu.create_agent("rita", password="rita-pass-1")
    desk = kefu.ws()
    assert desk.request({"action": "login", "data": {"token": agent["token"]}})["success"]
    chat, sockets = new_page(), {"blocked": False, "open": []}

    def route(ws):  # the page's live channel, cut and refused at will
        if sockets["blocked"]:
            ws.close(code=1011)
            return
        ws.connect_to_server()
        sockets["open"].append(ws)

    chat.route_web_socket("**/pages/ws?as=user", route)
    chat.goto(kefu.url("/chat?token=" + kefu.host_jwt("blip-user")))
    chat.locator("textarea").fill("hello")
    chat.locator("textarea").press("Enter")
    wait_live(chat)
    assigned = desk.recv_until(lambda f: f.get("action") == "kefu_conversation_assigned")
    expect(chat.locator("#chat-head")).to_contain_text("rita")

    sockets["blocked"] = True
    sockets["open"][-1].close(code=1011)
    expect(chat.locator("body")).to_have_attribute("data-live", "closed")
    data = {"conversation_id": assigned["conversation_id"], "content": "the agent's answer"}
    assert desk.request({"action": "kefu_message_send", "data": data})["success"]
    chat.locator("textarea").fill("and one more thing")
    chat.locator("textarea").press("Enter")
    expect(chat.locator(".msg.mine:not(.pending)")).to_have_count(2)  # stored over HTTP

    sockets["blocked"] = False
    wait_live(chat, timeout=20000)
    expect(chat.locator(".msg.theirs")).to_contain_text("the agent's answer")
    expect(chat.locator(".msg")).to_have_count(3)

    # A "Sending..." bubble carries a made-up seq above every stored one: it must not
    # count as seen either.
    chat.route("**/chat/send", lambda route: route.abort())
    sockets["blocked"] = True
    sockets["open"][-1].close(code=1011)
    expect(chat.locator("body")).to_have_attribute("data-live", "closed")
    chat.locator("textarea").fill("typed while cut off")
    chat.locator("textarea").press("Enter")
    expect(chat.locator(".msg.pending")).to_have_count(1)
    data["content"] = "the agent's second answer"
    assert desk.request({"action": "kefu_message_send", "data": data})["success"]
    sockets["blocked"] = False
    wait_live(chat, timeout=20000)
    expect(chat.locator(".msg.theirs").last).to_contain_text("second answer")
    chat.unroute("**/chat/send")
    expect(chat.locator(".msg.pending")).to_have_count(0, timeout=10000)  # sent on retry
    expect(chat.locator(".msg")).to_have_count(5)
    desk.close()
