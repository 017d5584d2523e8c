"""Run the suite again on PostgreSQL and MySQL (the machine's own servers).

Called by ``make test`` after the SQLite run. A database server that cannot be reached is
reported and skipped on a developer machine, and is a failure under CI (``CI=true``),
where ``.ci/run`` starts both servers first. Browser tests run on SQLite only: they test
pages, not storage.
"""

import os
import subprocess
import sys

from tests.support import MYSQL_ADMIN, PG_ADMIN


def reachable(kind: str) -> str | None:
    """None if the admin connection works, else the reason."""
    try:
        if kind == "postgresql":
            import psycopg2

            psycopg2.connect(**PG_ADMIN, connect_timeout=3).close()
        else:
            import pymysql

            pymysql.connect(**MYSQL_ADMIN, connect_timeout=3).close()
    except Exception as exc:
        return str(exc).strip().splitlines()[0]
    return None


def main() -> int:
    strict = os.environ.get("CI", "").lower() == "true"
    failed = False
    for kind in ("postgresql", "mysql"):
        problem = reachable(kind)
        if problem:
            print(f"{kind}: server not reachable ({problem}); "
                  f"{'failing (CI)' if strict else 'skipped'}")
            failed |= strict
            continue
        print(f"== the suite on {kind} ==", flush=True)
        env = {**os.environ, "KEFU_TEST_DATABASE": kind}
        args = [sys.executable, "-m", "pytest", "-q", "--ignore=tests/browser",
                "-p", "no:cacheprovider"]
        failed |= subprocess.run(args, env=env, check=False).returncode != 0
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
