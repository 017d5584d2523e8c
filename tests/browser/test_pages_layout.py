"""Layout: threads open and stay at the newest message; the dashboard's header fits."""

from playwright.sync_api import expect

from tests.browser.conftest import sign_in_agent, wait_live

# How far the thread is from its bottom (0: the newest message is in view).
FROM_BOTTOM = "t => t.scrollHeight - t.scrollTop - t.clientHeight"


def long_chat(kefu, new_page, sub: str, name: str):
    """A customer's /chat on a phone whose conversation holds 13 messages, more than the
    thread shows (12 of them sent over /ws): the page."""
    chat = new_page(width=375, height=700)
    chat.goto(kefu.url("/chat?token=" + kefu.host_jwt(sub, name=name)))
    chat.locator("textarea").fill("hi")
    chat.locator("textarea").press("Enter")
    expect(chat.locator(".msg.mine")).to_have_count(1)
    wait_live(chat)
    conv_id = int(chat.locator("#conversation").get_attribute("data-conv"))
    user = kefu.ws()
    login = user.request({"action": "login", "data": {"token": kefu.host_jwt(sub)}})
    assert login["success"] is True, login
    for n in range(12):
        data = {"conversation_id": conv_id, "content": f"{n} " + "x" * 400}
        sent = user.request({"action": "kefu_message_send", "op_id": f"long-{n}", "data": data})
        assert sent["success"], sent
    user.close()
    expect(chat.locator(".msg.mine")).to_have_count(13)
    return chat


def test_threads_show_the_newest_message(kefu, new_page):
    kefu.create_agent("mia", password="mia-pass-1")
    phone_desk = new_page(width=375, height=740)  # the list and the thread take turns
    sign_in_agent(phone_desk, kefu, "mia", "mia-pass-1")
    chat = long_chat(kefu, new_page, "shopper-11", "Kai")
    thread = chat.locator(".thread")
    assert thread.evaluate(FROM_BOTTOM) < 2

    # On a phone the thread is hidden until a conversation is opened: it still opens at
    # the newest message.
    phone_desk.locator("#open-list .conv-row").click()
    expect(phone_desk.locator(".thread .msg")).to_have_count(13)
    expect(phone_desk.locator(".thread")).to_be_visible()
    expect(phone_desk.locator(".conv-row.active")).to_have_count(1)  # tidied once settled
    assert phone_desk.locator(".thread").evaluate(FROM_BOTTOM) < 2

    # A reply taller than the "near the bottom" margin scrolls into view for a reader at
    # the bottom.
    reply = "Thanks for waiting.\nStep 1: open settings\nStep 2: tap Orders\n" * 3
    phone_desk.locator("form[data-composer] textarea").fill(reply.strip())
    phone_desk.locator("form[data-composer] textarea").press("Enter")
    expect(chat.locator(".msg.theirs")).to_have_count(1)
    assert chat.locator(".msg.theirs").evaluate("m => m.offsetHeight") > 120
    assert thread.evaluate(FROM_BOTTOM) < 2

    # A reader who scrolled up to read older messages is left where they are.
    thread.evaluate(
        "t => new Promise(done => { t.addEventListener('scroll', done, {once: true});"
        " t.scrollTop = 0; })"
    )
    phone_desk.locator("form[data-composer] textarea").fill("One more thing.")
    phone_desk.locator("form[data-composer] textarea").press("Enter")
    expect(chat.locator(".msg.theirs")).to_have_count(2)
    assert thread.evaluate("t => t.scrollTop") == 0


def test_a_long_agent_name_stops_before_sign_out(kefu, new_page):
    name = "nora_with_a_really_long_agent_username_here"
    kefu.create_agent(name, password="nora-pass-1")
    desk = new_page(width=1440, height=900)
    sign_in_agent(desk, kefu, name, "nora-pass-1")
    shown = desk.locator(".me-name b")
    sign_out = desk.locator(".sign-out button").bounding_box()
    assert shown.bounding_box()["x"] + shown.bounding_box()["width"] <= sign_out["x"]
    assert shown.evaluate("b => b.scrollWidth > b.clientWidth")  # cut, with an ellipsis
    expect(shown).to_have_css("text-overflow", "ellipsis")
    expect(shown).to_have_attribute("title", name)  # the whole name on hover


def tall_png(width: int = 40, height: int = 900) -> bytes:
    """A grey PNG taller than a phone's thread."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit greyscale
    rows = b"".join(b"\x00" + b"\x80" * width for _ in range(height))
    parts = (chunk(b"IHDR", header), chunk(b"IDAT", zlib.compress(rows)), chunk(b"IEND", b""))
    return b"\x89PNG\r\n\x1a\n" + b"".join(parts)


def test_a_picture_keeps_a_reader_at_the_newest_message(kefu, new_page, tmp_path):
    """The thread scrolled for the new message before its picture had a height: the
    picture was cut off below, by its height. A reader at the bottom stays there."""
    kefu.create_agent("pia", password="pia-pass-1")
    desk = new_page(width=1280, height=800)
    sign_in_agent(desk, kefu, "pia", "pia-pass-1")
    chat = long_chat(kefu, new_page, "shopper-12", "Ida")
    desk.locator("#open-list .conv-row").click()
    expect(desk.locator(".thread .msg")).to_have_count(13)
    expect(chat.locator(".thread .msg")).to_have_count(13)

    picture = tmp_path / "tall.png"
    picture.write_bytes(tall_png())
    chat.locator("input[data-upload]").set_input_files(str(picture))
    for page in (chat, desk):
        image = page.locator(".thread .msg img")
        expect(image).to_have_count(1)
        page.wait_for_function("i => i.complete && i.naturalHeight > 0", arg=image.element_handle())
        page.wait_for_timeout(100)  # (the load listener has run)
        assert page.locator(".thread").evaluate(FROM_BOTTOM) < 2
