"""Checks of a deployment as a whole: settings that are each valid but cannot work
together, an upload folder that cannot be written, secrets short enough to guess. Run
by gunicorn's master before it forks (one line and no start, or a warning), and the
combination again by ``create_app``."""

import os
import tempfile

from kefu.config import STRONG_KEY_BYTES


def weak_secrets(settings: dict) -> list[str]:
    """Warnings for keys short enough to guess offline: anyone gets a signed cookie from
    the sign-in page (a short SECRET_KEY, once found, forges an agent's session), and a
    host JWT is signed with JWT_SECRET (RFC 7518 asks HS256 keys for 32 bytes). Warned,
    not refused: a test setup may use short keys on purpose."""
    named = {"KEFU_SECRET_KEY": settings["SECRET_KEY"], "KEFU_JWT_SECRET": settings["JWT_SECRET"]}
    return [
        f"{name} is {len(key.encode())} bytes: use at least {STRONG_KEY_BYTES} random bytes "
        f"(python -c 'import secrets; print(secrets.token_hex(32))')"
        for name, key in named.items()
        if key and len(key.encode()) < STRONG_KEY_BYTES
    ]


def upload_dir_problem(folder: str) -> str | None:
    """Why uploads could not be stored in ``folder``, or None. Checked at start: every
    upload was a 500 and a traceback, while the rest of the server seemed fine."""
    try:
        os.makedirs(folder, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".kefu-write-check-"):
            pass
    except OSError as exc:
        return f"KEFU_UPLOAD_DIR={folder!r}: uploads cannot be stored there ({exc.strerror})"
    return None


def deployment_problem(broker: str, workers: int, database_url: str, pool_size: int) -> str | None:
    """Why this broker / worker count / database / pool combination cannot work, or
    None. Checked by gunicorn's master before forking and by create_app."""
    scheme = database_url.split(":", 1)[0].split("+")[0].lower()
    if pool_size < 2:
        # On SQLite the group commit keeps one pooled connection for the worker's life:
        # with a pool of one, every other request waited for it (30 s) and failed.
        # Elsewhere one connection would make every request wait for every other.
        return (
            f"KEFU_DB_POOL_SIZE={pool_size}: use 2 or more (on SQLite the group commit "
            "keeps one connection; on any database requests need more than one)"
        )
    if broker not in ("memory", "postgres"):
        return f"KEFU_BROKER={broker!r}: use 'memory' (one worker) or 'postgres'"
    if broker == "postgres" and scheme not in ("postgres", "postgresql"):
        return (
            f"KEFU_BROKER=postgres needs a PostgreSQL KEFU_DATABASE_URL (got {scheme}://): "
            "it uses LISTEN/NOTIFY. With SQLite or MySQL run one worker with "
            "KEFU_BROKER=memory (docs/deployment.md)."
        )
    if broker == "memory" and workers > 1:
        return (
            f"{workers} workers (KEFU_WORKERS or gunicorn -w) with KEFU_BROKER=memory: "
            "each worker would hold its "
            "own hub, and an agent and a customer on different workers would not hear "
            "each other. Run one worker, or KEFU_BROKER=postgres on PostgreSQL "
            "(docs/deployment.md)."
        )
    return None
