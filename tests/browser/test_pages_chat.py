"""A signed-in user chats with an agent on /chat; uploads; hostile content stays inert."""

import sqlite3

import requests
from playwright.sync_api import expect

from tests.browser.conftest import sign_in_agent, wait_live

PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360f8cfc0f01f0005000201e2a0c5b40000000049454e44ae426082"
)


def test_user_chats_with_agent_and_keeps_history(kefu, new_page):
    kefu.create_agent("carol", password="carol-pass-1")
    desk = new_page()
    sign_in_agent(desk, kefu, "carol", "carol-pass-1")

    chat = new_page(width=390, height=780)  # a phone
    chat.goto(kefu.url("/chat?token=" + kefu.host_jwt("shopper-1", name="Dana")))
    assert chat.url == kefu.url("/chat")  # the token does not stay in the address bar
    chat.locator("textarea").fill("Where is my order #1234?")
    chat.locator("textarea").press("Enter")
    expect(chat.locator(".msg.mine")).to_contain_text("order #1234")
    wait_live(chat)
    expect(chat.locator("#chat-head")).to_contain_text("carol")

    row = desk.locator("#open-list .conv-row", has_text="Dana")
    expect(row).to_contain_text("order #1234")
    row.click()
    desk.locator("form[data-composer] textarea").fill("It left the warehouse today.")
    desk.locator("form[data-composer] textarea").press("Enter")
    expect(chat.locator(".msg.theirs")).to_contain_text("left the warehouse")

    chat.reload()
    expect(chat.locator(".msg")).to_have_count(2)
    expect(chat.locator("#chat-head")).to_contain_text("carol")

    # The agent ends it; the user sees the end, rates it, and can start again.
    desk.locator("button.end").click()
    expect(chat.locator("[data-ended]")).to_contain_text("has ended")
    chat.locator(".rate button[value='5']").click()
    expect(chat.locator(".thanks")).to_contain_text("★★★★★")
    # The dashboard shows the rating at once (it took a reload): the note and the row.
    note = desk.locator("[data-ended]")
    expect(note).to_contain_text("You ended this conversation. Rated ★★★★★.")
    desk.locator("#ended-list").evaluate("e => e.closest('details').open = true")
    expect(desk.locator("#ended-list .conv-row", has_text="Dana")).to_contain_text("★★★★★")
    desk.reload()
    desk.locator("#ended-list").evaluate("e => e.closest('details').open = true")
    expect(desk.locator("#ended-list .conv-row", has_text="Dana")).to_contain_text("★★★★★")
    chat.locator("text=Start a new conversation").click()
    expect(chat.locator("form[data-composer]")).to_be_visible()


def test_upload_round_trip_and_hostile_content_is_inert(kefu, new_page, tmp_path):
    kefu.create_agent("dave", password="dave-pass-1")
    desk = new_page()
    sign_in_agent(desk, kefu, "dave", "dave-pass-1")
    chat = new_page()
    alerts = []
    chat.on("dialog", lambda d: (alerts.append(d.message), d.dismiss()))
    chat.goto(kefu.url("/chat?token=" + kefu.host_jwt("shopper-2", name="Eve <b>bold</b>")))
    hostile = (
        '<img src=x onerror="window.__xss=1"><script>window.__xss=2</script> javascript:alert(1)'
    )
    chat.locator("textarea").fill(hostile)
    chat.locator("textarea").press("Enter")
    expect(chat.locator(".msg.mine .text")).to_have_text(hostile)

    image = tmp_path / "photo.png"
    image.write_bytes(PNG)
    chat.locator("input[data-upload]").set_input_files(str(image))
    img = chat.locator(".msg.mine .bubble img")
    expect(img).to_have_count(1)
    src = img.get_attribute("src")
    assert src.startswith("/uploads/") and src.endswith(".png")
    served = requests.get(kefu.url(src), timeout=5)
    assert served.content == PNG
    assert served.headers["Content-Type"] == "image/png"
    assert served.headers["X-Content-Type-Options"] == "nosniff"

    row = desk.locator("#open-list .conv-row", has_text="Eve")
    expect(row).to_contain_text("[image]")
    row.click()
    expect(desk.locator(".thread .msg.theirs .bubble img")).to_have_count(1)
    expect(desk.locator(".thread .msg.theirs .text")).to_have_text(hostile)
    expect(desk.locator(".conv-head h2")).to_have_text("Eve <b>bold</b>")

    # A message with a javascript: URL written behind the services' back (an old row, a
    # bug elsewhere) still renders as no link and no image.
    with sqlite3.connect(str(kefu.workdir / "kefu.db")) as db:
        conv_id, seq = db.execute(
            "SELECT conversation_id, MAX(seq) FROM message GROUP BY conversation_id "
            "ORDER BY conversation_id DESC LIMIT 1"
        ).fetchone()
        db.execute(
            "INSERT INTO message (conversation_id, seq, sender_type, sender_id, content, "
            "message_type, file_url, is_read, sender_key, created_at, updated_at) VALUES "
            "(?, ?, 1, 0, 'see javascript:alert(2)', 2, 'javascript:alert(3)', 0, 'x:1', "
            "datetime('now'), datetime('now'))",
            (conv_id, seq + 1),
        )
    desk.reload()
    for page in (desk, chat):
        if page is chat:
            page.reload()
        expect(page.locator(".msg")).to_have_count(3)
        assert page.locator("[src^='javascript'], [href^='javascript']").count() == 0
        assert page.locator(".bubble a").count() == 1  # only the uploaded image's link
        assert page.evaluate("window.__xss") is None
        expect(page.locator(".msg").last).to_contain_text("attachment hidden")
    assert alerts == []


def test_waiting_user_sees_queue_position_then_agent(kefu, new_page):
    """No agent online: the user waits in the queue; an agent signing in takes it live."""
    kefu.create_agent("fay", password="fay-pass-1")
    chat = new_page(width=390, height=780)
    chat.goto(kefu.url("/chat?token=" + kefu.host_jwt("shopper-3", name="Gus")))
    chat.locator("textarea").fill("Anyone there?")
    chat.locator("textarea").press("Enter")
    expect(chat.locator("#chat-head")).to_contain_text("number 1 in the queue")
    wait_live(chat)

    desk = new_page()
    sign_in_agent(desk, kefu, "fay", "fay-pass-1")
    expect(chat.locator("#chat-head")).to_contain_text("is helping you")
    expect(desk.locator("#open-list .conv-row", has_text="Gus")).to_contain_text("Anyone")


def test_older_messages_load_on_demand(kefu, new_page):
    agent = kefu.create_agent("hal", password="hal-pass-1")
    desk = new_page()
    sign_in_agent(desk, kefu, "hal", "hal-pass-1")
    visitor = kefu.ws()
    for n in range(1, 46):
        reply = visitor.request(
            {
                "action": "kefu_message_visitor_send",
                "op_id": f"m{n}",
                "data": {
                    "visitor_id": "v_" + "4" * 32,
                    "kefu_id": agent["kefu_id"],
                    "content": f"line {n}",
                },
            }
        )
        assert reply["success"], reply
    visitor.close()
    desk.locator("#open-list .conv-row", has_text="line 45").click()
    expect(desk.locator(".thread .msg")).to_have_count(30)
    # A click that does not scroll first: scrolling the button into view takes the thread
    # to its top, which loads the page above by itself and replaces the button under the
    # click (a CI run's click waited 30 s for a button already gone).
    desk.locator("button.older").dispatch_event("click")
    expect(desk.locator(".thread .msg")).to_have_count(45)
    expect(desk.locator(".thread .msg").first).to_contain_text("line 1")
    expect(desk.locator("button.older")).to_have_count(0)


def test_a_second_chat_tab_follows_the_current_conversation(kefu, new_page):
    """A /chat tab loaded before the conversation started (or before a new one) shows
    it live, without a reload."""
    kefu.create_agent("ida", password="ida-pass-1")
    desk = new_page()
    sign_in_agent(desk, kefu, "ida", "ida-pass-1")
    tab1 = new_page(width=390, height=700)
    tab1.goto(kefu.url("/chat?token=" + kefu.host_jwt("shopper-12", name="Lou")))
    tab2 = tab1.context.new_page()  # the same person, another tab
    tab2.goto(kefu.url("/chat"))
    wait_live(tab1)
    wait_live(tab2)
    tab2.locator("textarea").fill("half a thought")  # typed before, kept

    tab1.locator("textarea").fill("hello from tab 1")
    tab1.locator("textarea").press("Enter")
    desk.locator("#open-list .conv-row", has_text="Lou").click()
    desk.locator("form[data-composer] textarea").fill("Hi, how can I help?")
    desk.locator("form[data-composer] textarea").press("Enter")
    expect(tab2.locator(".msg .text")).to_have_text(["hello from tab 1", "Hi, how can I help?"])
    expect(tab2.locator("#chat-head")).to_contain_text("is helping you")
    expect(tab2.locator("textarea")).to_have_value("half a thought")

    # The agent ends it; tab 1 starts a new one; tab 2 leaves the ended one for it.
    desk.locator("button.end").click()
    expect(tab2.locator("[data-ended]")).to_be_visible()
    expect(tab1.locator("[data-ended]")).to_be_visible()
    tab1.bring_to_front()  # clicks wait for animation frames, which hidden tabs lack
    tab1.locator("text=Start a new conversation").click()
    wait_live(tab1)
    tab1.locator("textarea").fill("another question")
    tab1.locator("textarea").press("Enter")
    # In front again: a hidden tab's timers are throttled, and on a loaded machine its
    # swaps once took longer than the wait (a user sees it when they look at it).
    tab2.bring_to_front()
    new_id = tab1.locator("#conversation").get_attribute("data-conv")
    expect(tab2.locator("#conversation")).to_have_attribute("data-conv", new_id)
    expect(tab2.locator(f'.msg[data-conv="{new_id}"] .text')).to_have_text(["another question"])
    expect(tab2.locator("[data-ended]")).to_have_count(0)
    expect(tab2.locator("form[data-composer]")).to_be_visible()
    # The ended conversation stays above the new one (one continuous chat).
    expect(tab2.locator(".msg .text")).to_have_text(
        ["hello from tab 1", "Hi, how can I help?", "another question"]
    )


def test_earlier_conversations_stay_above_a_new_one(kefu, new_page):
    """After "Start a new conversation" the customer still reads the ended one above it,
    past a divider, and its older pages still load."""
    chat = new_page(width=390, height=780)
    chat.goto(kefu.url("/chat?token=" + kefu.host_jwt("shopper-13", name="Ole")))
    wait_live(chat)
    box = chat.locator("form[data-composer] textarea")
    box.fill("first conversation 1")
    box.press("Enter")
    expect(chat.locator(".msg.mine")).to_have_count(1)
    first = int(chat.locator("#conversation").get_attribute("data-conv"))
    user = kefu.ws()
    assert user.request({"action": "login", "data": {"token": kefu.host_jwt("shopper-13")}})[
        "success"
    ]
    for n in range(2, 36):
        data = {"conversation_id": first, "content": f"first conversation {n}"}
        sent = user.request({"action": "kefu_message_send", "op_id": f"h{n}", "data": data})
        assert sent["success"], sent
    ended = user.request({"action": "kefu_message_end", "data": {"conversation_id": first}})
    assert ended["success"], ended
    user.close()
    expect(chat.locator("[data-ended]")).to_be_visible()

    chat.locator("text=Start a new conversation").click()
    expect(chat.locator("form[data-composer]")).to_be_visible()
    expect(chat.locator("#conversation")).not_to_have_attribute("data-conv", str(first))
    earlier = chat.locator(f'.thread .msg[data-conv="{first}"]')
    expect(earlier).to_have_count(30)  # its newest page, loaded as the new thread is empty
    expect(chat.locator(".conv-divider")).to_have_text("Conversation ended")
    expect(earlier.last).to_contain_text("first conversation 35")
    thread = chat.locator(".thread")
    assert thread.evaluate("t => t.scrollHeight - t.scrollTop - t.clientHeight") < 2
    box.fill("second conversation")
    box.press("Enter")
    order = ".thread > .msg .text, .thread > .conv-divider"
    expect(chat.locator(order).last).to_have_text("second conversation")
    expect(chat.locator(order).nth(-2)).to_have_text("Conversation ended")

    chat.locator("button.older").dispatch_event("click")  # no scroll: see the test above
    expect(earlier).to_have_count(35)
    expect(chat.locator("button.older")).to_have_count(0)
    texts = [*(f"first conversation {n}" for n in range(1, 36)), "Conversation ended"]
    expect(chat.locator(order)).to_have_text([*texts, "second conversation"])
    chat.reload()  # the same, loaded afresh
    expect(chat.locator(order)).to_have_count(32)
    expect(chat.locator(order).last).to_have_text("second conversation")


def test_a_new_conversation_opens_in_place_keeping_what_is_typed(kefu, new_page):
    """ "Start a new conversation" loaded the page again (HX-Refresh). The push of the
    new conversation's header had already brought its box in place, so a customer who
    began typing there had the page reloaded under the keyboard: keys pressed while it
    loaded went nowhere (a browser test lost a message so). It now loads in place."""
    kefu.create_agent("ria", password="ria-pass-1")
    desk = new_page()
    sign_in_agent(desk, kefu, "ria", "ria-pass-1")
    tab = new_page(width=390, height=700)
    tab.goto(kefu.url("/chat?token=" + kefu.host_jwt("racer-1", name="Rae")))
    wait_live(tab)
    tab.locator("textarea").fill("first")
    tab.locator("textarea").press("Enter")
    desk.locator("#open-list .conv-row", has_text="Rae").click()
    desk.locator("button.end").click()
    expect(tab.locator("[data-ended]")).to_be_visible()
    tab.evaluate("window.sameDocument = true")
    held = []  # the answer to /chat/new, held back until the new box is in use
    tab.route("**/chat/new", lambda route: held.append((route, route.fetch())))
    tab.locator("text=Start a new conversation").click()
    expect(tab.locator("#conversation")).not_to_have_attribute("data-conv", "1")
    tab.locator("textarea").press_sequentially("typed at o")
    route, answer = held[0]
    route.fulfill(response=answer)
    tab.locator("textarea").press_sequentially("nce")
    tab.wait_for_load_state()
    assert tab.evaluate("window.sameDocument === true")  # not loaded again
    expect(tab.locator("textarea")).to_have_value("typed at once")
    expect(tab.locator("textarea")).to_be_focused()
    tab.locator("textarea").press("Enter")
    expect(tab.locator(".msg:not(.pending) .text")).to_have_text(["first", "typed at once"])


def test_a_new_conversation_opens_in_place_with_no_live_channel(kefu, new_page):
    """The same when no push brings it (the live channel down): the answer to "Start a
    new conversation" asks the page to load it (HX-Trigger ``kefu-chat-changed``)."""
    token = kefu.host_jwt("offline-1", name="Oda")
    ended = kefu.get("/api/kefu/message/getConversation", token).json()["data"]["id"]
    ws = kefu.ws()
    assert ws.request({"action": "login", "data": {"token": token}})["success"]
    end = {"action": "kefu_message_end", "data": {"conversation_id": ended}}
    assert ws.request(end)["success"]
    tab = new_page(width=390, height=700)
    tab.route_web_socket("**/pages/ws*", lambda socket: None)  # open, and silent
    tab.goto(kefu.url("/chat?token=" + token))
    expect(tab.locator("#conversation")).to_have_attribute("data-conv", str(ended))
    tab.evaluate("window.sameDocument = true")
    tab.locator("text=Start a new conversation").click()
    expect(tab.locator("#conversation")).not_to_have_attribute("data-conv", str(ended))
    expect(tab.locator("#conversation form[data-composer] textarea")).to_be_visible()
    assert tab.evaluate("window.sameDocument === true")
