"""MySQL connections for the pool: PyMySQL, with the TLS context it tries built once.

PyMySQL 1.2 tries TLS whenever the server offers it (its PREFERRED mode, when no
``ssl_*`` option is given), and for that builds a new default SSL context at every
connection: loading the system's CA certificates took 48 ms of CPU on a 2-core machine,
before the server was even asked. Under gevent that is a stall of every socket in the
worker, each time the pool opens a connection or replaces a stale one. The context holds
no per-connection state, so one built the same way serves them all.
"""

import threading

from peewee import MySQLDatabase
from playhouse.pool import _PooledMySQLDatabase
from pymysql.connections import Connection


class PreferredTLSOnce(Connection):
    _preferred = None  # PyMySQL's PREFERRED-mode context, once built
    _building = threading.Lock()

    def _create_ssl_ctx(self, sslp):
        if sslp:  # ssl_* options or a context of the URL's own: as PyMySQL does
            return super()._create_ssl_ctx(sslp)
        with PreferredTLSOnce._building:
            if PreferredTLSOnce._preferred is None:
                PreferredTLSOnce._preferred = super()._create_ssl_ctx(sslp)
        return PreferredTLSOnce._preferred


class _PreferredTLSOnceDatabase(MySQLDatabase):
    def _connect(self):
        # What peewee's MySQLDatabase._connect does, with the connection class above.
        return PreferredTLSOnce(database=self.database, autocommit=True, **self.connect_params)


class PooledMySQL(_PooledMySQLDatabase, _PreferredTLSOnceDatabase):
    """playhouse's PooledMySQLDatabase over the database above: the pool's ``_connect``
    (limits, reuse) comes first in the MRO and calls the one above for a new connection.
    Overriding ``_connect`` on the pooled class itself bypassed the pool."""
