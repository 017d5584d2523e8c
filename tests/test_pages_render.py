"""The rendering filters every bubble goes through: escaping and safe URLs."""

import pytest

from kefu.web.render import linkify, safe_url

pytestmark = pytest.mark.ignores_test_database


@pytest.mark.parametrize(
    "url",
    [
        "javascript:alert(1)",
        "JaVaScRiPt:alert(1)",
        " javascript:alert(1)",
        "data:text/html,x",
        "vbscript:x",
        "//evil.example/x.png",
        "/\\evil.example",
        "java\tscript:alert(1)",
        "http:/x",
        "file:///etc/passwd",
        None,
        42,
    ],
)
def test_dangerous_urls_are_refused(url):
    assert safe_url(url) is None


@pytest.mark.parametrize(
    "url", ["https://cdn.example/a.png", "http://x.example/", "/uploads/a.png"]
)
def test_http_and_local_urls_pass(url):
    assert safe_url(url) == url


def test_linkify_escapes_and_links_only_http():
    html = str(linkify("<b>hi</b> see https://ex.example/a?b=1&c=2. and javascript:alert(1)"))
    assert "<b>" not in html and "&lt;b&gt;" in html
    assert '<a href="https://ex.example/a?b=1&amp;c=2"' in html
    assert 'rel="noopener noreferrer nofollow"' in html
    assert "javascript:alert(1)" in html and 'href="javascript' not in html


def test_linkify_does_not_break_out_of_attributes():
    html = str(linkify('https://ex.example/"onmouseover="alert(1)'))
    assert 'onmouseover="' not in html


# -- the partials: who said it, which way the text runs, when (findings of a UI test) --
@pytest.fixture(scope="module")
def app(tmp_path_factory):
    from kefu import create_app

    return create_app({"DATABASE_URL": f"sqlite:///{tmp_path_factory.mktemp('r')}/k.db"})


def _message(sender_type=1, content="شكرا جزيلا!", message_type=1, file_url=None):
    from datetime import datetime

    from kefu.realtime.events import MessageView

    at = datetime(2026, 1, 2, 21, 4, 5)
    return MessageView(11, 4, 5, sender_type, 9, content, message_type, file_url, 0, None, at, at)


def test_a_bubble_says_who_wrote_it_and_when_and_runs_its_own_way(app):
    from kefu.web.render import partial

    mine = partial("parts/message.html", m=_message(sender_type=1), side=1)
    assert '<span class="said" data-said="You said:"></span>' in mine
    assert '<div class="text" dir="auto">شكرا جزيلا!</div>' in mine
    # The UTC instant for localtime.js; the UTC text and a UTC title without scripts.
    assert '<time datetime="2026-01-02T21:04:05+00:00" title="2026-01-02 21:04 UTC">21:04<' in mine
    to_agent = partial("parts/message.html", m=_message(sender_type=1), side=2)
    assert 'data-said="Customer said:"' in to_agent
    image = _message(sender_type=2, content="", message_type=2, file_url="/uploads/a.png")
    to_customer = partial("parts/message.html", m=image, side=1)
    assert 'data-said="Agent said:"' in to_customer
    assert 'alt="Image from the agent"' in to_customer
    assert 'alt="Image you sent"' in partial("parts/message.html", m=image, side=2)


def test_a_row_has_its_instant_rtl_names_and_reads_its_unread_count(app):
    from datetime import datetime

    from kefu.realtime.events import ConversationRef, Person
    from kefu.services.desk import Row
    from kefu.web.render import partial

    customer = Person(9, "u-9", "lena", "لينا", "")
    conv = ConversationRef(5, 1, customer, None, 3, None, 0, 3)
    row = Row(conv, _message(), None, datetime(2026, 1, 2, 21, 4, 5))
    html = partial("parts/conv_row.html", row=row)
    assert '<time datetime="2026-01-02T21:04:05+00:00"' in html
    assert '<b class="name" dir="auto">لينا</b>' in html
    assert '<span class="preview" dir="auto">شكرا جزيلا!</span>' in html
    assert '<span class="badge">3</span><span class="sr"> unread</span>' in html
    none_unread = partial("parts/unread.html", c=ConversationRef(5, 1, customer, None, 3, None))
    assert "unread</span>" not in none_unread and 'class="badge empty"' in none_unread


def test_the_agent_is_told_who_ended_it_and_keeps_the_reply_being_written(app):
    from kefu.realtime.events import ConversationRef
    from kefu.web.render import partial

    ended = ConversationRef(5, 2, None, "v_x", 3, None)
    by_customer = partial("parts/agent_footer.html", c=ended, ended_by=1)
    assert "The customer ended this conversation." in by_customer
    assert 'data-left-draft="/agent/c/5/send"' in by_customer  # filled in by composer.js
    assert "You ended this conversation." in partial("parts/agent_footer.html", c=ended, ended_by=2)
    assert "This conversation has ended." in partial("parts/agent_footer.html", c=ended)


def test_a_refused_page_is_shown_in_the_layout_and_a_refused_htmx_request_as_a_line(app):
    from kefu.web.render import error_response

    with app.test_request_context("/agent/c/5"):
        page, status = error_response("Conversation not found <x>", 404, "/agent", "Back")
    assert status == 404
    assert '<link rel="stylesheet" href="/static/kefu.css">' in page  # base.html
    assert "<h1>Not Found</h1>" in page and "Conversation not found &lt;x&gt;" in page
    assert '<a class="primary back-link" href="/agent">Back</a>' in page
    with app.test_request_context("/agent/c/5", headers={"HX-Request": "true"}):
        line, status = error_response("Conversation not found", 404, "/agent", "Back")
    assert (line, status) == ('<div class="flash">Conversation not found</div>', 404)


def test_a_text_that_is_only_a_link_to_an_image_upload_shows_the_picture(app, tmp_path):
    """A visitor's image travels as its link; the bubble shows the picture, loaded from
    this server, but only for an upload that exists: any other link loads nothing."""
    from kefu.web.render import partial

    app.config["UPLOAD_DIR"] = str(tmp_path)
    (tmp_path / "abc_123.png").write_bytes(b"\x89PNG")
    shown = partial(
        "parts/message.html",
        m=_message(content=" http://kefu.example/uploads/abc_123.png "),
        side=2,
    )
    assert '<img src="/uploads/abc_123.png"' in shown and 'class="text"' not in shown
    for content in (
        "http://kefu.example/uploads/missing.png",  # no such upload
        "https://tracker.example/uploads/missing.png",
        "see http://kefu.example/uploads/abc_123.png",  # not the whole message
    ):
        bubble = partial("parts/message.html", m=_message(content=content), side=2)
        assert "<img" not in bubble and 'class="text"' in bubble, content
