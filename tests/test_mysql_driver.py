"""MySQL connections share one TLS context (kefu/mysql_driver.py): PyMySQL 1.2 built a
new one for every connection, 48 ms of CPU that froze the gevent hub each time the pool
opened a connection. TLS is still tried as PyMySQL tries it: the context is the same
kind, and a server without TLS is still reached without it."""

import ssl
import threading

import pytest

from kefu.db import make_database
from tests.support import drop_database, own_database

pytestmark = pytest.mark.ignores_test_database  # a MySQL database of its own


def test_connections_share_one_context_built_as_pymysql_builds_it():
    url = own_database("mysql", "the MySQL driver is under test")
    databases = [make_database(url, pool_size=1) for _ in range(2)]
    try:
        connections = {}

        def connect(database):  # each in its own thread: the pool's connections are per thread
            connections[id(database)] = database.connection()
            database.close()  # back to its pool, for close_all

        threads = [threading.Thread(target=connect, args=(d,)) for d in databases]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(10)
        first, second = (connections[id(d)] for d in databases)
        assert first is not second
        assert first.ctx is second.ctx  # one context for both
        assert isinstance(first.ctx, ssl.SSLContext)
        assert first.ctx.verify_mode == ssl.CERT_NONE  # PyMySQL's PREFERRED: no CA given
        assert not first.ctx.check_hostname
        for database in databases:
            assert database.execute_sql("SELECT 1").fetchone() == (1,)
        # Still a pool (the first try bypassed it): a connection given back is reused.
        pooled = databases[0]
        pooled.close()
        assert pooled.connection() is first
    finally:
        for database in databases:
            database.close_all()
        drop_database(url)
