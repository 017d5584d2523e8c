"""Run the suite again on PostgreSQL and MySQL (the machine's own servers).

Called by ``make test`` after the SQLite run; the two passes run side by side. A
database server that cannot be reached is reported and skipped on a developer machine,
and is a failure under CI (``CI=true``), where ``.ci/run`` starts both servers first.
Browser tests run on SQLite only: they test pages, not storage. Nor do these passes run
the tests marked ``ignores_test_database`` (no database, a SQLite file of their own, or
a PostgreSQL database they make): they would only repeat the default pass, under the
load of two suites at once, where their timing is least certain.
"""

import contextlib
import os
import subprocess
import sys
import tempfile

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
    """Both passes at once: each waits mostly on its servers' sockets, not the CPU, and
    one after the other they took nine of CI's minutes. Each has its own temporary
    folder and its own database server; its output is printed whole when it ends.
    ``--with-browser`` (``make test``) runs the browser tests beside them, on SQLite:
    after the SQLite pass they took a further three minutes and more of CI."""
    strict = os.environ.get("CI", "").lower() == "true"
    failed = False
    with contextlib.ExitStack() as stack:
        passes = {}
        if "--with-browser" in sys.argv[1:]:
            output = stack.enter_context(tempfile.TemporaryFile())
            passes["sqlite, the browser tests"] = (start_browser_pass(output), output)
        for kind in ("postgresql", "mysql"):
            problem = reachable(kind)
            if problem:
                print(
                    f"{kind}: server not reachable ({problem}); "
                    f"{'failing (CI)' if strict else 'skipped'}"
                )
                failed |= strict
                continue
            output = stack.enter_context(tempfile.TemporaryFile())
            passes[kind] = (start_pass(kind, output), output)
        for kind, (proc, output) in passes.items():
            code = proc.wait()
            output.seek(0)
            print(f"== the suite on {kind} ==", flush=True)
            sys.stdout.buffer.write(output.read())
            sys.stdout.flush()
            failed |= code != 0
    return 1 if failed else 0


def start_browser_pass(output) -> subprocess.Popen:
    env = {**os.environ, "KEFU_TEST_DATABASE": "sqlite"}
    basetemp = tempfile.mkdtemp(prefix="kefu-browser-")
    args = [sys.executable, "-m", "pytest", "-q", "tests/browser", "-p", "no:cacheprovider"]
    args.append(f"--basetemp={basetemp}")
    return subprocess.Popen(args, env=env, stdout=output, stderr=subprocess.STDOUT)


def start_pass(kind: str, output) -> subprocess.Popen:
    env = {**os.environ, "KEFU_TEST_DATABASE": kind}
    basetemp = tempfile.mkdtemp(prefix=f"kefu-{kind}-")
    args = [
        sys.executable,
        "-m",
        "pytest",
        "-q",
        "--ignore=tests/browser",
        "-m",
        "not ignores_test_database",
        "-p",
        "no:cacheprovider",
        f"--basetemp={basetemp}",
    ]
    return subprocess.Popen(args, env=env, stdout=output, stderr=subprocess.STDOUT)


if __name__ == "__main__":
    sys.exit(main())
