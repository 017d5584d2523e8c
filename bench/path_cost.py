"""What one message costs the worker between its frame and its pushes, without sockets.

A gevent process builds the app on a fresh SQLite file (the server's settings),
signs in ``--pairs`` customers and ``--agents`` agents on stand-in sockets, and then
runs rounds: in each, every pair's customer (then, next round, its agent) hands one
``kefu_message_send`` frame to its socket's handler, so the group commit stores each
round in one batch, and the reply and the push are written to the stand-ins (which keep
nothing). As in the server, each socket has one handler greenlet for its life, which
reads its frames through ``Connection.frames`` and parks in the hub between them (a
greenlet spawned per frame cost its creation, its death and, on its first use of
peewee's per-greenlet state, that state's creation: about 40,000 instructions per
message the server does not spend). What is measured is the handler, the services, the
batcher, SQLite and the hub; not the kernel, the WebSocket framing or the load client.

Each round's work is the same from run to run: every round is one batch (no time limit
per batch, no gap, no turns: under valgrind a job takes milliseconds), and the WAL
checkpoint runs every ``CHECKPOINT_EVERY`` rounds instead of by the clock. So
``--count-instructions`` (valgrind's callgrind, runs of 10 and 40 rounds, start-up
cancelled out, one hash seed) gives instructions per message that repeat to within
0.2% (0.7% with a random seed per run), where CPU time on this kind of machine moves
by a fifth within a minute. A change's gain can depend on the seed's dict layouts:
``--hash-seed`` measures it under another. For comparing builds, ``--root`` runs
another checkout's code (``git worktree add``).

    .venv/bin/python bench/path_cost.py
    .venv/bin/python bench/path_cost.py --count-instructions
    .venv/bin/python bench/path_cost.py --count-instructions --root /tmp/other
"""

import argparse
import atexit
import gc
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from greenlet import getcurrent

HERE = Path(__file__).resolve().parent.parent
CHECKPOINT_EVERY = 5  # rounds: about what 0.25 s holds at full load


class StandIn:
    """The socket side of a ``Connection``: takes every frame at once, keeps none, and
    gives its handler the frames handed to it, parking it in the hub while there are
    none (as ``OpenSocket.receive`` waits on its socket's watcher)."""

    connected = True

    def __init__(self, hub):
        self.hub = hub
        self.frames = 0
        self.inbox = []
        self.parked = None  # the handler's greenlet while it waits for a frame

    def send_now(self, frame) -> bool:
        self.frames += 1
        return True

    def hand_in(self, raw: str) -> None:
        self.inbox.append(raw)
        if self.parked is not None:
            parked, self.parked = self.parked, None
            self.hub.loop.run_callback(parked.switch)  # as a socket's read watcher wakes it

    def receive(self, timeout=None):
        while not self.inbox:
            self.parked = getcurrent()
            self.hub.switch()
        return self.inbox.pop(0)


def measure(rounds: int, pairs: int, agents: int) -> dict:
    """Runs in the gevent process: CPU seconds and messages of ``rounds`` rounds."""
    from gevent import monkey

    monkey.patch_all()
    import gevent
    from gevent.hub import Waiter, get_hub

    # As the server's workers run (gunicorn.conf.py): no spawning stack kept per greenlet
    # (when this harness spawned a greenlet per message, keeping its stack cost ~45,000
    # instructions per message, a tenth of the figure).
    gevent.config.track_greenlet_tree = False

    import kefu
    from kefu import groupcommit
    from kefu.migrate import upgrade
    from kefu.principal import principal_for
    from kefu.protocols import dskefu
    from kefu.protocols import dskefu_codec as codec
    from kefu.realtime.connection import Connection
    from kefu.realtime.turns import turns
    from kefu.services import accounts, conversations

    path = Path(scratch_dir("kefu-path-")) / "path.db"
    url = f"sqlite:///{path}"
    upgrade(url)
    app = kefu.create_app(
        {"DATABASE_URL": url, "JWT_SECRET": "bench", "UPLOAD_DIR": str(path.parent)}
    )
    live = app.extensions["kefu.live"]
    # Each round one batch, whatever the speed (valgrind runs it ~50 times slower):
    # no time limit per batch, no gap between batches, no turns between handlers.
    groupcommit.MAX_SECONDS = 3600.0
    groupcommit.configure(gap_seconds=0.0)
    turns.budget = 3600.0
    # The WAL checkpoints run every few rounds instead of every 0.25 s of the clock.
    checkpointer = app.extensions["kefu.checkpoint"]
    checkpointer.interval = 1e9
    gevent.sleep(0.5)  # its loop's first sleep ends; the next one lasts the run
    live.limits.update(WS_RATE_PER_SECOND=1e9, WS_RATE_BURST=1e9)
    # Nor the passes that go by the clock (every 10 s the sockets' accounts are read
    # again, and after 30 s each socket's sign-in deadline fires): under valgrind a run
    # lasts minutes, so they added to the figure the slower the machine ran.
    live.limits.update(REVALIDATE_SECONDS=1e9, WS_LOGIN_TIMEOUT_SECONDS=1e9)

    hub = get_hub()
    round_state = {"left": 0, "done": None}

    def serve(conn) -> None:
        """The handler's loop, as dskefu.serve's (its frames, one at a time)."""
        for raw in conn.frames():
            dskefu.handle(conn, raw, live, 1 << 20)
            round_state["left"] -= 1
            if not round_state["left"]:
                hub.loop.run_callback(round_state["done"].switch, None)

    def signed_in(principal):
        conn = Connection(StandIn(hub), codec.DsKefuCodec())
        live.open(conn)
        live.sign_in(conn, principal)
        gevent.spawn(serve, conn)
        return conn

    with app.app_context():
        staff = {}
        for i in range(agents):
            user, profile, _ = accounts.create_agent(f"agent{i}", max_concurrent=pairs)
            staff[profile.id] = signed_in(principal_for(user))
        sides = []
        for i in range(pairs):
            user, _ = accounts.create_user(f"user{i}")
            customer = signed_in(principal_for(user))
            conv, _ = conversations.open_for_user(customer.principal)
            sides.append((conv.id, customer, staff[conv.agent_id]))

    def frame(n: int, conversation_id: int, sender_type: int) -> str:
        data = {"conversation_id": conversation_id, "content": f"bench message {n}"}
        data.update(sender_type=sender_type, message_type=1)
        return json.dumps({"action": "kefu_message_send", "op_id": f"op-{n}", "data": data})

    sent = 0

    def one_round(r: int) -> None:
        nonlocal sent
        round_state["left"] = len(sides)
        round_state["done"] = done = Waiter()
        for conversation_id, customer, agent in sides:
            conn, sender_type = (customer, 1) if r % 2 == 0 else (agent, 2)
            sent += 1
            conn.ws.hand_in(frame(sent, conversation_id, sender_type))
        done.get()
        if r % CHECKPOINT_EVERY == CHECKPOINT_EVERY - 1:
            checkpointer.run()

    # As the server's workers do after start-up (gunicorn.conf.py): what exists by now is
    # kept out of the collections, so a full collection does not walk the start-up heap.
    gc.collect()
    gc.freeze()
    for r in range(4):  # warm-up: caches, the batcher's greenlet and connection
        one_round(r)
    warm = sent
    batcher = groupcommit.active_batcher()
    batches = batcher.transactions
    cpu = time.process_time()
    for r in range(rounds):
        one_round(r)
    cpu = time.process_time() - cpu
    batches = (batcher.transactions - batches) / rounds
    stand_ins = {c.ws for _, customer, agent in sides for c in (customer, agent)}
    written = sum(stand_in.frames for stand_in in stand_ins)
    return {
        "messages": sent - warm,
        "cpu": cpu,
        "frames_per_message": written / sent,
        "batches_per_round": batches,
    }


def scratch_dir(prefix: str) -> str:
    """A temporary directory, removed when this process exits (each run made two, and
    ~200 runs of a session left 700 MB behind)."""
    path = tempfile.mkdtemp(prefix=prefix)
    atexit.register(shutil.rmtree, path, True)
    return path


def callgrind_total(root: Path, rounds: int, args) -> int:
    out = Path(scratch_dir("kefu-path-cg-")) / "callgrind.out"
    command = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", sys.executable]
    command += [__file__, "--rounds", str(rounds), "--pairs", str(args.pairs)]
    command += ["--agents", str(args.agents), "--root", str(root)]
    # One hash seed for every run: with a random one (each process's own) the layout of
    # dicts and sets moved the count by up to 1% between runs of the same code; with a
    # fixed one runs of the same code differed by 0.02-0.16%.
    env = {**os.environ, "PYTHONHASHSEED": str(args.hash_seed)}
    subprocess.run(command, check=True, capture_output=True, env=env)
    for line in out.read_text().splitlines():
        if line.startswith(("summary:", "totals:")):
            return int(line.split()[1])
    raise RuntimeError("no totals in the callgrind output")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rounds", type=int, default=100)
    p.add_argument("--pairs", type=int, default=20, help="messages per round (one batch)")
    # One pair per agent: an agent's socket handles its frames one at a time, so an
    # agent with several pairs would spread its round over several batches.
    p.add_argument("--agents", type=int, default=20)
    p.add_argument("--root", type=Path, default=HERE, help="the checkout whose code runs")
    p.add_argument("--count-instructions", action="store_true")
    p.add_argument("--hash-seed", type=int, default=0, help="PYTHONHASHSEED under callgrind")
    args = p.parse_args()
    root = args.root.resolve()
    if args.count_instructions:
        short, long = 10, 40
        totals = [callgrind_total(root, rounds, args) for rounds in (short, long)]
        per = (totals[1] - totals[0]) / ((long - short) * args.pairs)
        print(f"{root}: {per:,.0f} instructions per message ({args.pairs} per batch)")
        return
    sys.path.insert(0, str(root))
    os.chdir(root)
    result = measure(args.rounds, args.pairs, args.agents)
    us = result["cpu"] / result["messages"] * 1e6
    per = result["frames_per_message"]
    batches = result["batches_per_round"]
    print(f"{root}: {result['messages']} messages, {us:.1f} us CPU each, {per:.1f} frames each")
    print(f"{batches:.2f} batches per round")


if __name__ == "__main__":
    main()
