"""Accessibility, from a browser tester's findings: secondary text meets WCAG AA contrast,
every page has its landmarks and one h1, activity outside the open conversation is
told to a screen reader (the dashboard's live region, the widget bubble's label), and a
conversation opened from the keyboard on a phone takes the focus."""

from playwright.sync_api import expect

from tests.browser.conftest import shop_with_widget, sign_in_agent, wait_live

# The contrast ratio (WCAG 2) of an element's text with what is behind it: the colours
# of its nearest ancestors with a background, laid over white, and its own colour (with
# its alpha and opacity) laid over that.
CONTRAST = """el => {
  const parse = c => {
    const p = c.match(/rgba?\\(([^)]+)\\)/)[1].split(/[\\s,\\/]+/).filter(Boolean).map(Number);
    return [p[0], p[1], p[2], p.length > 3 ? p[3] : 1];
  };
  const over = (top, below) =>
    [0, 1, 2].map(i => top[i] * top[3] + below[i] * (1 - top[3])).concat([1]);
  const layers = [];
  for (let node = el; node && node.nodeType === 1; node = node.parentElement) {
    const bg = parse(getComputedStyle(node).backgroundColor);
    if (bg[3] > 0) layers.push(bg);
    if (bg[3] === 1) break;
  }
  let bg = [255, 255, 255, 1];
  for (let i = layers.length - 1; i >= 0; i--) bg = over(layers[i], bg);
  const style = getComputedStyle(el), fg0 = parse(style.color);
  const fg = over([fg0[0], fg0[1], fg0[2], fg0[3] * Number(style.opacity)], bg);
  const lum = c => {
    const [r, g, b] = c.slice(0, 3).map(v => {
      v /= 255;
      return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4);
    });
    return 0.2126 * r + 0.7152 * g + 0.0722 * b;
  };
  const [hi, lo] = [lum(fg), lum(bg)].sort((x, y) => y - x);
  return (hi + 0.05) / (lo + 0.05);
}"""


def assert_contrast(page, selectors: list, at_least: float = 4.5) -> None:
    low = {}
    for selector in selectors:
        element = page.locator(selector).first
        expect(element).to_be_visible()
        ratio = element.evaluate(CONTRAST)
        if ratio < at_least:
            low[selector] = round(ratio, 2)
    assert low == {}, f"contrast below {at_least}:1: {low}"


def visitor_says(kefu, kefu_id: int, visitor_id: str, text: str, op_id: str) -> None:
    """A visitor (over ds/kefu) writes to the agent ``kefu_id``: shown as "Visitor " and
    the id's last six characters."""
    visitor = kefu.ws()
    data = {"visitor_id": visitor_id, "kefu_id": kefu_id, "content": text}
    sent = visitor.request({"action": "kefu_message_visitor_send", "op_id": op_id, "data": data})
    visitor.close()
    assert sent["success"], sent


def test_secondary_text_meets_aa_contrast(kefu, new_page):
    agent = kefu.create_agent("cora", password="cora-pass-1")
    desk = new_page()
    sign_in_agent(desk, kefu, "cora", "cora-pass-1")
    assert_contrast(desk, ["#queue-badge", ".placeholder > p"])

    chat = new_page(390, 780)
    chat.goto(kefu.url("/chat?token=" + kefu.host_jwt("shopper-cc", name="Cleo")))
    wait_live(chat)
    assert_contrast(chat, [".thread .empty-hint"])
    chat.locator("form[data-composer] textarea").fill("hello")
    chat.locator("form[data-composer] textarea").press("Enter")
    expect(chat.locator(".msg.mine:not(.pending)")).to_have_count(1)
    assert_contrast(chat, [".msg time", ".end-link button"])

    desk.locator("#open-list .conv-row", has_text="Cleo").click()
    expect(desk.locator(".conv-row.active")).to_have_count(1)
    expect(desk.locator(".thread .msg")).to_have_count(1)
    assert_contrast(desk, [".msg time", ".conv-row.active time", ".conv-row.active .preview"])

    visitor = new_page(370, 560)
    visitor.goto(kefu.url(f"/visitor?kefu_id={agent['kefu_id']}"))
    wait_live(visitor)
    visitor.locator("textarea").fill("hi")
    visitor.locator("textarea").press("Enter")
    expect(visitor.locator(".msg.mine:not(.pending)")).to_have_count(1)
    assert_contrast(visitor, ["#visitor-status", ".msg time"])

    demo = new_page()
    demo.goto(kefu.url(f"/widget/demo?kefu_id={agent['kefu_id']}"))
    assert_contrast(demo, [".demo-page .lead"])
    error = new_page()
    error.goto(kefu.url("/agent/sign-in"))
    error.fill("input[name=username]", "cora")
    error.fill("input[name=password]", "not-her-password")
    error.click("button[type=submit]")
    assert_contrast(error, [".error"])


def test_landmarks_and_headings(kefu, new_page):
    agent = kefu.create_agent("lena", password="lena-pass-1")
    visitor_says(kefu, agent["kefu_id"], "v_a11y_land01", "hello", "land-1")
    desk = new_page()
    sign_in_agent(desk, kefu, "lena", "lena-pass-1")
    expect(desk.get_by_role("heading", level=1)).to_have_count(1)
    desk.locator("details.ended-box summary").click()
    navs = desk.get_by_role("navigation")
    expect(navs).to_have_count(2)
    expect(desk.get_by_role("navigation", name="Open conversations")).to_have_count(1)
    expect(desk.get_by_role("navigation", name="Ended conversations")).to_have_count(1)
    expect(desk.get_by_role("main")).to_have_count(1)

    chat = new_page(390, 780)
    chat.goto(kefu.url("/chat?token=" + kefu.host_jwt("shopper-land", name="Lu")))
    wait_live(chat)
    expect(chat.get_by_role("main")).to_have_count(1)
    expect(chat.get_by_role("main").get_by_role("heading", level=1)).to_have_count(1)
    expect(chat.get_by_role("main").locator("form[data-composer] textarea")).to_have_count(1)

    visitor = new_page(370, 560)
    visitor.goto(kefu.url(f"/visitor?kefu_id={agent['kefu_id']}"))
    wait_live(visitor)
    expect(visitor.get_by_role("main")).to_have_count(1)
    expect(visitor.get_by_role("main").locator("textarea")).to_have_count(1)
    # No request for /favicon.ico (a 404) from the pages outside the base template.
    expect(visitor.locator("link[rel=icon]")).to_have_count(1)
    visitor.goto(kefu.url("/visitor?kefu_id=424242"))
    expect(visitor.locator("link[rel=icon]")).to_have_count(1)


def test_activity_in_other_conversations_is_announced(kefu, new_page):
    agent = kefu.create_agent("nico", password="nico-pass-1")
    kefu_id = agent["kefu_id"]
    visitor_says(kefu, kefu_id, "v_a11y_ann001", "I am Ann", "ann-1")
    visitor_says(kefu, kefu_id, "v_a11y_bob001", "I am Bob", "bob-1")
    desk = new_page()
    sign_in_agent(desk, kefu, "nico", "nico-pass-1")
    news = desk.locator("#desk-news")
    expect(news).to_have_attribute("role", "status")
    desk.locator("#open-list .conv-row", has_text="Visitor ann001").click()
    expect(desk.locator(".thread .msg")).to_have_count(1)

    visitor_says(kefu, kefu_id, "v_a11y_bob001", "are you there?", "bob-2")
    expect(news).to_have_text("New message from Visitor bob001")
    visitor_says(kefu, kefu_id, "v_a11y_cat001", "hello", "cat-1")
    expect(news).to_have_text("New conversation from Visitor cat001")
    # The open conversation's own thread is a live region: its messages are not repeated.
    visitor_says(kefu, kefu_id, "v_a11y_ann001", "me again", "ann-2")
    expect(desk.locator(".thread .msg")).to_have_count(2)
    desk.wait_for_timeout(400)
    expect(news).to_have_text("New conversation from Visitor cat001")


def test_the_widget_bubble_says_a_message_came(kefu, host_site, new_page):
    agent = kefu.create_agent("wren")
    shop, widget = shop_with_widget(new_page, host_site, agent["kefu_id"])
    widget.locator("textarea").fill("hello?")
    widget.locator("textarea").press("Enter")
    expect(widget.locator(".msg.mine:not(.pending)")).to_have_count(1)
    bubble = shop.locator("#kefu-widget .bubble")
    bubble.click()  # closed
    expect(bubble).to_have_attribute("aria-expanded", "false")
    expect(bubble).to_have_attribute("aria-label", "Chat with us")

    desk = kefu.ws()
    assert desk.request({"action": "login", "data": {"token": agent["token"]}})["success"]
    [(conv_id,)] = kefu.sql("SELECT id FROM conversation WHERE kefu_id = ?", agent["kefu_id"])
    data = {"conversation_id": conv_id, "content": "Hi, how can I help?"}
    assert desk.request({"action": "kefu_message_send", "data": data})["success"]
    desk.close()
    expect(bubble).to_have_class("bubble unread")
    expect(bubble).to_have_attribute("aria-label", "Chat with us (new message)")
    expect(shop.locator("#kefu-widget [role=status]")).to_have_text("New message in the chat")

    bubble.click()  # read: the label is the plain one again
    expect(bubble).to_have_attribute("aria-expanded", "true")
    expect(bubble).to_have_attribute("aria-label", "Chat with us")
    expect(shop.locator("#kefu-widget [role=status]")).to_have_text("")


def test_a_conversation_opened_by_keyboard_on_a_phone_takes_the_focus(kefu, new_page):
    agent = kefu.create_agent("pell", password="pell-pass-1")
    visitor_says(kefu, agent["kefu_id"], "v_a11y_pho001", "hello from a phone", "pho-1")
    for width, height in ((320, 568), (1200, 800)):
        desk = new_page(width, height)
        sign_in_agent(desk, kefu, "pell", "pell-pass-1")
        row = desk.locator("#open-list .conv-row")
        row.focus()
        desk.keyboard.press("Enter")
        expect(desk.locator(".thread .msg")).to_have_count(1)
        expect(desk.locator(".conv-row.active")).to_have_count(1)  # settled
        if width < 720:
            # The list gave way: the conversation's heading has the focus, not <body>.
            expect(desk.locator("#conversation .conv-head h2")).to_be_focused()
        else:
            expect(row).to_be_focused()  # still shown: the row keeps it
