"""What the dashboard and /chat keep, and for whom: unsent messages over a reload, drafts
per person and nothing after sign-out, a send after the browser signed in again, a quiet
background "mark read", and the server's length limit counted as the server counts it."""

import functools
import re

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import box_keeps_to_the_limit, pages_server, sign_in_agent, wait_live
from tests.browser.test_pages_composer import chatting, stored
from tests.support import retire

LIMIT = 40  # KEFU_MAX_CONTENT_CHARS for this module: short texts reach it


@pytest.fixture(scope="module")
def kefu(tmp_path_factory):
    srv = pages_server(tmp_path_factory, "pages-keep", max_content_chars=LIMIT)
    yield srv
    retire(srv)


# What kefu keeps in the tab, and htmx's copies of whole pages (the other htmx key, the
# current path, is set again by every page that loads htmx).
KEPT = """() => Object.keys(sessionStorage).filter(k => /^kefu\\.|^htmx-history-cache$/.test(k))"""


def open_chat(page, kefu, sub: str) -> None:
    page.goto(kefu.url("/chat?token=" + kefu.host_jwt(sub, name=sub.title())))


def send(page, text: str) -> None:
    box = page.locator("form[data-composer] textarea")
    box.fill(text)
    box.press("Enter")


def test_messages_still_sending_go_after_a_reload_in_order_and_once(kefu, new_page):
    """The network is down (sends fail); two messages wait as "Sending…"; the page is
    reloaded: they are still there, and go when the server is reachable, in order. The
    first one's answer is lost once although the server stored it: the resend, with the
    same op_id, is not stored again."""
    _, chat, _, conv_id = chatting(kefu, new_page, "kai", "Pia", "hello")
    state = {"down": True, "lost": 0}

    def route(r):
        if state["down"]:
            r.abort()
        elif not state["lost"]:
            r.fetch()
            state["lost"] += 1
            r.abort()
        else:
            r.continue_()

    chat.route("**/chat/send", route)
    for text in ("kept one", "kept two"):
        send(chat, text)
    pending = chat.locator(".thread .msg.pending")
    expect(pending).to_have_count(2)

    chat.reload()
    expect(pending).to_have_count(2)
    expect(pending.locator(".text")).to_have_text(["kept one", "kept two"])
    assert stored(kefu, conv_id) == ["hello"]

    state["down"] = False
    expect(pending).to_have_count(0, timeout=15000)
    assert state["lost"] == 1
    assert stored(kefu, conv_id) == ["hello", "kept one", "kept two"]
    expect(chat.locator(".thread .msg.mine .text")).to_have_text(["hello", "kept one", "kept two"])
    assert chat.evaluate(KEPT) == []  # nothing left to send


def test_drafts_are_each_persons_and_signing_out_leaves_none(kefu, new_page):
    desk, chat, box, _ = chatting(kefu, new_page, "ned", "Bob", "hi")
    box.fill("my card ends 4242")  # not sent

    # Another person's link in the same tab: not Bob's draft.
    open_chat(chat, kefu, "dave")
    expect(box).to_have_value("")
    open_chat(chat, kefu, "bob")
    expect(box).to_have_value("my card ends 4242")  # Bob's own, back

    chat.get_by_role("button", name="Sign out").click()
    expect(chat.locator("h1")).to_have_text("You have signed out")
    assert chat.evaluate(KEPT) == []
    open_chat(chat, kefu, "bob")
    expect(box).to_have_value("")

    # The agent: a draft and htmx's history cache (the desk's pages) go at sign-out too.
    desk.locator("#open-list .conv-row", has_text="Bob").click()
    expect(desk).to_have_url(re.compile(r"/agent/c/\d+$"))
    desk.locator("form[data-composer] textarea").fill("note to self")
    desk.wait_for_function("() => sessionStorage.getItem('htmx-history-cache')")
    desk.get_by_role("button", name="Sign out").click()
    expect(desk).to_have_url(re.compile(r"/agent/sign-in"))
    assert desk.evaluate(KEPT) == []


def test_a_chat_tab_sends_after_the_browser_signs_in_as_an_agent(kefu, new_page):
    """An agent's sign-in gives the session a new CSRF token: the user's open tab fetches
    its page again, takes the new one and sends (once)."""
    kefu.create_agent("ora", password="ora-pass-1")
    chat = new_page()
    open_chat(chat, kefu, "dora")
    send(chat, "before")
    expect(chat.locator(".msg.mine:not(.pending)")).to_have_count(1)
    conv_id = int(chat.locator("#conversation").get_attribute("data-conv"))

    sign_in_agent(chat.context.new_page(), kefu, "ora", "ora-pass-1")
    send(chat, "after the agent signed in")
    expect(chat.locator(".msg.mine:not(.pending)")).to_have_count(2)
    expect(chat.locator("form[data-composer] textarea")).to_have_value("")
    assert stored(kefu, conv_id) == ["before", "after the agent signed in"]
    send(chat, "and again")  # with the token it took
    expect(chat.locator(".msg.mine:not(.pending)")).to_have_count(3)


def test_a_chat_tab_of_someone_else_sends_nothing(kefu, new_page):
    """Another person signed in in another tab: this tab's send is not made as them; the
    text stays, and the notice says to reload."""
    chat = new_page()

    def keep_open(ws):
        # The close that reloads the tab when the browser signs in as someone else (1008)
        # does not reach it: the tab is still shown as Eve's when she sends.
        ws.connect_to_server().on_close(lambda code, reason: None)

    chat.route_web_socket(re.compile(r"/pages/ws"), keep_open)
    open_chat(chat, kefu, "eve")
    send(chat, "hi")
    expect(chat.locator(".msg.mine:not(.pending)")).to_have_count(1)

    open_chat(chat.context.new_page(), kefu, "fay")
    send(chat, "for eve only")
    expect(chat.locator("#toasts")).to_contain_text("signed in as someone else")
    expect(chat.locator("#toasts")).to_contain_text("reload")
    expect(chat.locator("form[data-composer] textarea")).to_have_value("for eve only")
    chat.wait_for_timeout(500)
    assert kefu.sql("SELECT count(*) FROM message WHERE content = 'for eve only'") == [(0,)]


def test_a_failed_mark_read_says_nothing_and_goes_again(kefu, new_page):
    kefu.create_agent("rex", password="rex-pass-1")
    desk = new_page()
    sign_in_agent(desk, kefu, "rex", "rex-pass-1")
    chat, sockets, reads, errors = new_page(), [], {"down": True, "tried": 0}, []
    chat.on("pageerror", lambda err: errors.append(str(err)))
    chat.route_web_socket(
        re.compile(r"/pages/ws"), lambda ws: sockets.append(ws) or ws.connect_to_server()
    )

    def read(route):
        reads["tried"] += 1
        if reads["down"]:
            route.abort()
        else:
            route.continue_()

    chat.route("**/chat/read", read)
    open_chat(chat, kefu, "gus")
    send(chat, "hello")
    expect(chat.locator(".msg.mine:not(.pending)")).to_have_count(1)
    wait_live(chat)
    conv_id = int(chat.locator("#conversation").get_attribute("data-conv"))

    desk.locator("#open-list .conv-row", has_text="Gus").click()
    send(desk, "hi Gus")
    expect(chat.locator(".msg.theirs")).to_have_count(1)
    for _ in range(40):
        if reads["tried"]:
            break
        chat.wait_for_timeout(50)
    assert reads["tried"]
    chat.wait_for_timeout(800)
    assert chat.locator("#toasts").inner_text() == ""  # (a toast would stay 5 s)
    assert errors == []
    assert kefu.sql("SELECT unread_count FROM conversation WHERE id = ?", conv_id) == [(1,)]

    # The live channel comes back: the read goes again.
    reads["down"] = False
    for ws in list(sockets):
        ws.close(code=1011, reason="gone")
    for _ in range(100):
        if kefu.sql("SELECT unread_count FROM conversation WHERE id = ?", conv_id) == [(0,)]:
            break
        chat.wait_for_timeout(100)
    assert kefu.sql("SELECT unread_count FROM conversation WHERE id = ?", conv_id) == [(0,)]
    assert errors == []


def test_the_box_holds_what_the_server_takes_counted_as_it_counts(kefu, new_page):
    """The limit counts characters: a full box with an emoji is taken whole; one over it
    is kept in the box, not cut, and not sent, with a note saying why."""
    _, chat, box, conv_id = chatting(kefu, new_page, "lim", "Lou", "hi")
    note = chat.locator("form[data-composer] .limit-note")
    box_keeps_to_the_limit(chat, box, chat, note, functools.partial(stored, kefu, conv_id), LIMIT)
    expect(note).to_be_hidden()


def test_a_chat_ended_while_the_user_types_keeps_the_text_and_the_focus(kefu, new_page):
    desk, chat, box, _ = chatting(kefu, new_page, "uli", "Vera", "hello")
    box.press_sequentially("half a messa", delay=5)
    desk.locator("#open-list .conv-row", has_text="Vera").click()
    desk.get_by_role("button", name="End", exact=True).click()

    expect(chat.locator("form[data-composer]")).to_have_count(0)
    left = chat.locator("[data-left-draft]")
    expect(left).to_be_visible()
    expect(left).to_contain_text("Your message was not sent")
    expect(left.locator("output")).to_have_text("half a messa")
    expect(chat.locator("[data-ended]")).to_be_focused()  # not <body>

    left.get_by_role("button", name="Discard").click()
    expect(left).to_be_hidden()
    chat.get_by_role("button", name="Start a new conversation").click()
    expect(chat.locator("form[data-composer] textarea")).to_have_value("")


def test_ending_a_conversation_from_the_keyboard_keeps_the_focus(kefu, new_page):
    desk, _, _, _ = chatting(kefu, new_page, "wyn", "Xia", "hello")
    desk.locator("#open-list .conv-row", has_text="Xia").click()
    end = desk.get_by_role("button", name="End", exact=True)
    end.focus()
    desk.keyboard.press("Enter")
    note = desk.locator(".conversation [data-ended]")
    expect(note).to_contain_text("You ended this conversation")
    expect(note).to_be_focused()
