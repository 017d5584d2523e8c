"""kefu: a self-hosted customer-service (live chat) server."""


def create_app(config: dict | None = None):
    """Build the Flask app. ``config`` overrides settings read from the environment."""
    from flask import Flask

    app = Flask(__name__, template_folder="../templates", static_folder="../static")
    _configure(app, config)
    _start_services(app)
    _register_routes(app)
    return app


def _configure(app, config: dict | None) -> None:
    """The settings, checked; JSON as the guides write it; the proxies in front."""
    from kefu.config import SettingsError, from_environment
    from kefu.deployment import deployment_problem

    app.config.update(from_environment())
    app.config.update(config or {})
    settings = app.config
    # This process is one worker: gunicorn's master checks the count it forks (-w too).
    problem = deployment_problem(
        settings["BROKER"], 1, settings["DATABASE_URL"], settings["DB_POOL_SIZE"]
    )
    if problem:  # e.g. KEFU_BROKER=postgres on SQLite/MySQL: refuse to start (docs/deployment.md)
        raise SettingsError(problem)
    if settings.get("MAX_CONTENT_LENGTH") is None:
        # No request but an upload needs more (a page's send is 5,000 characters; the
        # upload route sets its own cap): a bigger body is refused before it is read,
        # rather than spooled to disk in full before a CSRF or sign-in check refuses it.
        settings["MAX_CONTENT_LENGTH"] = 1024 * 1024
    app.json.sort_keys = False  # keep the guide's field order
    app.json.ensure_ascii = False
    if settings["PROXY_COUNT"]:
        # Behind nginx every request comes from 127.0.0.1: the limits per client address
        # (sign-in, new visitors) would count everyone together.
        from werkzeug.middleware.proxy_fix import ProxyFix

        count = settings["PROXY_COUNT"]
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=count, x_proto=count)


def _start_services(app) -> None:
    """The database, the socket transport, the live hub and the services' limits."""
    from kefu import db, groupcommit
    from kefu.realtime import live, transport
    from kefu.services import message_rules

    db.init_app(app)
    transport.install(app)
    live.init_app(app)
    message_rules.configure(app.config["MAX_CONTENT_CHARS"], app.config["PAGE_SIZE_MAX"])
    groupcommit.configure(app.config["GROUP_COMMIT_GAP_MS"] / 1000)


def _register_routes(app) -> None:
    """The REST API, both socket protocols, the pages, the CLI and ``/healthz``."""
    from kefu import api, cli, db, web
    from kefu.protocols import dskefu, waiter
    from kefu.realtime import transport

    api.init_app(app)
    app.register_blueprint(dskefu.bp)
    app.register_blueprint(waiter.bp)
    if app.config["ECHO_ENDPOINT"]:  # conformance runs only (tests/autobahn)
        from kefu.protocols import echo

        app.register_blueprint(echo.bp)
    web.init_app(app)  # pages, live channel for pages, uploads (issue 4)
    transport.sock.init_app(app)
    cli.init_app(app)
    app.after_request(_retry_after_when_busy)

    @app.get("/healthz")
    def healthz():
        """For a load balancer: 503 when this worker cannot reach its database (every
        request it took would fail), with the reason."""
        problem = db.unreachable()
        health = {
            "ok": problem is None,
            "connections": app.extensions["kefu.live"].hub.connection_count(),
        }
        if problem:
            return {**health, "database": problem}, 503
        return health


def _retry_after_when_busy(response):
    """A 503 (``Busy``: no database connection came free) tells clients when to retry."""
    if response.status_code == 503:
        response.headers.setdefault("Retry-After", "1")
    return response
