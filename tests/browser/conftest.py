"""Browser fixtures: Debian's Chromium (headless) driven by Playwright, a live kefu, and a
host website on another origin (``localhost`` vs kefu's ``127.0.0.1``: another site)."""

import functools
import http.server
import threading

import pytest

from tests.support import Server, free_port, retire

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture(scope="session")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield chromium
        chromium.close()


def pages_server(tmp_path_factory, name: str, **settings) -> Server:
    """A server for browser tests: uploads in its folder; pages tests seed conversations
    quickly through /ws, so the socket rate limit is high (it has tests of its own)."""
    workdir = tmp_path_factory.mktemp(name)
    settings = {"ws_rate_per_second": 1000, "ws_rate_burst": 1000, **settings}
    return Server(workdir, **settings).start()


@pytest.fixture(scope="module")
def kefu(tmp_path_factory):
    srv = pages_server(tmp_path_factory, "pages", visitor_messages_per_minute=100000)
    yield srv
    retire(srv)


@pytest.fixture
def new_page(browser):
    """Pages in separate contexts (separate cookies and storage: separate people)."""
    contexts = []

    def make(width: int = 1200, height: int = 800, **options):
        """``options`` for the context, e.g. ``timezone_id``, ``locale``."""
        context = browser.new_context(viewport={"width": width, "height": height}, **options)
        contexts.append(context)
        page = context.new_page()
        page.on("dialog", lambda dialog: dialog.accept())
        return page

    yield make
    for context in contexts:
        context.close()


@pytest.fixture(scope="module")
def host_site(tmp_path_factory, kefu):
    """A static page on http://localhost:<port>/ that embeds the widget from kefu."""
    root = tmp_path_factory.mktemp("host")
    port = free_port()
    handler = functools.partial(_QuietHandler, directory=str(root))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()

    def page_for(kefu_id: int) -> str:
        name = f"shop-{kefu_id}.html"
        (root / name).write_text(
            "<!doctype html><html><head><meta charset=utf-8><title>Shop</title></head>"
            "<body><h1>Another site</h1>"
            f'<script src="{kefu.url("/widget.js")}" data-kefu-id="{kefu_id}" async></script>'
            "</body></html>"
        )
        return f"http://localhost:{port}/{name}"

    yield page_for
    httpd.shutdown()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def sign_in_agent(page, kefu, username: str, password: str) -> None:
    page.goto(kefu.url("/agent/sign-in"))
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", password)
    page.click("button[type=submit]")
    page.wait_for_url(kefu.url("/agent"))
    wait_live(page)


def shop_with_widget(new_page, host_site, kefu_id: int, **size):
    """A host site's page (``size``: width, height) with the widget of ``kefu_id``
    open and live: (the page, the widget's frame)."""
    shop = new_page(**size)
    shop.goto(host_site(kefu_id))
    return shop, open_widget(shop)


def open_widget(host_page):
    """Open the visitor widget on a host page; returns its iframe once its socket is live."""
    host_page.locator("#kefu-widget .bubble").click()
    widget = host_page.frame_locator("#kefu-widget iframe")
    wait_live(widget)
    return widget


def wait_live(page, timeout: float = 10000) -> None:
    """The page's live channel is open (and has said hello)."""
    from playwright.sync_api import expect

    expect(page.locator("body")).to_have_attribute("data-live", "open", timeout=timeout)


def box_keeps_to_the_limit(page, box, thread, note, stored, limit: int) -> None:
    """A message box (the composer, the widget) under a limit of ``limit`` characters,
    counted as the server counts them: a full box with an emoji is sent whole; one over
    it is kept in the box, not cut and not sent, with ``note`` saying why, and sent once
    it is short enough. ``stored()``: the texts stored so far; ``thread`` holds the
    messages shown."""
    from playwright.sync_api import expect

    before = stored()
    mine = thread.locator(".msg.mine:not(.pending)")
    full = "x" * (limit - 1) + "😀"
    box.focus()
    page.keyboard.insert_text(full)  # as a paste
    expect(box).to_have_value(full)
    box.press("Enter")
    expect(mine).to_have_count(len(before) + 1)
    assert stored() == [*before, full]

    over = "y" * limit + "😀"
    page.keyboard.insert_text(over)
    expect(box).to_have_value(over)
    expect(note).to_be_visible()
    expect(note).to_contain_text(f"{limit + 1} characters, {limit} at most")
    expect(box).to_have_attribute("aria-invalid", "true")
    box.press("Enter")
    page.wait_for_timeout(500)
    expect(box).to_have_value(over)  # not sent, nothing lost
    expect(thread.locator(".msg.pending")).to_have_count(0)
    assert stored() == [*before, full]
    box.press("Backspace")
    expect(note).to_have_text("")
    box.press("Enter")
    expect(mine).to_have_count(len(before) + 2)
    assert stored() == [*before, full, "y" * limit]
