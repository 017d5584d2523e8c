"""The composer on a slow network: what is sent is what the box held at Enter, every
message is stored once and in order, and text typed meanwhile stays in the box."""

from playwright.sync_api import expect

from tests.browser.conftest import shop_with_widget, sign_in_agent, wait_live


def slow_network(page, latency_ms: int = 300) -> None:
    cdp = page.context.new_cdp_session(page)
    cdp.send("Network.enable")
    cdp.send(
        "Network.emulateNetworkConditions",
        {"offline": False, "latency": latency_ms, "downloadThroughput": -1, "uploadThroughput": -1},
    )


def answer_to(path: str, text: str):
    """The response to the POST that sent ``text``."""
    return lambda r: r.url.endswith(path) and text in (r.request.post_data or "")


def stored(kefu, conv_id: int) -> list[str]:
    rows = kefu.sql("SELECT content FROM message WHERE conversation_id = ? ORDER BY seq", conv_id)
    return [content for (content,) in rows]


def chatting(kefu, new_page, agent: str, customer: str, first: str):
    """An agent's dashboard open, and a customer's chat (phone-sized) whose first
    message ``first`` opened a conversation: (desk, chat, the chat's box, its id)."""
    kefu.create_agent(agent, password=f"{agent}-pass-1")
    desk = new_page()
    sign_in_agent(desk, kefu, agent, f"{agent}-pass-1")
    chat = new_page(width=390, height=780)
    chat.goto(kefu.url("/chat?token=" + kefu.host_jwt(customer.lower(), name=customer)))
    box = chat.locator("form[data-composer] textarea")
    box.fill(first)
    box.press("Enter")
    expect(chat.locator(".msg.mine")).to_have_count(1)
    wait_live(chat)
    return desk, chat, box, int(chat.locator("#conversation").get_attribute("data-conv"))


def send_two_then_type(box, one: str, two: str, draft: str) -> None:
    """Two messages, the second sent while the first is on its way; then a draft."""
    for text in (one, two):
        box.fill(text)
        box.press("Enter")
    box.press_sequentially(draft, delay=5)


def test_sends_while_one_is_in_flight_are_kept_in_order(kefu, new_page):
    desk, chat, box, conv_id = chatting(kefu, new_page, "kim", "Ivy", "first")

    # The user: two more messages while the first of them is on its way, then a draft.
    slow_network(chat)
    with chat.expect_response(answer_to("/chat/send", "third"), timeout=5000):
        send_two_then_type(box, "second", "third", "a draft")
    expect(chat.locator(".msg.mine .text")).to_have_text(["first", "second", "third"])
    expect(box).to_have_value("a draft")  # the answers did not empty the box
    assert stored(kefu, conv_id) == ["first", "second", "third"]

    # The agent, alike.
    desk.locator("#open-list .conv-row", has_text="Ivy").click()
    expect(desk.locator(".thread .msg")).to_have_count(3)
    slow_network(desk)
    reply = desk.locator("form[data-composer] textarea")
    with desk.expect_response(answer_to("/send", "moment"), timeout=5000):
        send_two_then_type(reply, "Let me check.", "One moment please.", "Found it")
    expect(chat.locator(".msg.theirs .text")).to_have_text(["Let me check.", "One moment please."])
    expect(reply).to_have_value("Found it")
    expect(desk.locator(".thread .msg")).to_have_count(5)
    assert stored(kefu, conv_id)[3:] == ["Let me check.", "One moment please."]


def test_a_send_whose_answer_was_lost_goes_again_and_is_stored_once(kefu, new_page):
    _, chat, box, conv_id = chatting(kefu, new_page, "lee", "Jo", "hello")
    lost = []

    # The message reaches the server, but its answer is lost on the way back (once).
    def lose_answer(route):
        if lost:
            route.continue_()
            return
        route.fetch()
        lost.append(route)
        route.abort()

    chat.route("**/chat/send", lose_answer)
    with chat.expect_response(answer_to("/chat/send", "go"), timeout=10000):
        box.fill("did it go?")
        box.press("Enter")
        expect(chat.locator("#toasts")).to_contain_text("Not connected")
        expect(chat.locator(".msg.pending")).to_contain_text("did it go?")
        expect(box).to_have_value("")  # free for the next one
    expect(chat.locator(".msg.pending")).to_have_count(0)
    assert stored(kefu, conv_id) == ["hello", "did it go?"]  # sent again, same op_id: once
    expect(chat.locator(".msg.mine .text")).to_have_text(["hello", "did it go?"])


def test_a_draft_stays_with_its_conversation_and_a_lost_send_goes_again(kefu, new_page):
    desk, _, _, uma = chatting(kefu, new_page, "max", "Uma", "hi from Uma")
    vic = new_page(width=390, height=780)
    vic.goto(kefu.url("/chat?token=" + kefu.host_jwt("vic", name="Vic")))
    vic.locator("form[data-composer] textarea").fill("hi from Vic")
    vic.locator("form[data-composer] textarea").press("Enter")
    expect(desk.locator("#open-list .conv-row")).to_have_count(2)
    reply = desk.locator("form[data-composer] textarea")

    def show(name: str) -> None:
        desk.locator("#open-list .conv-row", has_text=name).click()
        expect(desk.locator(".thread")).to_contain_text(f"hi from {name}")

    # A draft waits in its conversation while the agent answers another.
    show("Uma")
    reply.fill("half a thought")
    show("Vic")
    expect(reply).to_have_value("")
    show("Uma")
    expect(reply).to_have_value("half a thought")

    # A send still on its way when the agent opens another conversation, whose answer
    # is then lost although the server stored it: it goes again by itself, with the same
    # op_id, and is stored once.
    held = []
    desk.route(f"**/agent/c/{uma}/send", lambda route: held.append(route))
    reply.fill("are you there?")
    reply.press("Enter")
    show("Vic")
    for _ in range(100):
        if held:
            break
        desk.wait_for_timeout(50)
    held[0].fetch()
    with desk.expect_response(answer_to("/send", "there"), timeout=10000):
        held[0].abort()
        desk.unroute(f"**/agent/c/{uma}/send")
        expect(desk.locator("#toasts")).to_contain_text("sent when the connection is back")
    show("Uma")
    expect(reply).to_have_value("")
    expect(desk.locator(".thread .msg", has_text="are you there?")).to_have_count(1)
    assert stored(kefu, uma) == ["hi from Uma", "are you there?"]


def test_messages_written_while_the_server_is_unreachable_go_in_order(kefu, new_page):
    """Each one written while sends fail shows at once as "Sending…" and leaves the box
    empty for the next (handed back, the next one typed ran into it: one message); when
    the server answers again they are stored in order, each once."""
    _, chat, _, conv_id = chatting(kefu, new_page, "nia", "Oli", "hello")
    down = {"now": True}
    chat.route("**/chat/send", lambda route: route.abort() if down["now"] else route.continue_())
    box = chat.locator("form[data-composer] textarea")
    for text in ("offline one", "offline two"):
        box.fill(text)
        box.press("Enter")
        expect(box).to_have_value("")
    pending = chat.locator(".thread .msg.pending")
    expect(pending).to_have_count(2)
    expect(pending.first).to_contain_text("Sending")
    assert stored(kefu, conv_id) == ["hello"]

    down["now"] = False
    expect(pending).to_have_count(0, timeout=10000)
    assert stored(kefu, conv_id) == ["hello", "offline one", "offline two"]
    expect(chat.locator(".thread .msg.mine:not(.pending)")).to_have_count(3)


SAFARI_IME_ENTER = """box => {
    // Safari's order: the composition ends first, then Enter's keydown, marked only by
    // keyCode 229 (Chrome's comes before the end, with isComposing).
    box.dispatchEvent(new CompositionEvent("compositionstart", {bubbles: true}));
    box.value = "你好";
    box.dispatchEvent(new InputEvent("input", {bubbles: true}));
    box.dispatchEvent(new CompositionEvent("compositionend", {bubbles: true, data: "你好"}));
    box.dispatchEvent(new KeyboardEvent("keydown", {key: "Enter", keyCode: 229, bubbles: true}));
}"""


def test_enter_that_picks_an_input_method_candidate_sends_nothing(kefu, host_site, new_page):
    """Pressing Enter to pick a Chinese candidate in Safari sent the half-typed message,
    on all three composers: they checked only isComposing."""
    desk, chat, box, conv_id = chatting(kefu, new_page, "ime", "Lei", "first")
    _, widget = shop_with_widget(new_page, host_site, kefu.sql("SELECT id FROM agent")[0][0])
    widget.locator("textarea").fill("widget first")
    widget.locator("textarea").press("Enter")
    expect(widget.locator(".msg.mine")).to_have_count(1)
    desk.locator("#open-list .conv-row", has_text="Lei").click()
    desk_box = desk.locator("form[data-composer] textarea")
    for composer in (box, desk_box, widget.locator("textarea")):
        composer.evaluate(SAFARI_IME_ENTER)
        chat.wait_for_timeout(300)
        expect(composer).to_have_value("你好")  # still being written
    assert stored(kefu, conv_id) == ["first"]
    expect(widget.locator(".msg.mine")).to_have_count(1)
    box.press("Enter")  # a plain Enter still sends
    expect(chat.locator(".msg.mine")).to_have_count(2)
    assert stored(kefu, conv_id) == ["first", "你好"]
