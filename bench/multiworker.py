"""Stored-and-delivered messages/s on PostgreSQL: one worker, then two (KEFU_BROKER=postgres).

Each run starts gunicorn on a fresh PostgreSQL database (127.0.0.1:5432, user postgres)
with ``--agents`` agents (ds/kefu ``/ws``) and ``--pairs`` users who each open a
conversation (REST) and so get an agent. Then for ``--duration`` seconds every pair plays
ping-pong with ``--window`` messages in flight: a push received is answered at once.
Every message is stored (``kefu_message_send``) and counted when its push reaches the
other side. With two workers the kernel spreads sockets over both, so about half the
pushes cross workers through LISTEN/NOTIFY. Configurations:

- ``1w memory``: one worker, in-process hub (the default deployment), for reference;
- ``1w postgres``: one worker, every push through the PostgreSQL broker;
- ``2w postgres``: two workers sharing one database.

    .venv/bin/python bench/multiworker.py --pairs 100 --duration 15
"""

import argparse
import asyncio
import json
import math
import sys
import time
import uuid
from pathlib import Path

import psutil
import psycopg2
import websockets

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import Server, host_jwt, http_get, machine, percentile, raise_nofile

PG_ADMIN = {"host": "127.0.0.1", "port": 5432, "user": "postgres", "dbname": "postgres"}


class Stats:
    def __init__(self):
        self.measuring = False
        self.delivered = 0
        self.latencies: list[float] = []
        self.errors: list = []


class Side:
    """One socket; answers every push about its conversations with a new message."""

    def __init__(self, ws, sender_type: int, stats: Stats):
        self.ws, self.sender_type, self.stats = ws, sender_type, stats
        self.op = 0

    async def send(self, conversation_id: int) -> None:
        self.op += 1
        await self.ws.send(
            json.dumps(
                {
                    "action": "kefu_message_send",
                    "op_id": f"{self.sender_type}-{self.op}",
                    "data": {
                        "conversation_id": conversation_id,
                        "sender_type": self.sender_type,
                        "content": f"bench {self.op} t={time.perf_counter_ns()}",
                    },
                }
            )
        )

    async def read(self) -> None:
        try:
            async for raw in self.ws:
                frame = json.loads(raw)
                if frame.get("action") == "kefu_message":
                    if self.stats.measuring:
                        stamp = int(frame["content"].rsplit("t=", 1)[1])
                        self.stats.delivered += 1
                        self.stats.latencies.append((time.perf_counter_ns() - stamp) / 1e6)
                    await self.send(frame["conversation_id"])
                elif frame.get("success") is False:
                    self.stats.errors.append(frame.get("message"))
        except websockets.ConnectionClosed:
            pass


async def connect(server: Server, token: str):
    ws = await websockets.connect(server.ws_url(), open_timeout=60, max_queue=None)
    await ws.send(json.dumps({"action": "login", "op_id": "l", "data": {"token": token}}))
    reply = json.loads(await ws.recv())
    if not reply.get("success"):
        raise RuntimeError(f"login failed: {reply}")
    return ws


def fresh_database() -> str:
    name = f"kefu_bench_{uuid.uuid4().hex[:8]}"
    conn = psycopg2.connect(**PG_ADMIN)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}"')
    conn.close()
    return name


def drop_database(name: str) -> None:
    conn = psycopg2.connect(**PG_ADMIN)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    conn.close()


def worker_cpu(server: Server) -> float:
    total = 0.0
    for child in psutil.Process(server.proc.pid).children():
        t = child.cpu_times()
        total += t.user + t.system
    return total


async def measure(server: Server, args) -> dict:
    stats = Stats()
    per_agent = math.ceil(args.pairs / args.agents)
    agents = [
        server.cli("kefu", "create-agent", f"agent{i}", "--max-concurrent", str(per_agent))
        for i in range(args.agents)
    ]
    sides = {a["kefu_id"]: Side(await connect(server, a["token"]), 2, stats) for a in agents}
    pairs = []
    for i in range(args.pairs):
        token = host_jwt(f"bench-user-{i}")
        user = Side(await connect(server, token), 1, stats)
        status, body = await http_get(server.base, "/api/kefu/message/getConversation", token)
        if status != 200 or body["data"]["kefu_id"] is None:
            raise RuntimeError(f"getConversation: {status} {body}")
        pairs.append((user, body["data"]["id"]))
    readers = [asyncio.create_task(s.read()) for s in [*sides.values(), *(u for u, _ in pairs)]]
    for user, conv in pairs:
        for _ in range(args.window):
            await user.send(conv)
    await asyncio.sleep(args.warmup)
    me = psutil.Process()
    cpu0, stats.measuring, t0 = worker_cpu(server), True, time.perf_counter()
    client0 = sum(me.cpu_times()[:2])
    await asyncio.sleep(args.duration)
    stats.measuring, elapsed = False, time.perf_counter() - t0
    cpu = worker_cpu(server) - cpu0
    client = sum(me.cpu_times()[:2]) - client0
    for task in readers:
        task.cancel()
    lat = sorted(stats.latencies)
    return {
        "msgs_per_s": stats.delivered / elapsed,
        "p50_ms": percentile(lat, 50),
        "p99_ms": percentile(lat, 99),
        "worker_cpu_pct": 100 * cpu / elapsed,
        "client_cpu_pct": 100 * client / elapsed,
        "errors": len(stats.errors),
    }


def run(label: str, workers: int, broker: str, args) -> dict:
    name = fresh_database()
    server = Server(
        workers=workers,
        broker=broker,
        log_level="warning",
        database_url=f"postgresql://postgres@127.0.0.1:5432/{name}",
        ws_rate_per_second=100000,
        ws_rate_burst=100000,
    )
    try:
        server.start()
        result = asyncio.run(measure(server, args))
    finally:
        server.stop()
        drop_database(name)
    print(
        f"{label:12} {result['msgs_per_s']:8.0f} msg/s   p50 {result['p50_ms']:6.1f} ms   "
        f"p99 {result['p99_ms']:6.1f} ms   workers' CPU {result['worker_cpu_pct']:4.0f}%   "
        f"load client CPU {result['client_cpu_pct']:4.0f}%   "
        f"errors {result['errors']}",
        flush=True,
    )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pairs", type=int, default=100)
    parser.add_argument("--agents", type=int, default=4)
    parser.add_argument("--window", type=int, default=2, help="messages in flight per pair")
    parser.add_argument("--duration", type=float, default=15.0)
    parser.add_argument("--warmup", type=float, default=3.0)
    args = parser.parse_args()
    raise_nofile()
    print(
        f"# {machine()}; {args.pairs} pairs, {args.agents} agents, window {args.window}, "
        f"{args.duration:g} s",
        flush=True,
    )
    run("1w memory", 1, "memory", args)
    run("1w postgres", 1, "postgres", args)
    run("2w postgres", 2, "postgres", args)


if __name__ == "__main__":
    main()
