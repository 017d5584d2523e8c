"""Capacity: N authenticated ds/kefu /ws connections held idle and pinged.

Starts the real server (gunicorn, gevent worker, fresh SQLite), opens N sockets from
this process (``websockets``, offering permessage-deflate like a browser), signs each
in with its own host JWT (``login``; the user is provisioned on first use), holds them
for ``--hold`` seconds while every socket sends a ds/kefu ``ping`` every
``--ping-every`` seconds, and prints connections, the worker's RSS, RSS per connection,
the connect rate, ping round-trip times and the hub's worst stall.

    .venv/bin/python bench/capacity.py --connections 10000
    .venv/bin/python bench/capacity.py --connections 2000 --relay   # the bare relay
"""

import argparse
import asyncio
import json
import random
import sys
import time
from pathlib import Path

import websockets

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import Server, host_jwt, machine, percentile, print_culprits, raise_nofile


async def open_one(url: str, token: str, rtts: list):
    ws = await websockets.connect(url, compression="deflate", open_timeout=60, max_queue=64)
    await ws.send(json.dumps({"action": "login", "op_id": "login", "data": {"token": token}}))
    reply = json.loads(await ws.recv())
    if not reply.get("success"):
        raise RuntimeError(f"login failed: {reply}")
    return ws


async def pinger(ws, every: float, until: float, rtts: list, errors: list):
    await asyncio.sleep(random.random() * every)
    n = 0
    while time.monotonic() < until:
        n += 1
        t0 = time.perf_counter()
        try:
            await ws.send(json.dumps({"action": "ping", "op_id": n}))
            reply = json.loads(await ws.recv())
        except Exception as exc:  # a dropped socket is a finding, not a crash
            errors.append(repr(exc))
            return
        rtts.append(time.perf_counter() - t0)
        if reply.get("message") != "pong":
            errors.append(f"unexpected {reply}")
        await asyncio.sleep(every)


async def run(args) -> dict:
    raise_nofile()
    settings = {"ws_deflate": 1} if args.deflate else {}
    server = Server("bench.relay_app:app" if args.relay else "app:app", **settings).start()
    try:
        url = server.ws_url()
        rss0 = server.rss()
        objects0 = server.stall()["gc_tracked_objects"]
        tokens = [
            f"room:{i}" if args.relay else host_jwt(f"cap-{i}") for i in range(args.connections)
        ]
        conns, errors = [], []
        sem = asyncio.Semaphore(args.concurrency)

        async def connect(i):
            async with sem:
                try:
                    conns.append(await open_one(url, tokens[i], []))
                except Exception as exc:
                    errors.append(repr(exc))
                if len(conns) % 1000 == 0 and len(conns):
                    print(f"  {len(conns)} connected ({server.rss() / 2**20:.0f} MB)", flush=True)

        t0 = time.perf_counter()
        cpu0 = server.cpu_seconds()
        await asyncio.gather(*(connect(i) for i in range(args.connections)))
        connect_s = time.perf_counter() - t0
        connect_cpu = server.cpu_seconds() - cpu0
        await asyncio.sleep(2)
        server.stall(reset=True)
        rtts: list = []
        ping_errors: list = []
        until = time.monotonic() + args.hold
        cpu1 = server.cpu_seconds()
        await asyncio.gather(
            *(pinger(ws, args.ping_every, until, rtts, ping_errors) for ws in conns)
        )
        hold_cpu = server.cpu_seconds() - cpu1
        stall = server.stall()
        rss = server.rss()
        rtts.sort()
        held = len(conns) - len({e for e in ping_errors if "Closed" in e})
        result = {
            "app": "relay" if args.relay else "kefu",
            "connections": len(conns),
            "held_after_pings": held,
            "connect_errors": len(errors),
            "rss_mb": rss / 2**20,
            "rss_start_mb": rss0 / 2**20,
            "rss_per_conn_kb": (rss - rss0) / max(1, len(conns)) / 1024,
            "connect_rate": len(conns) / connect_s,
            "connect_s": connect_s,
            "connect_cpu_s": connect_cpu,
            "pings": len(rtts),
            "ping_errors": len(ping_errors),
            "ping_p50_ms": percentile(rtts, 50) * 1000,
            "ping_p99_ms": percentile(rtts, 99) * 1000,
            "hold_cpu_pct": 100 * hold_cpu / args.hold,
            "worst_stall_ms": stall["worst_ms"],
            "gc_worst_ms": stall.get("gc_worst_ms", float("nan")),
            "gc_worst_cpu_ms": stall.get("gc_worst_cpu_ms", float("nan")),
            "gc_runs": stall.get("gc_runs_by_generation"),
            "objects_per_conn": (stall["gc_tracked_objects"] - objects0) / max(1, len(conns)),
            "objects": stall["gc_tracked_objects"],
            "frozen": stall["gc_frozen_objects"],
            "longest_stints": stall.get("longest_stints", {}),
        }
        if errors:
            result["first_error"] = errors[0]
        for ws in conns:
            ws.transport.abort()
        return result
    finally:
        server.stop()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--connections", type=int, default=10000)
    p.add_argument("--concurrency", type=int, default=200, help="handshakes in flight")
    p.add_argument("--hold", type=float, default=20.0, help="seconds to hold and ping")
    p.add_argument("--ping-every", type=float, default=10.0, help="seconds between pings")
    p.add_argument("--relay", action="store_true", help="run against bench/relay_app.py")
    p.add_argument("--deflate", action="store_true", help="server accepts permessage-deflate")
    args = p.parse_args()
    print(f"machine: {machine()}")
    r = asyncio.run(run(args))
    print(
        f"app={r['app']} deflate={'on' if args.deflate else 'off'}\n"
        f"connections held: {r['connections']} (connect errors {r['connect_errors']}, "
        f"still answering after the hold: {r['held_after_pings']})\n"
        f"server RSS: {r['rss_mb']:.1f} MB (idle server {r['rss_start_mb']:.1f} MB), "
        f"{r['rss_per_conn_kb']:.1f} KB per connection\n"
        f"connect+login: {r['connect_rate']:.0f}/s ({r['connect_s']:.1f} s, "
        f"server CPU {r['connect_cpu_s']:.1f} s)\n"
        f"pings: {r['pings']} (errors {r['ping_errors']}), rtt p50 {r['ping_p50_ms']:.1f} ms, "
        f"p99 {r['ping_p99_ms']:.1f} ms; server CPU while held {r['hold_cpu_pct']:.0f}%; "
        f"worst hub stall {r['worst_stall_ms']:.1f} ms\n"
        f"garbage collections while held (gen 0/1/2): {r['gc_runs']}, "
        f"longest {r['gc_worst_ms']:.1f} ms (CPU {r['gc_worst_cpu_ms']:.1f} ms); "
        f"tracked objects {r['objects']} "
        f"({r['objects_per_conn']:.0f} per connection, {r['frozen']} frozen)"
    )
    if "first_error" in r:
        print(f"first connect error: {r['first_error']}")
    print_culprits(r["longest_stints"])


if __name__ == "__main__":
    main()
