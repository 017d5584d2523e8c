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
