"""Baseline: the throughput load against the bare relay (bench/relay_app.py), then kefu.

Both run under the same ``gunicorn -c gunicorn.conf.py`` settings, one after the other,
with the same pairs, agents, loop and duration; every kefu figure is printed with its
ratio to the relay's.

    .venv/bin/python bench/baseline.py --pairs 200
    .venv/bin/python bench/baseline.py --pairs 200 --rate 2000
"""

import asyncio
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine
from throughput import parser, report, run


def main() -> None:
    args = parser(__doc__).parse_args()
    print(f"machine: {machine()}")
    mode = f"open loop {args.rate:.0f}/s" if args.rate else f"closed loop, window {args.window}"
    print(f"load: {args.pairs} pairs, {args.agents} agents, {mode}, {args.duration:.0f} s each")
    relay = asyncio.run(run(args, relay=True))
    report(relay)
    kefu = asyncio.run(run(args, relay=False))
    report(kefu, base=relay)


if __name__ == "__main__":
    main()
