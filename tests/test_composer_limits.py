"""The message boxes take what the server accepts: every composer (the agent's reply box,
the user chat's, the visitor widget's) says ``maxlength`` = ``KEFU_MAX_CONTENT_CHARS``,
not a number of its own, checked on a live server with a limit other than the default."""

import re

from tests.test_pages_security import agent_session, live_socket, user_session

LIMIT = 1234  # not the default 5000
# The message box of a composer form: name="content" (a page's ended notice has another,
# read-only textarea for an unsent draft, without that name).
BOX = re.compile(r'<textarea name="content"[^>]*>')


def boxes(html: str) -> list[str]:
    """The ``maxlength`` of each message box the page draws."""
    found = BOX.findall(html)
    return [re.search(r'maxlength="([^"]*)"', box).group(1) for box in found]


def test_every_composer_takes_the_configured_content_limit(make_server):
    srv = make_server(max_content_chars=LIMIT)
    agent = srv.create_agent("mia", password="mia-pass-1")
    mia = agent_session(srv, "mia", "mia-pass-1")
    online = live_socket(srv, mia)  # her dashboard is open: she takes the next customer
    try:
        user = user_session(srv, "limits-1")
        assert boxes(user.get(srv.url("/chat")).text) == [str(LIMIT)]  # before any message
        # The limit is the server's: a box full to maxlength is taken, one more is not.
        form = {"content": "x" * LIMIT, "csrf_token": user.csrf}
        assert user.post(srv.url("/chat/send"), data=form).status_code in (200, 204)
        form["content"] += "x"
        too_long = user.post(srv.url("/chat/send"), data=form)
        assert too_long.status_code == 422, too_long.text
        assert f"max {LIMIT} characters" in too_long.text

        chat = user.get(srv.url("/chat")).text
        assert boxes(chat) == [str(LIMIT)]
        conv_id = int(re.search(r'id="thread-(\d+)"', chat).group(1))

        desk = mia.get(srv.url(f"/agent/c/{conv_id}"))
        assert desk.status_code == 200
        assert "data-composer" in desk.text
        assert boxes(desk.text) == [str(LIMIT)]
        swapped = mia.get(srv.url(f"/agent/c/{conv_id}"), headers={"HX-Request": "true"})
        assert boxes(swapped.text) == [str(LIMIT)]  # the thread htmx swaps in

        widget = srv.get(f"/visitor?kefu_id={agent['kefu_id']}")
        assert widget.status_code == 200
        assert 'id="composer"' in widget.text
        assert boxes(widget.text) == [str(LIMIT)]
    finally:
        online.close()
