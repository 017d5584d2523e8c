import pytest

from kefu.db import make_database
from tests.support import (
    Server,
    drop_database,
    drop_leftovers,
    fresh_database_url,
    own_postgres_database,
    retire,
    wait_for_retired,
)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """One live server per test module (its own database)."""
    srv = Server(tmp_path_factory.mktemp("srv")).start()
    yield srv
    retire(srv)


@pytest.fixture
def make_server(tmp_path):
    """Fresh servers with custom settings, e.g. ``make_server(agent_grace_seconds=1)``."""
    started = []

    def make(**settings) -> Server:
        srv = Server(tmp_path / f"srv{len(started)}", **settings).start()
        started.append(srv)
        return srv

    yield make
    for srv in started:
        retire(srv)


@pytest.fixture
def pg_server(tmp_path):
    """A server on a PostgreSQL database of its own, whatever the suite's (row locks)."""
    url = own_postgres_database("row locks need it")
    server = Server(tmp_path, url, agent_grace_seconds=1).start()
    yield server
    retire(server)  # drops the database too


@pytest.fixture
def database(tmp_path):
    """A peewee database of its own (the suite's kind: SQLite, PostgreSQL or MySQL),
    empty, dropped afterwards: for migrations run straight against it."""
    url = fresh_database_url(tmp_path)
    database = make_database(url, pool_size=1)
    yield database
    database.close_all()
    drop_database(url)


@pytest.fixture(scope="session", autouse=True)
def servers_retired():
    """The suite ends once every server retired in the background has stopped, and
    with no test database left on the servers (``pytest_terminal_summary`` names the
    tests that left one)."""
    yield
    wait_for_retired()
    _left_databases.extend(drop_leftovers())


_left_databases: list[str] = []


def pytest_terminal_summary(terminalreporter):
    if _left_databases:
        terminalreporter.write_line(
            "test databases left undropped (now dropped) by: " + ", ".join(_left_databases)
        )
