"""Baseline: the throughput load against the bare relay (bench/relay_app.py), then kefu.

Both run under the same ``gunicorn -c gunicorn.conf.py`` settings, one after the other,
with the same pairs, agents, loop and duration; every kefu figure is printed with its
ratio to the relay's. The relay is limited by the load client (one core), whose speed
swings with the machine, so single ratios swing too (0.37-0.51 on one quiet machine):
``--rounds N`` alternates relay and kefu N times and ends with every round's rate ratio
and their median.

    .venv/bin/python bench/baseline.py --pairs 200
    .venv/bin/python bench/baseline.py --pairs 200 --duration 10 --rounds 3
    .venv/bin/python bench/baseline.py --pairs 200 --rate 2000
"""

import asyncio
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine
from throughput import parser, report, run


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--rounds", type=int, default=1, help="alternate relay and kefu N times")
    args = p.parse_args()
    print(f"machine: {machine()}")
    mode = f"open loop {args.rate:.0f}/s" if args.rate else f"closed loop, window {args.window}"
    print(f"load: {args.pairs} pairs, {args.agents} agents, {mode}, {args.duration:.0f} s each")
    ratios = []
    for n in range(1, args.rounds + 1):
        if args.rounds > 1:
            print(f"-- round {n} of {args.rounds}")
        relay = asyncio.run(run(args, relay=True))
        report(relay)
        kefu = asyncio.run(run(args, relay=False))
        report(kefu, base=relay)
        ratios.append(kefu["msgs_per_s"] / relay["msgs_per_s"])
    if args.rounds > 1:
        listed = ", ".join(f"{r:.2f}" for r in ratios)
        median = statistics.median(ratios)
        print(f"delivered msgs/s, kefu / relay by round: {listed}; median {median:.2f}")


if __name__ == "__main__":
    main()
