"""Schema migrations (peewee-migrate files in ``migrations/``), applied once per start.

gunicorn's master runs ``python -m kefu.migrate`` before forking workers, so N workers
never race to migrate; ``flask --app app db upgrade`` does the same by hand. It runs in a
child process so the master never imports peewee: a module imported before gevent
patches ``threading`` keeps real thread-locals, and peewee's per-greenlet connection
state would silently become one connection shared by every greenlet of the worker.
"""

import logging
import os
from pathlib import Path

from peewee_migrate import Router

from kefu.db import make_database

MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"
log = logging.getLogger(__name__)


def upgrade(url: str) -> list[str]:
    """Apply pending migrations to the database at ``url``; returns their names."""
    database = make_database(url, pool_size=1)
    try:
        router = Router(database, migrate_dir=MIGRATIONS, logger=log)
        return router.run()
    finally:
        database.close_all()


def upgrade_from_environment() -> list[str]:
    return upgrade(os.environ.get("KEFU_DATABASE_URL", "sqlite:///kefu.db"))


if __name__ == "__main__":  # python -m kefu.migrate (what gunicorn's master runs)
    logging.basicConfig(level=logging.WARNING)
    print(", ".join(upgrade_from_environment()) or "none pending")
