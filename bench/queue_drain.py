"""Queue: many users arriving at once, a few agents, everyone served in the end.

Starts the real server (gunicorn, gevent worker, fresh SQLite), creates ``--agents``
agents through the CLI (``--max-concurrent`` each) and connects them to ``/ws``. An
agent ends each conversation (``kefu_message_end``) as soon as it is assigned
(``kefu_conversation_assigned``), so the queue drains. Then ``--users`` users arrive at
once, signed in with host JWTs, by one of two protocols:

- ``waiter`` (default): ``/v1/ws/connect/user`` ``auth`` + ``connect``; a user is served
  at ``connect_success`` and counts every ``connect_queue`` frame (its place in the
  queue, re-sent whenever it changes);
- ``dskefu``: ``/ws`` ``login`` + REST ``getConversation``; a user is served when the
  reply names an agent or ``kefu_conversation_assigned`` arrives (ds/kefu has no queue
  position frame, so that count is 0).

Prints the time until every user was served, served/s, the queue position updates
sent, the server's CPU and RSS, and the hub's worst stall.

    .venv/bin/python bench/queue_drain.py --users 1000 --agents 20
    .venv/bin/python bench/queue_drain.py --users 1000 --agents 20 --protocol dskefu
"""

import argparse
import asyncio
import concurrent.futures
import json
import sys
import time
from pathlib import Path

import websockets

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import Server, host_jwt, http_get, machine, percentile, print_culprits, raise_nofile


async def connect(url: str):
    return await websockets.connect(url, compression="deflate", open_timeout=60, max_queue=None)


async def agent_loop(ws, counts: dict) -> None:
    """End every conversation as soon as it is assigned to this agent."""
    try:
        async for raw in ws:
            frame = json.loads(raw)
            if frame.get("action") == "kefu_conversation_assigned":
                counts["assigned"] += 1
                end = {
                    "action": "kefu_message_end",
                    "op_id": f"end-{frame['conversation_id']}",
                    "data": {"conversation_id": frame["conversation_id"]},
                }
                await ws.send(json.dumps(end))
            elif frame.get("success") is False:
                counts["agent_errors"] += 1
    except websockets.ConnectionClosed:
        pass


async def waiter_user(url: str, i: int, start: asyncio.Event, served: list, counts: dict):
    ws = await connect(url)
    await ws.send(
        json.dumps({"type": "auth", "op_id": "a", "payload": {"token": host_jwt(f"q{i}")}})
    )
    reply = json.loads(await ws.recv())
    if reply.get("type") != "auth_success":
        raise RuntimeError(f"auth: {reply}")
    counts["ready"] += 1
    await start.wait()
    t0 = time.perf_counter()
    await ws.send(json.dumps({"type": "connect", "op_id": "c", "payload": {}}))
    try:
        async for raw in ws:
            frame = json.loads(raw)
            kind = frame.get("type")
            if kind == "connect_queue":
                counts["queue_updates"] += 1
            elif kind == "connect_success":
                served.append(time.perf_counter() - t0)
                break
            elif kind in ("error", "not_connect"):
                counts["user_errors"] += 1
                counts.setdefault("first_user_error", frame)
                break
    finally:
        await ws.close()


async def dskefu_user(server, i: int, start: asyncio.Event, served: list, counts: dict):
    token = host_jwt(f"q{i}")
    ws = await connect(server.ws_url())
    await ws.send(json.dumps({"action": "login", "op_id": "l", "data": {"token": token}}))
    json.loads(await ws.recv())
    counts["ready"] += 1
    await start.wait()
    t0 = time.perf_counter()
    status, body = await http_get(server.base, "/api/kefu/message/getConversation", token, 120)
    try:
        if status != 200:
            counts["user_errors"] += 1
            counts.setdefault("first_user_error", body)
            return
        if body["data"]["kefu_id"] is not None:
            served.append(time.perf_counter() - t0)
            return
        async for raw in ws:
            frame = json.loads(raw)
            if frame.get("action") == "kefu_conversation_assigned":
                served.append(time.perf_counter() - t0)
                return
    finally:
        await ws.close()


async def run(args) -> dict:
    raise_nofile()
    server = Server("app:app").start()
    try:
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            agents = list(
                pool.map(
                    lambda i: server.cli(
                        "kefu",
                        "create-agent",
                        f"qa{i}",
                        "--max-concurrent",
                        str(args.max_concurrent),
                    ),
                    range(args.agents),
                )
            )
        counts = {
            "ready": 0,
            "assigned": 0,
            "agent_errors": 0,
            "queue_updates": 0,
            "user_errors": 0,
        }
        agent_socks = []
        for a in agents:
            ws = await connect(server.ws_url())
            await ws.send(
                json.dumps({"action": "login", "op_id": "l", "data": {"token": a["token"]}})
            )
            json.loads(await ws.recv())
            agent_socks.append(ws)
        agent_tasks = [asyncio.create_task(agent_loop(ws, counts)) for ws in agent_socks]
        start, served = asyncio.Event(), []
        if args.protocol == "waiter":
            url = server.ws_url("/v1/ws/connect/user")
            users = [waiter_user(url, i, start, served, counts) for i in range(args.users)]
        else:
            users = [dskefu_user(server, i, start, served, counts) for i in range(args.users)]
        user_tasks = [asyncio.create_task(u) for u in users]
        deadline = time.monotonic() + 120
        while counts["ready"] < args.users and time.monotonic() < deadline:
            if any(t.done() for t in user_tasks):
                break  # a sign-in failed: start anyway, it is reported below
            await asyncio.sleep(0.1)
        await asyncio.sleep(1)
        server.stall(reset=True)
        cpu0 = server.cpu_seconds()
        t0 = time.perf_counter()
        start.set()
        done, pending = await asyncio.wait(user_tasks, timeout=args.timeout)
        elapsed = time.perf_counter() - t0
        server_cpu = server.cpu_seconds() - cpu0
        stall = server.stall()
        rss = server.rss()
        failures = [t.exception() for t in done if t.exception()]
        for t in [*pending, *agent_tasks]:
            t.cancel()
        for ws in agent_socks:
            ws.transport.abort()
        served.sort()
        return {
            "users": args.users,
            "served": len(served),
            "timed_out": len(pending),
            "failures": len(failures),
            "first_failure": repr(failures[0]) if failures else None,
            "all_served_s": served[-1] if len(served) == args.users else float("nan"),
            "elapsed_s": elapsed,
            "wait_p50_s": percentile(served, 50),
            "wait_p99_s": percentile(served, 99),
            "queue_updates": counts["queue_updates"],
            "assigned": counts["assigned"],
            "user_errors": counts["user_errors"],
            "first_user_error": counts.get("first_user_error"),
            "agent_errors": counts["agent_errors"],
            "server_cpu_s": server_cpu,
            "rss_mb": rss / 2**20,
            "worst_stall_ms": stall["worst_ms"],
            "stalls": stall["overshoot_histogram"],
            "gc_worst_ms": stall.get("gc_worst_ms", float("nan")),
            "gc_worst_cpu_ms": stall.get("gc_worst_cpu_ms", float("nan")),
            "turns_deferred": stall.get("turns_deferred", 0),
            "writes_per_commit": stall.get("group_commit_jobs", 0)
            / max(1, stall.get("group_commit_transactions", 0)),
            "longest_stints": stall.get("longest_stints", {}),
        }
    finally:
        server.stop()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--users", type=int, default=1000)
    p.add_argument("--agents", type=int, default=20)
    p.add_argument("--max-concurrent", type=int, default=5)
    p.add_argument("--protocol", choices=("waiter", "dskefu"), default="waiter")
    p.add_argument("--timeout", type=float, default=180.0, help="give up after this many s")
    args = p.parse_args()
    print(f"machine: {machine()}")
    print(
        f"load: {args.users} users at once ({args.protocol}), {args.agents} agents "
        f"(max_concurrent {args.max_concurrent}) ending each conversation on assignment"
    )
    r = asyncio.run(run(args))
    print(
        f"served: {r['served']}/{r['users']} (timed out {r['timed_out']}, failed {r['failures']}, "
        f"error replies {r['user_errors']}, agent errors {r['agent_errors']})\n"
        f"time until everyone served: {r['all_served_s']:.2f} s "
        f"({r['served'] / r['elapsed_s']:.0f} served/s); wait p50 {r['wait_p50_s']:.2f} s, "
        f"p99 {r['wait_p99_s']:.2f} s\n"
        f"queue position updates received (connect_queue): {r['queue_updates']}\n"
        f"server CPU {r['server_cpu_s']:.1f} s, RSS {r['rss_mb']:.0f} MB, "
        f"worst hub stall {r['worst_stall_ms']:.1f} ms (longest GC {r['gc_worst_ms']:.1f} ms, "
        f"CPU {r['gc_worst_cpu_ms']:.1f} ms)\n"
        f"stalls over each bound: {r['stalls']}\n"
        f"handlers that waited for a later loop iteration: {r['turns_deferred']}; "
        f"writes per commit {r['writes_per_commit']:.1f}"
    )
    for key in ("first_failure", "first_user_error"):
        if r[key]:
            print(f"{key}: {r[key]}")
    print_culprits(r["longest_stints"])


if __name__ == "__main__":
    main()
