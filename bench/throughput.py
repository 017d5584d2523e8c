"""Throughput and latency: P user–agent pairs exchanging ``kefu_message_send`` with pushes.

Starts the real server (gunicorn, gevent worker, fresh SQLite), creates ``--agents``
agents through the CLI, connects them to ``/ws``, then P users (host JWTs) who each
open a conversation with ``getConversation`` (REST) and so get an agent. Then, for
``--duration`` seconds after a warm-up, every pair plays ping-pong: the user sends, the
agent gets the ``kefu_message`` push and answers at once, the user gets that push and
sends again (``--window`` messages in flight per pair; ``--rate`` switches to an open
loop at a fixed total rate instead). Every message is stored. Prints delivered
messages/s, send→push latency p50/p95/p99, server and load-client CPU, and the worst
gevent hub stall (from the server's opt-in stall monitor).

    .venv/bin/python bench/throughput.py --pairs 200
    .venv/bin/python bench/throughput.py --pairs 200 --rate 2000   # open loop
    .venv/bin/python bench/throughput.py --pairs 200 --relay       # bare relay only
"""

import argparse
import asyncio
import concurrent.futures
import json
import math
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import websockets

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (
    Server,
    host_jwt,
    http_get,
    machine,
    percentile,
    print_culprits,
    raise_nofile,
    steady_client_malloc,
)


class Side:
    """One socket: sends into its conversations and records the pushes it receives."""

    def __init__(self, ws, sender_type: int, stats):
        self.ws = ws
        self.sender_type = sender_type
        self.stats = stats
        self.acks: dict = {}
        self.op = 0
        self.answer = False  # closed loop: answer every push in its conversation

    async def send(self, conversation_id: int) -> None:
        self.op += 1
        stamp = time.perf_counter_ns()
        frame = {
            "action": "kefu_message_send",
            "op_id": f"{self.sender_type}-{self.op}",
            "data": {
                "conversation_id": conversation_id,
                "content": f"bench message {self.op} t={stamp}",
                "sender_type": self.sender_type,
                "message_type": 1,
            },
        }
        self.stats.sent += 1
        await self.ws.send(json.dumps(frame))

    async def read(self) -> None:
        stats = self.stats
        try:
            async for raw in self.ws:
                now = time.perf_counter_ns()
                frame = json.loads(raw)
                if frame.get("type") == "push_message":
                    if frame.get("action") != "kefu_message":
                        continue
                    stamp = int(frame["content"].rsplit("t=", 1)[1])
                    if stats.measuring:
                        stats.delivered += 1
                        stats.latencies.append((now - stamp) / 1e6)
                    if self.answer:
                        await self.send(frame["conversation_id"])
                elif frame.get("success") is False:
                    stats.errors.append(frame.get("message"))
                elif stats.measuring:
                    stats.acked += 1
        except websockets.ConnectionClosed:
            pass


class Stats:
    def __init__(self):
        self.measuring = False
        self.sent = self.delivered = self.acked = 0
        self.latencies: list = []
        self.errors: list = []
        self.client_lags: list = []  # ms by which the load client's own loop overshot


async def watch_client_loop(stats: Stats, tick: float = 0.005) -> None:
    """The load client's own stall monitor: latency is stamped by this process, so a
    moment in which its event loop (or the OS) did not run it inflates the figures
    exactly as a server stall would. Printed beside them to tell the two apart."""
    while True:
        start = time.perf_counter()
        await asyncio.sleep(tick)
        if stats.measuring:
            stats.client_lags.append(1e3 * (time.perf_counter() - start - tick))


async def connect(url: str, token: str):
    ws = await websockets.connect(url, compression="deflate", open_timeout=60, max_queue=None)
    await ws.send(json.dumps({"action": "login", "op_id": "login", "data": {"token": token}}))
    reply = json.loads(await ws.recv())
    if not reply.get("success"):
        raise RuntimeError(f"login failed: {reply}")
    return ws


async def setup_kefu(server: Server, args, stats: Stats):
    """Agents via the CLI, users via JWT + getConversation; returns [(user, agent, conv)]."""
    per_agent = math.ceil(args.pairs / args.agents)
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        agents = list(
            pool.map(
                lambda i: server.cli(
                    "kefu", "create-agent", f"agent{i}", "--max-concurrent", str(per_agent)
                ),
                range(args.agents),
            )
        )
    url = server.ws_url()
    agent_sides = {}
    for a in agents:
        agent_sides[a["kefu_id"]] = Side(await connect(url, a["token"]), 2, stats)
    sem = asyncio.Semaphore(20)

    async def one_user(i):
        async with sem:
            token = host_jwt(f"bench-user-{i}")
            side = Side(await connect(url, token), 1, stats)
            status, body = await http_get(server.base, "/api/kefu/message/getConversation", token)
            if status != 200 or body["data"]["kefu_id"] is None:
                raise RuntimeError(f"getConversation: {status} {body}")
            return side, agent_sides[body["data"]["kefu_id"]], body["data"]["id"]

    pairs = await asyncio.gather(*(one_user(i) for i in range(args.pairs)))
    return pairs, list(agent_sides.values())


async def setup_relay(server: Server, args, stats: Stats):
    """The same shape on the relay: conversation i is room i; one socket per agent."""
    url = server.ws_url()
    per_agent = math.ceil(args.pairs / args.agents)
    agents = []
    for a in range(args.agents):
        rooms = ",".join(str(i) for i in range(a * per_agent, min(args.pairs, (a + 1) * per_agent)))
        agents.append(Side(await connect(url, rooms), 2, stats))
    pairs = []
    for i in range(args.pairs):
        user = Side(await connect(url, str(i)), 1, stats)
        pairs.append((user, agents[i // per_agent], i))
    return pairs, agents


async def run(args, relay: bool) -> dict:
    raise_nofile()
    steady_client_malloc()  # else the first run in a process is the client's slowest
    app = "bench.relay_app:app" if relay else "app:app"
    settings = {"ws_deflate": 1} if args.deflate else {}
    # One bench agent socket carries pairs/agents conversations at full speed: far above
    # the per-socket frame limit meant for people (20/s), so lift it for the bench.
    settings.update(ws_rate_per_second=1000000, ws_rate_burst=1000000)
    server = Server(app, count=args.count_instructions, **settings).start()
    stats = Stats()
    busy = busy_disk(server.tmp) if args.busy_disk else None
    try:
        setup = setup_relay if relay else setup_kefu
        pairs, agents = await setup(server, args, stats)
        sides = [p[0] for p in pairs] + agents
        readers = [asyncio.create_task(s.read()) for s in sides]
        readers.append(asyncio.create_task(watch_client_loop(stats)))
        me = psutil.Process()
        tasks = []
        if args.rate:
            # open loop: each side of each pair sends on its own schedule
            interval = 2 * args.pairs / args.rate

            async def ticker(side, conv):
                await asyncio.sleep(random.random() * interval)
                nxt = time.perf_counter()
                while not stop.is_set():
                    await side.send(conv)
                    nxt += interval
                    delay = nxt - time.perf_counter()
                    if delay > 0:
                        await asyncio.sleep(delay)

            stop = asyncio.Event()
            for user, agent, conv in pairs:
                tasks += [
                    asyncio.create_task(ticker(user, conv)),
                    asyncio.create_task(ticker(agent, conv)),
                ]
        else:
            # closed loop: a push makes the receiving side answer in the same conversation
            by_conv = {conv: (user, agent) for user, agent, conv in pairs}
            for s in sides:
                s.answer = True
            for conv, (user, _agent) in by_conv.items():
                for _ in range(args.window):
                    await user.send(conv)
        await asyncio.sleep(args.warmup)
        stall0 = server.stall(reset=True)
        commits0 = _commits(stall0)
        cpu0, me_cpu0 = server.cpu_seconds(), sum(me.cpu_times()[:2])
        hub0 = server.hub_cpu_seconds()
        spy = None
        if args.profile:
            spy = subprocess.Popen(
                [
                    str(Path(sys.executable).parent / "py-spy"),
                    "record",
                    "--format",
                    "raw",
                    *(["--native"] if os.environ.get("SPY_NATIVE") else []),
                    "-r",
                    "200",
                    "-d",
                    str(int(args.duration)),
                    "-o",
                    args.profile,
                    "-p",
                    str(server.worker.pid),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        t0 = time.perf_counter()
        stats.measuring = True
        await asyncio.sleep(args.duration)
        stats.measuring = False
        elapsed = time.perf_counter() - t0
        if spy is not None:
            await asyncio.to_thread(spy.wait)
        server_cpu = server.cpu_seconds() - cpu0
        hub_cpu = server.hub_cpu_seconds() - hub0
        client_cpu = sum(me.cpu_times()[:2]) - me_cpu0
        stall = server.stall()
        commits = [b - a for a, b in zip(commits0, _commits(stall), strict=True)]
        rss = server.rss()
        for s in sides:
            s.answer = False
        if args.rate:
            stop.set()
        for t in tasks:
            t.cancel()
        await asyncio.sleep(0.5)
        for r in readers:
            r.cancel()
        for s in sides:
            s.ws.transport.abort()
        lat = sorted(stats.latencies)
        if server.counter:
            await asyncio.to_thread(server.stop)  # callgrind writes its totals at exit
            return {"sent": stats.sent, "instructions": server.counter.instructions}
        return {
            "app": "relay" if relay else "kefu",
            "pairs": args.pairs,
            "msgs_per_s": stats.delivered / elapsed,
            "acks_per_s": stats.acked / elapsed,
            "p50_ms": percentile(lat, 50),
            "p95_ms": percentile(lat, 95),
            "p99_ms": percentile(lat, 99),
            "max_ms": lat[-1] if lat else float("nan"),
            "server_cpu_pct": 100 * server_cpu / elapsed,
            "cpu_us_per_msg": 1e6 * server_cpu / max(1, stats.delivered),
            "hub_us_per_msg": 1e6 * hub_cpu / max(1, stats.delivered),
            "client_cpu_pct": 100 * client_cpu / elapsed,
            "client_lag_ms": max(stats.client_lags, default=float("nan")),
            "client_lags_over_20ms": sum(lag > 20 for lag in stats.client_lags),
            "worst_stall_ms": stall["worst_ms"],
            "stalls_over_10ms": _over(stall, 10),
            "stalls_over_20ms": _over(stall, 20),
            "worst_stall_split": _split_text(stall.get("worst_split_ms")),
            "over_10ms_split": _split_text(stall.get("over_10ms_split_ms")),
            "gc_worst_ms": stall.get("gc_worst_ms", float("nan")),
            "gc_us_per_msg": 1e3 * stall.get("gc_total_ms", float("nan")) / max(1, stats.delivered),
            "jobs_per_commit": commits[0] / commits[1] if commits[1] else float("nan"),
            "checkpoint_locks": stall.get("checkpoint_locked_runs", 0)
            - stall0.get("checkpoint_locked_runs", 0),
            "checkpoint_lock_worst_ms": stall.get("checkpoint_locked_worst_ms", float("nan")),
            "rss_mb": rss / 2**20,
            "errors": len(stats.errors),
            "first_error": stats.errors[0] if stats.errors else None,
            "longest_stints": stall.get("longest_stints", {}),
        }
    finally:
        if busy is not None:
            os.killpg(busy.pid, signal.SIGKILL)
            busy.wait()
        server.stop()


def busy_disk(folder: Path) -> subprocess.Popen:
    """A neighbour that keeps the server's disk busy: 1 MB direct writes (past the page
    cache) to a file next to the database, over and over, until killed."""
    loop = f"while :; do dd if=/dev/zero of={folder}/busy.bin bs=1M count=2000 oflag=direct"
    return subprocess.Popen(["sh", "-c", loop + " 2>/dev/null; done"], start_new_session=True)


def _over(stall: dict, bound_ms: int) -> int:
    """How many loop iterations overshot by more than ``bound_ms`` (a bucket bound)."""
    histogram = stall["overshoot_histogram"]
    return sum(n for label, n in histogram.items() if _bound(label) > bound_ms)


def _split_text(split: dict | None) -> str:
    """The stall monitor's split of stalled time: the hub thread on a core / waiting
    for one (the OS ran other threads) / stolen by the hypervisor / none of those
    (blocked, or idle in its poll)."""
    if not split:
        return "n/a"
    text = "{on_core:.1f} / {waiting_for_core:.1f} / {stolen_by_host:.1f} / {blocked_or_idle:.1f}"
    text = text.format(**split)
    return f"{split['overshoot']:.1f} over: {text}" if "overshoot" in split else text


def _bound(label: str) -> float:
    """The upper bound of a histogram bucket label ("<=20ms", or ">1000ms": infinite)."""
    return float("inf") if label.startswith(">") else float(label[2:-2])


def _commits(stall: dict) -> tuple[int, int]:
    """(jobs, transactions) of SQLite's group commit so far; zeros without one."""
    return stall.get("group_commit_jobs", 0), stall.get("group_commit_transactions", 0)


FIELDS = [
    ("msgs_per_s", "delivered msgs/s", "{:.0f}"),
    ("acks_per_s", "send acks/s", "{:.0f}"),
    ("p50_ms", "latency p50 ms", "{:.1f}"),
    ("p95_ms", "latency p95 ms", "{:.1f}"),
    ("p99_ms", "latency p99 ms", "{:.1f}"),
    ("max_ms", "latency max ms", "{:.1f}"),
    ("server_cpu_pct", "server CPU %", "{:.0f}"),
    ("cpu_us_per_msg", "server CPU us/msg", "{:.0f}"),
    ("hub_us_per_msg", "hub thread us/msg", "{:.0f}"),
    ("client_cpu_pct", "load client CPU %", "{:.0f}"),
    ("client_lag_ms", "client worst lag ms", "{:.1f}"),
    ("client_lags_over_20ms", "client lags > 20 ms", "{}"),
    ("worst_stall_ms", "worst hub stall ms", "{:.1f}"),
    ("stalls_over_10ms", "stalls over 10 ms", "{}"),
    ("stalls_over_20ms", "stalls over 20 ms", "{}"),
    ("worst_stall_split", "cpu/wait/steal/block", "{}"),
    ("over_10ms_split", "all >10 ms, split", "{}"),
    ("gc_worst_ms", "longest GC ms", "{:.1f}"),
    ("gc_us_per_msg", "GC us/msg", "{:.1f}"),
    ("jobs_per_commit", "writes per commit", "{:.1f}"),
    ("checkpoint_locks", "checkpoint locks", "{}"),
    ("checkpoint_lock_worst_ms", "ckpt lock worst ms", "{:.1f}"),
    ("rss_mb", "server RSS MB", "{:.0f}"),
    ("errors", "error replies", "{}"),
]


def report(result: dict, base: dict | None = None) -> None:
    print(f"app={result['app']} pairs={result['pairs']}")
    for key, label, fmt in FIELDS:
        line = f"  {label:<20} {fmt.format(result[key])}"
        other = base.get(key) if base else None
        numeric = all(isinstance(v, int | float) for v in (result[key], other))
        if numeric and other and not math.isnan(other):  # text (a stall's split): no ratio
            line += f"   ({result[key] / base[key]:.2f}x relay {fmt.format(base[key])})"
        print(line)
    if result["first_error"]:
        print(f"  first error reply: {result['first_error']}")
    print_culprits(result["longest_stints"])


def parser(doc: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--pairs", type=int, default=200)
    p.add_argument("--agents", type=int, default=20)
    p.add_argument("--window", type=int, default=1, help="messages in flight per pair")
    p.add_argument("--rate", type=float, default=0, help="open loop: total messages/s")
    p.add_argument("--duration", type=float, default=20.0)
    p.add_argument("--warmup", type=float, default=3.0)
    p.add_argument("--deflate", action="store_true", help="server accepts permessage-deflate")
    p.add_argument(
        "--busy-disk", action="store_true", help="keep the disk busy meanwhile (dd, Linux)"
    )
    p.add_argument(
        "--profile", metavar="FILE", help="py-spy the worker (raw stacks) while measuring"
    )
    p.add_argument(
        "--count-instructions",
        action="store_true",
        help="only count the worker's instructions per message: two runs under valgrind's\n"
        "callgrind, the second three times as long (use a light load: --rate 40)",
    )
    return p


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--relay", action="store_true", help="only the bare relay")
    args = p.parse_args()
    print(f"machine: {machine()}")
    mode = f"open loop {args.rate:.0f}/s" if args.rate else f"closed loop, window {args.window}"
    print(f"load: {args.pairs} pairs, {args.agents} agents, {mode}, {args.duration:.0f} s")
    if args.count_instructions:
        count_instructions(args)
        return
    report(asyncio.run(run(args, relay=args.relay)))


def count_instructions(args) -> None:
    """Instructions per message from the difference of a run and one three times as
    long: what start-up, sign-in and warm-up cost is the same in both."""
    runs = []
    for duration in (args.duration, 3 * args.duration):
        args.duration = duration
        runs.append(asyncio.run(run(args, relay=args.relay)))
        print(
            f"  {duration:.0f} s: {runs[-1]['sent']} messages, "
            f"{runs[-1]['instructions']:,} instructions"
        )
    short, long = runs
    per = (long["instructions"] - short["instructions"]) / (long["sent"] - short["sent"])
    print(f"  instructions/msg     {per:,.0f}")


if __name__ == "__main__":
    main()
