"""Configuration from the environment, with defaults that are safe on a laptop.

Every setting is read from a ``KEFU_*`` variable; ``create_app(config=...)`` can
override any of them (tests do). The README lists them all.
"""

import os
import secrets


class SettingsError(ValueError):
    """A setting, or a combination of them, the server cannot run with; its text names
    the variable. gunicorn and the CLI print it as one line and stop."""


INFINITY = float("inf")


def env_int(name: str, default: int, least: int = 0, most: float = INFINITY) -> int:
    return _number(name, default, int, "must be a whole number", least, most)


def env_float(name: str, default: float, least: float = 0, most: float = INFINITY) -> float:
    return _number(name, default, float, "must be a number", least, most)


def _number(name: str, default, kind, wanted: str, least, most):
    """A numeric setting from ``least`` to ``most``, or a ``SettingsError`` that names
    it. 0 is the floor where it means off or none (``KEFU_WS_PING_SECONDS``); elsewhere a
    0 started a server that nobody could use, so such settings pass a higher floor."""
    raw = os.environ.get(name)
    if raw is None:
        return default
    try:
        value = kind(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r}: {wanted}") from None
    # Written so that NaN fails it too; and no setting runs forever (inf).
    if not least <= value <= most or value == INFINITY:
        raise SettingsError(f"{name}={raw!r}: {wanted}, {_bounds(least, most)}")
    return value


def _bounds(least, most) -> str:
    return f"{least} or more" if most == INFINITY else f"from {least} to {most}"


# gunicorn's settings (and the stall monitor's), read through these functions by
# gunicorn.conf.py and kefu/realtime/stall.py, where the app's config is out of reach
# (the master reads them before any app exists, the bench's bare relay has none);
# from_environment only checks them, so that the CLI stops on a bad one like gunicorn.


def bind() -> str:
    """gunicorn's address. Empty (a blank line in an environment file) started a server
    that listened nowhere, and said nothing."""
    address = os.environ.get("KEFU_BIND", "127.0.0.1:8000")
    if not address.strip():
        raise SettingsError(f"KEFU_BIND={address!r}: must be an address, e.g. 127.0.0.1:8000")
    return address


# gunicorn's own names (it lowercases them); it took any other word for info, silently.
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")


def log_level() -> str:
    level = os.environ.get("KEFU_LOG_LEVEL", "info")
    if level.lower() not in LOG_LEVELS:
        raise SettingsError(f"KEFU_LOG_LEVEL={level!r}: must be one of {', '.join(LOG_LEVELS)}")
    return level


def workers() -> int:
    """gunicorn's worker count (``gunicorn -w`` overrides it); 0 was a master with no
    worker. More than one needs the postgres broker (``deployment_problem``)."""
    return env_int("KEFU_WORKERS", 1, least=1)


def stall_tick_ms() -> float:
    """The opt-in stall monitor's sleep (``KEFU_STALL_MONITOR=1``, bench/README.md)."""
    return env_float("KEFU_STALL_TICK_MS", 5.0, least=0.1, most=1000)


SERVER_SETTINGS = (bind, log_level, workers, stall_tick_ms)


def flag(name: str, default: bool = False) -> bool:
    """On for 1, true, yes or on (any case); off for anything else."""
    value = os.environ.get(name)
    if value is None:
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def _broker() -> str:
    return os.environ.get("KEFU_BROKER", "memory").strip().lower()


STRONG_KEY_BYTES = 32


def _secret_key() -> str:
    """KEFU_SECRET_KEY, or a random one: sessions then end with a restart. Several
    workers or hosts must share one (KEFU_BROKER=postgres): each made up its own, and
    an agent was signed out whenever a request reached another worker."""
    key = os.environ.get("KEFU_SECRET_KEY")
    if key:
        return key
    if _broker() == "postgres":
        raise SettingsError(
            "KEFU_BROKER=postgres needs KEFU_SECRET_KEY: every worker and host must sign "
            "session cookies with the same key"
        )
    return secrets.token_hex(32)


def from_environment() -> dict:
    """Read the app's settings once; values are plain Python objects. Sizes, counts and
    limits are at least 1 unless the comment gives 0 a meaning: at 0 they let nothing
    through (nobody could sign in, every message was too long)."""
    for check in SERVER_SETTINGS:  # gunicorn's: checked here, not kept (see above)
        check()
    return {
        **_database(),
        **_cluster(),
        **_sign_in(),
        **_sockets(),
        **_conversations(),
        **_abuse_limits(),
        **_pages(),
    }


def database_url() -> str:
    """Also read by ``python -m kefu.migrate``, which gunicorn's master runs."""
    return os.environ.get("KEFU_DATABASE_URL", "sqlite:///kefu.db")


def _database() -> dict:
    return {
        "DATABASE_URL": database_url(),
        # At most 100 per worker: PostgreSQL allows 100 connections by default, and a pool
        # past what the database takes fails with connection errors instead of waiting.
        "DB_POOL_SIZE": env_int("KEFU_DB_POOL_SIZE", 8, least=2, most=100),
        # How long a call waits for a pooled connection before "Server busy" (HTTP 503).
        "DB_POOL_WAIT_SECONDS": env_float("KEFU_DB_POOL_WAIT_SECONDS", 30.0),
        # SQLite under load: the least time between two group commits (more writes share
        # one). Each write may wait the whole gap: at most 100 ms (1e9 hung every write).
        "GROUP_COMMIT_GAP_MS": env_float("KEFU_GROUP_COMMIT_GAP_MS", 2.0, most=100),
        # SQLite under gevent: the log's length (pages of 4 KB) at which the checkpointer
        # catches up under the writer lock, so the next commit starts the log over. At
        # most 1 GiB of log: past it, a sustained load grows the log until the disk fills.
        "SQLITE_WAL_REWIND_PAGES": env_int("KEFU_SQLITE_WAL_REWIND_PAGES", 32768, most=262144),
    }


def _cluster() -> dict:
    """One worker, or several workers and hosts sharing one PostgreSQL database."""
    return {
        # memory: one worker, the hub in-process. postgres: N workers/hosts share one
        # PostgreSQL database (LISTEN/NOTIFY, presence in tables). docs/deployment.md.
        "BROKER": _broker(),
        # A worker that stops heart-beating stops counting as present after this long.
        # It beats every third of it: at least 1 s (0 beat the database in a loop), at
        # most 5 minutes (a dead worker's agents count as online that long, its customers
        # as present, and nothing is re-queued or ended for them).
        "PRESENCE_TTL_SECONDS": env_float("KEFU_PRESENCE_TTL_SECONDS", 15.0, least=1, most=300),
        # How long a message push may wait for its predecessor from another worker; at
        # most 10 s (a lost predecessor holds back every later push of the conversation).
        "BROKER_HOLD_SECONDS": env_float("KEFU_BROKER_HOLD_SECONDS", 1.0, most=10),
    }


def _sign_in() -> dict:
    """Keys, host JWTs, and how often open sockets are checked against their accounts."""
    return {
        "SECRET_KEY": _secret_key(),
        "JWT_SECRET": os.environ.get("KEFU_JWT_SECRET", ""),
        # Clock skew on a host JWT's exp: an expired token is taken this much longer. At
        # most 5 minutes (Kerberos's skew); a huge one made tokens never expire.
        "JWT_LEEWAY_SECONDS": env_int("KEFU_JWT_LEEWAY_SECONDS", 30, most=300),
        # At least 1 s: a socket must have time to sign in before it is closed.
        "WS_LOGIN_TIMEOUT_SECONDS": env_float("KEFU_WS_LOGIN_TIMEOUT_SECONDS", 30.0, least=1),
        # How often open sockets are checked against disabled accounts / changed passwords.
        # At least 0.1 s: 0 checked in a loop (an idle worker at 97% CPU); at most an hour
        # (a disabled account keeps its open sockets that long).
        "REVALIDATE_SECONDS": env_float("KEFU_REVALIDATE_SECONDS", 10.0, least=0.1, most=3600),
    }


def _sockets() -> dict:
    return {
        # Frames above this get a clear error reply and the socket stays open.
        "MAX_FRAME_BYTES": env_int("KEFU_MAX_FRAME_BYTES", 64 * 1024, least=1),
        # Frames above this are refused by the transport (close 1009); protects memory.
        "MAX_WS_MESSAGE_BYTES": env_int("KEFU_MAX_WS_MESSAGE_BYTES", 1024 * 1024, least=1),
        "WS_PING_SECONDS": env_float("KEFU_WS_PING_SECONDS", 25.0),
        "WS_DEFLATE": flag("KEFU_WS_DEFLATE", False),
        # /ws/echo for WebSocket conformance runs (tests/autobahn); never in production.
        "ECHO_ENDPOINT": flag("KEFU_ECHO_ENDPOINT", False),
        # Frames queued for one slow socket before it is dropped (it resyncs on reconnect).
        "WS_OUTBOX_LIMIT": env_int("KEFU_WS_OUTBOX_LIMIT", 1000, least=1),
        # Origins besides this host allowed to open the pages' cookie-authenticated socket.
        "WS_ALLOWED_ORIGINS": frozenset(
            o.strip().rstrip("/")
            for o in os.environ.get("KEFU_WS_ALLOWED_ORIGINS", "").split(",")
            if o.strip()
        ),
    }


def _conversations() -> dict:
    """Messages, agents' capacity, the queue, and who is let go when."""
    return {
        "MAX_CONTENT_CHARS": env_int("KEFU_MAX_CONTENT_CHARS", 5000, least=1),
        "PAGE_SIZE_MAX": env_int("KEFU_PAGE_SIZE_MAX", 100, least=1),
        # At most what an agent may take (routing.check_max_concurrent): beyond it, every
        # create-agent without --max-concurrent is refused.
        "DEFAULT_MAX_CONCURRENT": env_int("KEFU_DEFAULT_MAX_CONCURRENT", 5, least=1, most=1000),
        # An agent whose last socket dropped keeps its conversations this long; at most an
        # hour (its customers wait for it meanwhile).
        "AGENT_GRACE_SECONDS": env_float("KEFU_AGENT_GRACE_SECONDS", 60.0, most=3600),
        # A waiter-protocol user socket silent this long gets ``idle``; after the grace
        # it is disconnected (and its conversation ended if it has no other socket).
        # At least 1 s: at 0 every user socket was idle as soon as it opened.
        "USER_IDLE_SECONDS": env_float("KEFU_USER_IDLE_SECONDS", 600.0, least=1),
        "USER_IDLE_GRACE_SECONDS": env_float("KEFU_USER_IDLE_GRACE_SECONDS", 60.0),
        # An open conversation without a message this long, whose customer has no
        # socket open, is ended as if the customer had left (frees the agent); 0: never.
        # At most 30 days: a huge one fails every sweep (OverflowError on the cutoff date).
        "INACTIVE_END_SECONDS": env_float("KEFU_INACTIVE_END_SECONDS", 3600.0, most=2592000),
        # Queue positions go out at most this often (the latest place, read fresh); at
        # most 10 s (with a huge one nobody waiting ever learns their place).
        "QUEUE_UPDATE_SECONDS": env_float("KEFU_QUEUE_UPDATE_SECONDS", 0.05, most=10),
    }


def _abuse_limits() -> dict:
    """docs/security.md. Rates are at least 1 per second or minute: at 0 a bucket never
    refills, and a socket or visitor was done after its burst."""
    return {
        "WS_RATE_PER_SECOND": env_float("KEFU_WS_RATE_PER_SECOND", 20.0, least=1),
        "WS_RATE_BURST": env_int("KEFU_WS_RATE_BURST", 40, least=1),
        "VISITOR_MESSAGES_PER_MINUTE": env_float("KEFU_VISITOR_MESSAGES_PER_MINUTE", 30.0, least=1),
        # New visitor ids one client address may use per minute (each can open a
        # conversation with an agent); 0: no limit.
        "NEW_VISITORS_PER_ADDRESS_PER_MINUTE": env_float(
            "KEFU_NEW_VISITORS_PER_ADDRESS_PER_MINUTE", 20.0
        ),
        "MAX_CONNECTIONS_PER_IDENTITY": env_int("KEFU_MAX_CONNECTIONS_PER_IDENTITY", 20, least=1),
        # Password guessing on the agent sign-in form: attempts per minute, and as many
        # at once; under 1 nobody could sign in.
        "SIGN_IN_ATTEMPTS_PER_USERNAME": env_float(
            "KEFU_SIGN_IN_ATTEMPTS_PER_USERNAME", 5.0, least=1
        ),
        "SIGN_IN_ATTEMPTS_PER_IP": env_float("KEFU_SIGN_IN_ATTEMPTS_PER_IP", 30.0, least=1),
        # Visitor uploads per client address per minute (a burst of as many); 0: no limit.
        "VISITOR_UPLOADS_PER_ADDRESS_PER_MINUTE": env_float(
            "KEFU_VISITOR_UPLOADS_PER_ADDRESS_PER_MINUTE", 10.0
        ),
    }


def _pages() -> dict:
    """HTTP (issue 4): the proxies in front, uploads on local disk, the session cookie."""
    return {
        # Reverse proxies in front (nginx: 1) whose X-Forwarded-For and -Proto are
        # believed; 0 (no proxy) believes none, since any client can send them.
        "PROXY_COUNT": env_int("KEFU_PROXY_COUNT", 0),
        "UPLOAD_DIR": os.path.abspath(os.environ.get("KEFU_UPLOAD_DIR", "uploads")),
        "UPLOAD_MAX_BYTES": env_int("KEFU_UPLOAD_MAX_BYTES", 10 * 1024 * 1024, least=1),
        "UPLOAD_VISITOR_MAX_BYTES": env_int(
            "KEFU_UPLOAD_VISITOR_MAX_BYTES", 2 * 1024 * 1024, least=1
        ),
        "SESSION_COOKIE_NAME": "kefu_session",
        "SESSION_COOKIE_HTTPONLY": True,
        "SESSION_COOKIE_SAMESITE": "Lax",
        # Turn on behind HTTPS so the session cookie never travels in clear text.
        "SESSION_COOKIE_SECURE": flag("KEFU_SECURE_COOKIES", False),
        # At most 400 days, the longest cookie browsers keep (RFC 6265bis); past about
        # 8,000 years every sign-in fails (the cookie's expiry is beyond year 9999).
        "PERMANENT_SESSION_LIFETIME": env_int(
            "KEFU_SESSION_SECONDS", 7 * 24 * 3600, least=1, most=400 * 24 * 3600
        ),
    }
