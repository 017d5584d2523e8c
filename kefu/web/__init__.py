"""The server-rendered pages: agent dashboard, customer chat, visitor widget, uploads."""

from urllib.parse import parse_qsl

from flask import Request
from gunicorn.http.errors import NoMoreData, ParseException
from werkzeug.exceptions import BadRequest, HTTPException
from werkzeug.formparser import FormDataParser
from werkzeug.routing import IntegerConverter, WebsocketMismatch

from kefu.errors import ID_MAX
from kefu.web import render

# Pages are framed only by themselves; the visitor iframe by any site (it holds no
# session and no secret but the visitor's own id). Scripts only from this origin, so an
# injected <script> or on* attribute would not run even if escaping ever failed.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' https: http: data:; connect-src 'self' ws: wss:; object-src 'none'; "
    "base-uri 'none'; form-action 'self'; frame-ancestors {ancestors}"
)


def _security_headers(response):
    from flask import request

    if response.mimetype != "text/html" or "Content-Security-Policy" in response.headers:
        return response
    framable = request.path.startswith(("/visitor",))
    response.headers["Content-Security-Policy"] = CSP.format(
        ancestors="*" if framable else "'self'"
    )
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "same-origin"
    # Conversations are private: no browser (a shared desk's) or proxy cache keeps them.
    response.headers.setdefault("Cache-Control", "no-store")
    if not framable:
        response.headers["X-Frame-Options"] = "SAMEORIGIN"
    return response


class RowIdConverter(IntegerConverter):
    """``<row_id:…>``: digits naming a positive BIGINT. Werkzeug's ``int`` takes any
    number of digits, and one past 64 bits overflowed the database driver (a 500)."""

    def __init__(self, url_map):
        super().__init__(url_map, min=1, max=ID_MAX)


def init_app(app) -> None:
    from kefu.api import uploads
    from kefu.protocols import pages
    from kefu.web import agent, chat, visitor

    render.install(app)
    app.url_map.converters["row_id"] = RowIdConverter  # before the rules that use it
    for bp in (agent.bp, chat.bp, visitor.bp, pages.bp, uploads.bp):
        app.register_blueprint(bp)
    app.add_url_rule("/", "index", _to_the_dashboard)
    app.add_url_rule("/favicon.ico", "favicon", _favicon)
    app.request_class = KefuRequest
    app.after_request(_security_headers)
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(ParseException, _malformed_body)
    app.register_error_handler(NoMoreData, _malformed_body)


class StrictFormParser(FormDataParser):
    """Werkzeug keeps the bytes of a urlencoded form that are not UTF-8 as percent text
    (a message sent as ``content=%FF`` was stored as the three characters "%FF"), and
    silently reads raw ones as an empty form. Either is the client's 400, as a JSON body
    that is not UTF-8 is; the form is still read once, when a view asks for it."""

    def _parse_urlencoded(self, stream, mimetype, content_length, options):
        try:
            items = parse_qsl(stream.read().decode(), keep_blank_values=True, errors="strict")
        except UnicodeDecodeError:
            raise BadRequest("Form data is not valid UTF-8") from None
        return stream, self.cls(items), self.cls()


class KefuRequest(Request):
    form_data_parser_class = StrictFormParser


def _malformed_body(exc: Exception):
    """gunicorn raises while a view reads a body it cannot parse (a chunk size that is
    no number, a body cut short): the client's 400, saying so. It was an internal error,
    with a traceback in the log for every such request."""
    return _http_error(BadRequest(f"Malformed request body ({type(exc).__name__})"))


def _http_error(exc: HTTPException):
    """Every HTTP error (an unknown address, a refused form): in the API's envelope under
    /api/; elsewhere on the pages' error page, with the way back (it was Werkzeug's
    bare page)."""
    from flask import make_response, request

    from kefu import api

    if isinstance(exc, WebsocketMismatch):  # Werkzeug's text blames "the browser or proxy"
        exc.description = "This address takes WebSocket connections only"
    if request.path.startswith("/api/"):
        return api.http_error(exc)
    home = render.home_of(request.path)
    if exc.code is None or exc.code < 400:  # a routing redirect stays one
        return exc
    body, status = render.error_response(exc.description, exc.code, *home)
    response = make_response(body, status)
    werkzeugs = exc.get_response().headers  # what Werkzeug's own answer would have said
    for name in ("Allow", "Retry-After", "Sec-WebSocket-Version"):
        if name in werkzeugs:
            response.headers[name] = werkzeugs[name]
    return response


def _favicon():
    """Browsers ask for /favicon.ico wherever a page names no icon (an upload opened
    directly, a JSON answer): the pages' own icon, not a 404 in the log."""
    from flask import redirect

    return redirect("/static/favicon.svg", code=301)


def _to_the_dashboard():
    """The server's own address leads to the agents' dashboard (its sign-in when signed
    out): customers and visitors arrive through the host's links and the widget."""
    from flask import redirect, url_for

    return redirect(url_for("agent.dashboard"))
