"""Autobahn|Testsuite fuzzing client against kefu's WebSocket stack (slow: not in make test).

    .venv/bin/python -m tests.autobahn.run                 # cases 1-7, 9, 10
    .venv/bin/python -m tests.autobahn.run --cases 1.*,2.* # a quick subset

Starts kefu (gunicorn, gevent worker, as in production) with ``KEFU_ECHO_ENDPOINT=1`` and a
message limit above Autobahn's largest message (16 MiB in case 9.1.6), runs ``wstest -m
fuzzingclient`` against ``/ws/echo``, and prints the count of each verdict and every case
that is not OK. Exit status 1 if any case FAILED.

wstest runs on Python 2.7: a virtualenv with ``autobahntestsuite`` is created on first
use under ``$AUTOBAHN_VENV`` (default /tmp/kefu-autobahn-py27) from pyenv's 2.7 (or
``$AUTOBAHN_PYTHON2``). The HTML report stays in the work directory it prints.
"""

import argparse
import collections
import glob
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.support import Server

CASES = ["1.*", "2.*", "3.*", "4.*", "5.*", "6.*", "7.*", "9.*", "10.*"]
VENV = Path(os.environ.get("AUTOBAHN_VENV", "/tmp/kefu-autobahn-py27"))
PINS = ["autobahntestsuite==25.10.1", "autobahn==0.10.9", "Twisted==19.10.0"]
MAX_MESSAGE = 17 * 1024 * 1024  # case 9.1.6 / 9.2.6 echo 16 MiB messages


def python2() -> str:
    if os.environ.get("AUTOBAHN_PYTHON2"):
        return os.environ["AUTOBAHN_PYTHON2"]
    root = os.environ.get("PYENV_ROOT", os.path.expanduser("~/.pyenv"))
    found = sorted(glob.glob(f"{root}/versions/2.7*/bin/python2.7"))
    if not found:
        sys.exit("wstest needs Python 2.7: none under pyenv; set AUTOBAHN_PYTHON2")
    return found[-1]


def wstest() -> Path:
    """The wstest of our Python 2.7 virtualenv, created on first use."""
    exe = VENV / "bin" / "wstest"
    if exe.exists():
        return exe
    py2 = python2()
    tools = VENV.with_name(VENV.name + "-virtualenv")
    env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    # --target: never install into (or uninstall from) pyenv's own site-packages.
    subprocess.run(
        [py2, "-m", "pip", "install", "-q", "--target", str(tools), "virtualenv<20.22"],
        check=True,
        env=env,
    )
    subprocess.run(
        [py2, "-m", "virtualenv", "-q", str(VENV)],
        check=True,
        env={**env, "PYTHONPATH": str(tools)},
    )
    subprocess.run([str(VENV / "bin" / "pip"), "install", "-q", *PINS], check=True, env=env)
    return exe


def summarise(index: dict) -> tuple[collections.Counter, list[str]]:
    counts = collections.Counter()
    notes = []
    for agent_cases in index.values():
        for case, result in sorted(agent_cases.items(), key=lambda kv: _key(kv[0])):
            counts[result["behavior"]] += 1
            if result["behavior"] != "OK" or result["behaviorClose"] != "OK":
                notes.append(
                    f"{case}: {result['behavior']} (close {result['behaviorClose']}, "
                    f"code {result.get('remoteCloseCode')}, {result['duration']} ms)"
                )
    return counts, notes


def _key(case: str) -> tuple:
    return tuple(int(part) for part in case.split("."))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cases", default=",".join(CASES))
    parser.add_argument("--workdir", default=None)
    parser.add_argument(
        "--deflate", action="store_true", help="KEFU_WS_DEFLATE=1 (for cases 12.* and 13.*)"
    )
    args = parser.parse_args()
    exe = wstest()
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="kefu-autobahn-"))
    server = Server(
        workdir / "server",
        echo_endpoint=1,
        max_ws_message_bytes=MAX_MESSAGE,
        # Unsolicited server pings would show up in the cases' traffic; heartbeats are
        # not what is tested here.
        ws_ping_seconds=0,
        ws_deflate=int(args.deflate),
    ).start()
    try:
        spec = {
            "outdir": str(workdir / "reports"),
            "servers": [{"agent": "kefu", "url": f"ws://{server.base}/ws/echo"}],
            "cases": args.cases.split(","),
            "exclude-cases": [],
            "exclude-agent-cases": {},
        }
        (workdir / "spec.json").write_text(json.dumps(spec, indent=2))
        started = time.monotonic()
        with open(workdir / "wstest.log", "w") as log:
            run = subprocess.run(
                [str(exe), "-m", "fuzzingclient", "-s", "spec.json"],
                cwd=workdir,
                stdout=log,
                stderr=subprocess.STDOUT,
                check=False,
            )
        elapsed = time.monotonic() - started
    finally:
        alive = server.proc is not None and server.proc.poll() is None
        server.stop()
    index_path = workdir / "reports" / "index.json"
    if not index_path.exists():
        print(f"wstest exited {run.returncode} without a report; see {workdir}/wstest.log")
        return 1
    counts, notes = summarise(json.loads(index_path.read_text()))
    print(
        f"Autobahn fuzzingclient, cases {args.cases}: {sum(counts.values())} cases "
        f"in {elapsed:.0f} s; server still running at the end: {alive}"
    )
    for verdict in ("OK", "NON-STRICT", "INFORMATIONAL", "UNIMPLEMENTED", "FAILED"):
        print(f"  {verdict}: {counts.get(verdict, 0)}")
    for other in sorted(
        set(counts) - {"OK", "NON-STRICT", "INFORMATIONAL", "UNIMPLEMENTED", "FAILED"}
    ):
        print(f"  {other}: {counts[other]}")
    for note in notes:
        print(f"  {note}")
    print(f"report: {workdir}/reports/index.html")
    return 1 if counts.get("FAILED") or not alive else 0


if __name__ == "__main__":
    sys.exit(main())
