"""Shared by the bench scripts: start the real server, measure its worker, small clients.

The server is always ``gunicorn -c gunicorn.conf.py <app>`` (gevent worker, one worker)
on a free loopback port with a fresh SQLite file in a temporary directory (or
``KEFU_DATABASE_URL`` if set), with the stall monitor switched on. The load runs in the
calling process (asyncio + ``websockets``, which offers permessage-deflate as browsers
do), never inside the server.
"""

import asyncio
import json
import os
import platform
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import jwt
import psutil

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
JWT_SECRET = "bench-jwt-secret-0123456789abcdef0123456789"


def raise_nofile() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else 65536
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return target


def steady_client_malloc() -> None:
    """Keep the load client's malloc from page-faulting on every socket read.

    asyncio reads a socket with ``recv(256 KiB)`` and shrinks the result; that is over
    glibc's starting mmap threshold (128 KiB), so each read mapped and unmapped fresh
    pages (260,000-290,000 faults in a 10 s run) until glibc raised the threshold, when
    the first run in the process ended. That run cost the client a third more CPU per
    message, so baseline.py's first relay run was slow and round 1's ratio high
    (2026-12-07). Not glibc (macOS, musl): nothing."""
    import ctypes

    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return
    m_trim_threshold, m_mmap_threshold = -1, -3  # <malloc.h>
    mallopt(m_mmap_threshold, 4 << 20)  # above the 256 KiB reads
    mallopt(m_trim_threshold, 32 << 20)  # and do not hand freed heap back at once


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def machine() -> str:
    mem = psutil.virtual_memory().total / 2**30
    cpu = platform.processor() or platform.machine()
    return f"{os.cpu_count()} cores {cpu}, {mem:.0f} GiB, Python {platform.python_version()}"


def host_jwt(sub: str, ttl: int = 7200) -> str:
    return jwt.encode({"sub": sub, "exp": int(time.time()) + ttl}, JWT_SECRET, algorithm="HS256")


class InstructionCounter:
    """The worker's instructions, counted by valgrind's callgrind until it exits.

    CPU time per message moves with whatever else the machine runs (the same build gave
    147 to 241 us per message here), so a change worth a few percent cannot be seen in
    it. The number of instructions the worker executes hardly moves: it counts the
    worker's own work (all its threads, not the kernel's). The worker runs under
    valgrind, about 50 times slower, so loads must be light (tens of messages per
    second); the figures are for comparing builds, not for speed. Two runs of different
    length give the instructions per message (start-up and sign-in cancel out)."""

    def __init__(self, directory: Path):
        self.out = directory / "callgrind"
        self.instructions = None  # the worker's, once the server has stopped

    def wrap(self, command: list[str]) -> list[str]:
        # gunicorn's worker timeout is raised for the slow start under valgrind.
        return [
            "valgrind",
            "--tool=callgrind",
            f"--callgrind-out-file={self.out}.%p",
            *command,
            "--timeout",
            "600",
        ]

    def total(self, pid: int) -> int:
        """The worker's instructions from its fork to its exit (read after it exited).
        With ``BENCH_CALLGRIND_DIR`` set the profile is kept there for callgrind_annotate."""
        path = Path(f"{self.out}.{pid}")
        if os.environ.get("BENCH_CALLGRIND_DIR"):
            shutil.copy(path, os.environ["BENCH_CALLGRIND_DIR"])
        for line in path.read_text().splitlines():
            if line.startswith(("summary:", "totals:")):
                return int(line.split()[1])
        raise RuntimeError(f"no totals in {self.out}.{pid}")


class Server:
    """A gunicorn master + its one gevent worker, measured through psutil."""

    def __init__(self, app: str = "app:app", keep: bool = False, count=False, **settings):
        self.tmp = Path(tempfile.mkdtemp(prefix="kefu-bench-"))
        self.keep = keep
        self.app = app
        self.counter = InstructionCounter(self.tmp) if count else None
        self.port = free_port()
        self.base = f"127.0.0.1:{self.port}"
        self.env = {
            **os.environ,
            "KEFU_DATABASE_URL": os.environ.get("KEFU_DATABASE_URL")
            or f"sqlite:///{self.tmp}/kefu.db",
            "KEFU_BIND": self.base,
            "KEFU_JWT_SECRET": JWT_SECRET,
            "KEFU_SECRET_KEY": "bench-secret-key",
            "KEFU_LOG_LEVEL": "warning",
            "KEFU_STALL_MONITOR": "1",
            **{f"KEFU_{k.upper()}": str(v) for k, v in settings.items()},
        }
        self.proc = None
        self.worker = None

    def start(self, timeout: float = 30.0) -> "Server":
        self.log_file = open(self.tmp / "server.log", "ab")  # noqa: SIM115 (kept while it runs)
        command = [str(BIN / "gunicorn"), "-c", "gunicorn.conf.py", self.app]
        if self.counter:
            command = self.counter.wrap(command)
            timeout *= 20
        self.proc = subprocess.Popen(
            command,
            cwd=ROOT,
            env=self.env,
            stdout=self.log_file,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited:\n{self.log()}")
            try:
                with urllib.request.urlopen(self.url("/healthz"), timeout=0.5) as r:
                    if r.status == 200:
                        break
            except OSError:
                time.sleep(0.05)
        else:
            raise RuntimeError(f"server did not start:\n{self.log()}")
        children = psutil.Process(self.proc.pid).children()
        self.worker = children[0]
        return self

    def url(self, path: str) -> str:
        return f"http://{self.base}{path}"

    def ws_url(self, path: str = "/ws") -> str:
        return f"ws://{self.base}{path}"

    def log(self) -> str:
        p = self.tmp / "server.log"
        return p.read_text(errors="replace") if p.exists() else ""

    def rss(self) -> int:
        return self.worker.memory_info().rss

    def cpu_seconds(self) -> float:
        t = self.worker.cpu_times()
        return t.user + t.system

    def hub_cpu_seconds(self) -> float:
        """CPU of the worker's main thread only: the gevent hub, where every socket is
        served. The rest of the worker's CPU is its thread pool (password hashes, SQLite
        checkpoints), which runs beside the hub on another core."""
        for thread in self.worker.threads():
            if thread.id == self.worker.pid:
                return thread.user_time + thread.system_time
        return self.cpu_seconds()

    def stall(self, reset: bool = False) -> dict:
        q = "?reset=1" if reset else ""
        with urllib.request.urlopen(self.url(f"/_kefu/stall{q}"), timeout=5) as r:
            return json.loads(r.read())

    def cli(self, *args: str) -> dict:
        out = subprocess.run(
            [str(BIN / "flask"), "--app", "app", *args, "--json"],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            check=True,
        )
        return json.loads(out.stdout)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(300 if self.counter else 20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                if self.worker and self.worker.is_running():
                    self.worker.kill()
        if self.proc and self.counter:
            self.counter.instructions = self.counter.total(self.worker.pid)
        self.proc = None
        if not self.keep and not os.environ.get("KEFU_BENCH_KEEP"):
            shutil.rmtree(self.tmp, ignore_errors=True)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


# -- asyncio clients -----------------------------------------------------------------


async def http_get(base: str, path: str, token: str | None = None, timeout: float = 30):
    """A minimal HTTP/1.1 GET over asyncio (one connection per request)."""
    host, port = base.split(":")
    reader, writer = await asyncio.wait_for(asyncio.open_connection(host, int(port)), timeout)
    try:
        head = f"GET {path} HTTP/1.1\r\nHost: {base}\r\nConnection: close\r\n"
        if token:
            head += f"Authorization: Bearer {token}\r\n"
        writer.write((head + "\r\n").encode())
        await writer.drain()
        raw = await asyncio.wait_for(reader.read(), timeout)
    finally:
        writer.close()
    header, _, body = raw.partition(b"\r\n\r\n")
    status = int(header.split(b" ", 2)[1])
    if b"transfer-encoding: chunked" in header.lower():
        body = _unchunk(body)
    return status, json.loads(body) if body else None


def _unchunk(body: bytes) -> bytes:
    out, rest = b"", body
    while rest:
        size_line, _, rest = rest.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            break
        out, rest = out + rest[:size], rest[size + 2 :]
    return out


def percentile(sorted_values: list, p: float) -> float:
    if not sorted_values:
        return float("nan")
    k = min(len(sorted_values) - 1, max(0, round(p / 100 * (len(sorted_values) - 1))))
    return sorted_values[k]


def print_culprits(stints: dict) -> None:
    """The greenlet stints that held the server's hub longest by CPU, and those longest
    off the CPU while holding it, when it runs with ``KEFU_STALL_CULPRITS=1`` (see
    kefu/realtime/culprits.py ``Culprits``)."""
    for stint in stints.get("by_cpu", []):
        print(
            f"  held the hub {stint['cpu_ms']:.1f} ms CPU ({stint['wall_ms']:.1f} wall): "
            f"{stint['where']}"
        )
    for stint in stints.get("off_cpu", []):
        print(
            f"  off the CPU {stint['off_ms']:.1f} ms holding the hub "
            f"({stint['wall_ms']:.1f} wall): {stint['where']}"
        )
