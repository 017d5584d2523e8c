"""Test harness: a real gunicorn (gevent worker) on a free loopback port, real clients.

``Server`` runs the app exactly as production does (``gunicorn -c gunicorn.conf.py
app:app``), against its own database file, and creates accounts with the service the
CLI calls, or host-signed JWTs. ``WS`` is a small JSON wrapper over websocket-client.
"""

import collections
import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import jwt
import pytest
import requests
import websocket

from kefu import create_app
from kefu.cli import agent_json, user_json
from kefu.db import make_database
from kefu.services import accounts

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
JWT_SECRET = "test-jwt-secret-0123456789abcdef0123"

WIRE_TIME = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d$")


class Any:
    """Matches any value of a type (and optional pattern) inside a whole-object comparison."""

    def __init__(self, kind=object, pattern=None):
        self.kind, self.pattern = kind, pattern

    def __eq__(self, other):
        if not isinstance(other, self.kind):
            return False
        return self.pattern is None or bool(self.pattern.match(other))

    def __repr__(self):
        return f"Any({self.kind.__name__})"


TIME = Any(str, WIRE_TIME)
INT = Any(int)

# Which database the suite runs on: sqlite (default), postgresql or mysql (the machine's
# own servers on 127.0.0.1; every Server gets a fresh database).
TEST_DATABASE = os.environ.get("KEFU_TEST_DATABASE", "sqlite")
PG_ADMIN = {"host": "127.0.0.1", "port": 5432, "user": "postgres", "dbname": "postgres"}
MYSQL_ADMIN = {"host": "127.0.0.1", "port": 3306, "user": "root", "password": ""}


def fresh_database_url(workdir: Path) -> str:
    if TEST_DATABASE == "sqlite":
        return f"sqlite:///{workdir}/kefu.db"
    if TEST_DATABASE not in ("postgresql", "mysql"):
        raise ValueError(f"KEFU_TEST_DATABASE={TEST_DATABASE!r}: use sqlite, postgresql or mysql")
    return _create_database(TEST_DATABASE, _admin(TEST_DATABASE), "kefu_t")


def own_postgres_database(needs: str) -> str:
    return own_database("postgresql", needs)


def own_database(kind: str, needs: str) -> str:
    """A new PostgreSQL or MySQL database, whatever ``KEFU_TEST_DATABASE`` names, for
    tests that need that server itself (``needs`` says what for); ``unavailable`` if the
    server does not answer."""
    try:
        conn = _admin(kind, connect_timeout=2)
    except Exception as exc:
        where = "127.0.0.1:5432" if kind == "postgresql" else "127.0.0.1:3306"
        unavailable(f"{kind} is not reachable on {where} ({exc}); {needs}")
    return _create_database(kind, conn, "kefu_own")


def unavailable(problem: str) -> None:
    """What this machine cannot give a test, handled as ``tests/passes.py``
    does: a failure under CI (``CI=true``: ``.ci/run`` runs as root with both database
    servers started), a skip on a developer machine."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(problem)
    pytest.skip(problem)


def run(command: list, env: dict | None = None, timeout: float = 60, check: bool = False):
    """``command`` run from the project's root, its output captured as text."""
    return subprocess.run(
        command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout, check=check
    )


def _admin(kind: str, **options):
    """An autocommit connection to the server's administrative database."""
    if kind == "postgresql":
        import psycopg2

        conn = psycopg2.connect(**PG_ADMIN, **options)
        conn.autocommit = True
        return conn
    import pymysql

    return pymysql.connect(**MYSQL_ADMIN, autocommit=True, **options)


# Databases this process created and has not dropped, each with the test that made it:
# the session's end drops what is left and names those tests (``drop_leftovers``).
_undropped: dict[str, str] = {}


def _create_database(kind: str, conn, prefix: str) -> str:
    name = f"{prefix}{uuid.uuid4().hex[:12]}"
    with conn.cursor() as cur:
        if kind == "postgresql":
            cur.execute(f'CREATE DATABASE "{name}"')
        else:
            cur.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")
    conn.close()
    if kind == "postgresql":
        url = f"postgresql://postgres@127.0.0.1:5432/{name}"
    else:
        url = f"mysql://root@127.0.0.1:3306/{name}"
    _undropped[url] = os.environ.get("PYTEST_CURRENT_TEST", "?").rsplit(" ", 1)[0]
    return url


# PostgreSQL: how many sessions of this database wait for a row lock they asked for.
WAITING_FOR_A_LOCK = (
    "SELECT count(*) FROM pg_stat_activity "
    "WHERE datname = current_database() AND wait_event_type = 'Lock' "
    "AND position('FOR UPDATE' in query) > 0"
)


# Sessions waiting for a lock (a FOR UPDATE's, an UPDATE's), by kind of database.
LOCK_WAITS = {
    "postgresql": "SELECT count(*) FROM pg_stat_activity "
    "WHERE datname = current_database() AND wait_event_type = 'Lock'",
    "mysql": "SELECT COUNT(*) FROM information_schema.innodb_trx WHERE trx_state = 'LOCK WAIT'",
}


@contextlib.contextmanager
def held(server):
    """A transaction of another connection on ``server``'s database (as another worker's
    or the CLI's), committed when the block ends; on SQLite it holds the writer lock."""
    other = make_database(server.env["KEFU_DATABASE_URL"], pool_size=1)
    try:
        with other.atomic():
            yield other
    finally:
        other.close()
        other.close_all()


def run_sql(database, query: str, *params) -> list[tuple]:
    """``query`` (``?`` placeholders) on a peewee ``database``; its rows, if any."""
    cursor = database.execute_sql(query.replace("?", database.param), params)
    return [tuple(row) for row in cursor.fetchall()] if cursor.description else []


def wait_for_a_lock_wait(server, seconds: float = 6.0) -> None:
    """Until the server waits for a lock another connection holds. SQLite shows no such
    thing: a second there, far more than a frame takes to reach the lock on loopback."""
    if TEST_DATABASE not in LOCK_WAITS:
        time.sleep(1)
        return
    deadline = time.monotonic() + seconds
    while server.sql(LOCK_WAITS[TEST_DATABASE])[0][0] < 1:
        assert time.monotonic() < deadline, "the server never waited for the lock"
        # MariaDB fills innodb_trx again only when it was last read 0.1 s ago or more:
        # polled faster, it never showed the wait.
        time.sleep(0.15)


def drop_database(url: str) -> None:
    """Best effort: remove a test database created by ``fresh_database_url``."""
    _undropped.pop(url, None)
    name = url.rsplit("/", 1)[-1]
    with contextlib.suppress(Exception):
        if url.startswith("postgresql://"):
            import psycopg2

            conn = psycopg2.connect(**PG_ADMIN)
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            conn.close()
        elif url.startswith("mysql://"):
            import pymysql

            conn = pymysql.connect(**MYSQL_ADMIN, autocommit=True)
            with conn.cursor() as cur:
                cur.execute(f"DROP DATABASE IF EXISTS `{name}`")
            conn.close()


def drop_leftovers() -> list[str]:
    """Drop the databases no test dropped; the tests that made them, to be named."""
    makers = sorted(set(_undropped.values()))
    for url in list(_undropped):
        drop_database(url)
    return makers


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, workdir: Path, database_url: str | None = None, **settings):
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.base = f"127.0.0.1:{self.port}"
        self.env = {
            **os.environ,
            "KEFU_DATABASE_URL": database_url or fresh_database_url(self.workdir),
            "KEFU_BIND": self.base,
            "KEFU_JWT_SECRET": JWT_SECRET,
            "KEFU_SECRET_KEY": "test-secret-key-0123456789abcdef0123",
            # Its own folder: the default, uploads/ in the working directory, was the
            # checkout's own for every test server.
            "KEFU_UPLOAD_DIR": str(self.workdir / "uploads"),
            "KEFU_LOG_LEVEL": "info",
            # Functional tests send fast; the limits have tests of their own.
            "KEFU_WS_RATE_PER_SECOND": "10000",
            "KEFU_WS_RATE_BURST": "10000",
            "KEFU_VISITOR_MESSAGES_PER_MINUTE": "100000",
            "KEFU_NEW_VISITORS_PER_ADDRESS_PER_MINUTE": "100000",
            "KEFU_SIGN_IN_ATTEMPTS_PER_USERNAME": "100000",
            "KEFU_SIGN_IN_ATTEMPTS_PER_IP": "100000",
            **{f"KEFU_{k.upper()}": str(v) for k, v in settings.items()},
        }
        self.proc = None
        self.log_path = self.workdir / "server.log"
        self.root = ROOT  # the release it runs (a test deploys a copy: test_reload)

    # -- lifecycle -------------------------------------------------------------
    def start(self, timeout: float = 20.0) -> "Server":
        with open(self.log_path, "ab") as log:  # the child keeps its own copy of the fd
            self.proc = subprocess.Popen(
                [str(BIN / "gunicorn"), "-c", "gunicorn.conf.py", "app:app"],
                cwd=self.root,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited:\n{self.log()}")
            try:
                if requests.get(self.url("/healthz"), timeout=0.5).ok:
                    return self
            except requests.RequestException:
                time.sleep(0.05)
        raise RuntimeError(f"server did not start:\n{self.log()}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> None:
        """SIGTERM: a graceful stop. SIGKILL: master and workers die at once, mid-write."""
        if self.proc and self.proc.poll() is None:
            workers = subprocess.run(
                ["pgrep", "-P", str(self.proc.pid)], capture_output=True, text=True, check=False
            ).stdout.split()
            if sig == signal.SIGKILL:
                for pid in workers:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(int(pid), signal.SIGKILL)
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def restart(self) -> "Server":
        self.stop()
        return self.start()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    # -- accounts --------------------------------------------------------------
    def cli(self, *args: str) -> dict:
        out = run([str(BIN / "flask"), "--app", "app", *args, "--json"], self.env, check=True)
        return json.loads(out.stdout)

    def create_agent(self, username: str, max_concurrent: int = 5, password: str | None = None):
        """What ``flask kefu create-agent --json`` prints."""
        with self._accounts() as service:
            user, agent, token = service.create_agent(
                username, max_concurrent=max_concurrent, password=password
            )
        return agent_json(user, agent, token)

    def create_user(self, username: str) -> dict:
        """What ``flask kefu create-user --json`` prints."""
        with self._accounts() as service:
            return user_json(*service.create_user(username))

    @contextlib.contextmanager
    def _accounts(self):
        """The service the CLI calls, run here on this server's database: the same rows
        without a Python start per account (112 CLI runs were 50 s of the suite). The
        CLI's own runs have tests of their own (test_multiworker_units, test_limits).
        It binds this process's database proxy, so it is not for a test that has bound
        an app of its own here (test_services)."""
        app = create_app({"DATABASE_URL": self.env["KEFU_DATABASE_URL"], "DB_POOL_SIZE": 2})
        try:
            with app.app_context():
                yield accounts
        finally:
            app.extensions["kefu.db"].close_all()

    @staticmethod
    def host_jwt(sub: str, name: str | None = None, ttl: int = 3600, secret=JWT_SECRET) -> str:
        claims = {"sub": sub, "exp": int(time.time()) + ttl}
        if name:
            claims["name"] = name
        return jwt.encode(claims, secret, algorithm="HS256")

    def conversation(self, agent_name: str, user_sub: str):
        """A new agent and a host user with a conversation it serves, both signed in on
        /ws: (the user's token, the conversation's id, the user's socket, the agent's)."""
        agent = self.create_agent(agent_name)
        token = self.host_jwt(user_sub)
        agent_ws = self.ws()
        assert agent_ws.request({"action": "login", "data": {"token": agent["token"]}})["success"]
        cid = self.get("/api/kefu/message/getConversation", token).json()["data"]["id"]
        user_ws = self.ws()
        assert user_ws.request({"action": "login", "data": {"token": token}})["success"]
        return token, cid, user_ws, agent_ws

    def sql(self, query: str, *params) -> list[tuple]:
        """Read stored state straight from the server's database (``?`` placeholders)."""
        db = make_database(self.env["KEFU_DATABASE_URL"], pool_size=1)
        try:
            cursor = db.execute_sql(query.replace("?", db.param), params)
            return [tuple(row) for row in cursor.fetchall()]
        finally:
            # Back to the pool, so that close_all closes it now (it skips a connection
            # in use, which then stayed open until garbage-collected).
            db.close()
            db.close_all()

    def destroy(self) -> None:
        self.stop()
        drop_database(self.env["KEFU_DATABASE_URL"])

    # -- clients ---------------------------------------------------------------
    def url(self, path: str) -> str:
        return f"http://{self.base}{path}"

    def get(self, path: str, token: str | None = None, **kw) -> requests.Response:
        headers = kw.pop("headers", {})
        if token:
            headers["Authorization"] = f"Bearer {token}"
        kw.setdefault("timeout", 10)
        return requests.get(self.url(path), headers=headers, **kw)

    def ws(self, path: str = "/ws", **kw) -> "WS":
        return WS(f"ws://{self.base}{path}", **kw)


# A graceful stop takes one to two seconds (gunicorn's worker looks once a second, and a
# client that never answers the close frame keeps its handler for the close handshake):
# 82 stops took 130 s of the 405 s SQLite pass. A test done with its server need not wait.
_retiring = ThreadPoolExecutor(max_workers=4, thread_name_prefix="retire")
_retired = []


def retire(server: Server) -> None:
    """Stop ``server`` and drop its database in the background (a fixture's teardown)."""
    _retired.append(_retiring.submit(server.destroy))


def wait_for_retired() -> None:
    """Every retired server is gone; a stop or drop that failed fails here."""
    while _retired:
        _retired.pop().result()


class WS:
    """A JSON WebSocket client with patient receives and explicit silence checks."""

    def __init__(self, url: str, timeout: float = 5.0, **kw):
        self.sock = websocket.create_connection(url, timeout=timeout, **kw)
        self.timeout = timeout
        self.held = collections.deque()  # pushes that arrived before a request's reply

    def send(self, obj) -> None:
        self.sock.send(obj if isinstance(obj, str | bytes) else json.dumps(obj))

    def recv(self, timeout: float | None = None) -> dict:
        if self.held:
            return self.held.popleft()
        return json.loads(self._data(timeout or self.timeout))

    def _data(self, seconds: float) -> str | bytes:
        """The next message within ``seconds`` (WebSocketTimeoutException if none), as
        websocket-client's ``recv`` gives it ("" for a close). Pings are answered on the
        way; they restarted the socket's timeout, which never ran out while the server
        pinged more often than that."""
        deadline = time.monotonic() + seconds
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise websocket.WebSocketTimeoutException("timed out")
            self.sock.settimeout(left)
            opcode, data = self.sock.recv_data(control_frame=True)
            if opcode == websocket.ABNF.OPCODE_TEXT:
                return data.decode()
            if opcode == websocket.ABNF.OPCODE_BINARY:
                return data
            if opcode not in (websocket.ABNF.OPCODE_PING, websocket.ABNF.OPCODE_PONG):
                return ""

    def request(self, obj) -> dict:
        """Send ``obj`` and return its reply.

        A ds/kefu push may come first (an assignment made by the assigner a moment after
        the request that queued it): it is held, and later ``recv`` calls get it in order.
        """
        self.send(obj)
        while True:
            frame = json.loads(self._data(self.timeout))
            if not (isinstance(frame, dict) and frame.get("type") == "push_message"):
                return frame
            self.held.append(frame)

    def recv_until(self, predicate, timeout: float | None = None) -> dict:
        """The first frame matching ``predicate``; others are kept in ``skipped``."""
        deadline = time.monotonic() + (timeout or self.timeout)
        self.skipped = []
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no matching frame; saw {self.skipped}")
            frame = self.recv(left)
            if predicate(frame):
                return frame
            self.skipped.append(frame)

    def silent(self, seconds: float = 0.3) -> bool:
        """True if nothing arrives within ``seconds``."""
        if self.held:
            raise AssertionError(f"expected silence, got {self.held[0]}")
        try:
            frame = self._data(seconds)
        except websocket.WebSocketTimeoutException:
            return True
        raise AssertionError(f"expected silence, got {frame}")

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.sock.close()


def run_python(tmp_path, source: str, *args) -> dict:
    """Run ``source`` as a script in a fresh process; the JSON its last line prints."""
    script = tmp_path / "script.py"
    script.write_text(source)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}  # the script's own folder is tmp_path
    proc = run([sys.executable, str(script), *args], env)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])
