"""The whole suite as ``make test`` runs it: the tests that measure the machine alone,
then four passes, at most three at a time.

- first, alone: the tests marked ``quiet_machine`` (the stall monitor, the checkpointer,
  the group commit: CPU time, the page cache, timers), which load beside them falsified;
- the rest of the suite on SQLite, its output shown as it runs;
- the suite again on PostgreSQL and on MySQL, the machine's own servers. These leave
  out the tests marked ``ignores_test_database`` (no database, a SQLite file of their
  own, or a database they make) and ``wire_only`` (the subject is the wire; what they
  store is incidental): they would only repeat the SQLite pass;
- the browser tests, on SQLite (they test pages, not storage), when a slot is free.

A pass spends most of its time waiting on sockets and timers: two at a time kept this
machine's two cores 53% busy, and took 1,276 s, as the three long passes (580-680 s
each) could not all go first. All four at once made timing tests fail under the load;
so Chromium, the heaviest, waits for a slot. The other passes' output is shown when
the SQLite pass has ended.

A database server that cannot be reached is reported and skipped on a developer
machine, and is a failure under CI (``CI=true``), where ``.ci/run`` starts both servers.
"""

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass

from tests.support import MYSQL_ADMIN, PG_ADMIN

SLOTS = 3
PYTEST = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"]
SUITE = [*PYTEST, "--ignore=tests/browser"]
QUIET = [*SUITE, "-m", "quiet_machine"]
SIDE_BY_SIDE = [*SUITE, "-m", "not quiet_machine"]
REPEATS = [*SUITE, "-m", "not ignores_test_database and not wire_only"]


@dataclass
class Pass:
    name: str
    database: str
    args: list[str]
    shown: bool = False  # its output goes straight to ours as it runs
    proc: subprocess.Popen | None = None
    output: object = None
    started: float = 0.0
    took: float = 0.0
    basetemp: str = ""

    def start(self, files: contextlib.ExitStack) -> None:
        env = {**os.environ, "KEFU_TEST_DATABASE": self.database}
        self.basetemp = basetemp = tempfile.mkdtemp(prefix=f"kefu-{self.database}-")
        if self.shown:
            print(f"== the suite on {self.name} ==", flush=True)
        else:
            self.output = files.enter_context(tempfile.TemporaryFile())  # noqa: SIM115
        self.started = time.monotonic()
        self.proc = subprocess.Popen(
            [*self.args, f"--basetemp={basetemp}"],
            env=env,
            stdout=self.output,
            stderr=None if self.shown else subprocess.STDOUT,
        )

    def ended(self) -> bool:
        if self.proc.poll() is None:
            return False
        self.took = self.took or time.monotonic() - self.started
        return True

    def report(self) -> None:
        code, took = self.proc.returncode, self.took
        print(f"== the suite on {self.name}: exit {code} after {took:.0f} s ==")
        sys.stdout.flush()
        if self.output is not None:
            self.output.seek(0)
            sys.stdout.buffer.write(self.output.read())
            sys.stdout.flush()


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
    passes = [Pass("sqlite", "sqlite", SIDE_BY_SIDE, shown=True)]
    for kind in ("postgresql", "mysql"):
        problem = reachable(kind)
        if problem:
            print(f"{kind}: server not reachable ({problem}); {'failing' if strict else 'skipped'}")
            failed |= strict
        else:
            passes.append(Pass(kind, kind, REPEATS))
    passes.append(Pass("sqlite, the browser tests", "sqlite", [*PYTEST, "tests/browser"]))
    quiet = Pass("sqlite, the tests that measure the machine, alone", "sqlite", QUIET, shown=True)
    with contextlib.ExitStack() as files:
        run([quiet], files)
        run(passes, files)
        for each in passes:
            if not each.shown:
                each.report()
    everything = [quiet, *passes]
    failed |= any(each.proc.returncode != 0 for each in everything)
    for each in everything:  # a failed pass keeps its servers' logs for a look
        if each.proc.returncode == 0:
            shutil.rmtree(each.basetemp, ignore_errors=True)
    return 1 if failed else 0


def run(passes: list[Pass], files: contextlib.ExitStack) -> None:
    """Every pass, in order, at most ``SLOTS`` at once; the shown pass reports as it ends."""
    waiting, running = list(passes), []
    while waiting or running:
        while waiting and len(running) < SLOTS:
            waiting[0].start(files)
            running.append(waiting.pop(0))
        time.sleep(0.5)
        for each in [p for p in running if p.ended()]:
            running.remove(each)
            if each.shown:
                each.report()


if __name__ == "__main__":
    sys.exit(main())
