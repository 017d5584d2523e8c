"""What storing a message costs without sockets: the send job, batched as the server does.

Creates ``--agents`` agents and ``--pairs`` customers with an open conversation each
on a fresh SQLite file (the server's settings), then runs ``messages``' send job in
transactions of ``--batch`` (the group commit's share), from customers and agents at
random, and prints the CPU per message of each round. Between rounds the log is
checkpointed and rewound (outside the timing), as the server's checkpointer does.
No gevent, no sockets, no other work in the process: the figure is the database path
alone, and steadier than the server's on a noisy machine.

    .venv/bin/python bench/store_cost.py
    .venv/bin/python bench/store_cost.py --rounds 5 --batches 400 --profile
"""

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from kefu import create_app, db
from kefu.migrate import upgrade
from kefu.principal import principal_for
from kefu.services import accounts, conversations, messages, presence


def setup(pairs: int, agents: int) -> list:
    """[(customer, agent, conversation id)]: every agent online, each customer served."""
    online = set()
    presence.use(lambda: frozenset(online))
    staff = []
    for i in range(agents):
        user, profile, _ = accounts.create_agent(f"agent{i}", max_concurrent=pairs)
        online.add(profile.id)
        staff.append(principal_for(user))
    by_kefu = {a.kefu_id: a for a in staff}
    result = []
    for i in range(pairs):
        user, _ = accounts.create_user(f"user{i}")
        who = principal_for(user)
        conv, _ = conversations.open_for_user(who)
        result.append((who, by_kefu[conv.agent_id], conv.id))
    return result


def run_batches(pairs: list, batches: int, size: int, counter: list) -> None:
    for _ in range(batches):
        with db.write():
            for _ in range(size):
                customer, agent, conversation_id = random.choice(pairs)
                who = customer if random.random() < 0.5 else agent
                counter[0] += 1
                op_id = f"bench-{counter[0]}"
                messages.send_locked(who, conversation_id, "hello there", 1, None, op_id)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--pairs", type=int, default=200)
    p.add_argument("--agents", type=int, default=20)
    p.add_argument("--batch", type=int, default=16, help="jobs per transaction")
    p.add_argument("--batches", type=int, default=300, help="transactions per round")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--profile", action="store_true", help="cProfile one more round")
    p.add_argument("--seed", type=int, default=1, help="of the random senders (repeatable runs)")
    args = p.parse_args()
    random.seed(args.seed)
    with tempfile.TemporaryDirectory(prefix="kefu-store-") as tmp:
        measure(args, f"sqlite:///{tmp}/bench.db")


def measure(args, url: str) -> None:
    upgrade(url)
    app = create_app({"DATABASE_URL": url, "JWT_SECRET": "bench"})
    with app.app_context():
        pairs, counter = setup(args.pairs, args.agents), [0]
        run_batches(pairs, args.batches, args.batch, counter)  # warm-up
        for n in range(1, args.rounds + 1):
            with db.read():
                db.database.execute_sql("PRAGMA wal_checkpoint(TRUNCATE)")
            cpu, wall = time.process_time(), time.perf_counter()
            run_batches(pairs, args.batches, args.batch, counter)
            jobs = args.batches * args.batch
            cpu_us = (time.process_time() - cpu) / jobs * 1e6
            wall_us = (time.perf_counter() - wall) / jobs * 1e6
            print(f"round {n}: {cpu_us:.1f} us CPU per message ({wall_us:.1f} wall), {jobs} jobs")
        if args.profile:
            import cProfile
            import pstats

            profiler = cProfile.Profile()
            profiler.runcall(run_batches, pairs, args.batches, args.batch, counter)
            pstats.Stats(profiler).sort_stats("tottime").print_stats(25)
        app.extensions["kefu.db"].close_all()


if __name__ == "__main__":
    main()
