"""Summarise a py-spy ``--format raw`` file: the top functions by own and by total time.

.venv/bin/python bench/spysum.py /tmp/profile.txt [--top 30] [--match kefu]
"""

import argparse
from collections import Counter


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("file")
    p.add_argument("--top", type=int, default=30)
    p.add_argument("--match", default="", help="only frames whose text contains this")
    args = p.parse_args()
    own, total, samples = Counter(), Counter(), 0
    with open(args.file) as fh:
        lines = fh.readlines()
    for line in lines:
        stack, _, count = line.rstrip("\n").rpartition(" ")
        if not stack:
            continue
        n = int(count)
        samples += n
        frames = stack.split(";")
        own[frames[-1]] += n
        for f in set(frames):
            if args.match in f:
                total[f] += n
    print(f"{samples} samples")
    print("-- own time --")
    for f, n in own.most_common(args.top):
        print(f"{100 * n / samples:5.1f}%  {f}")
    print("-- total time --")
    for f, n in total.most_common(args.top):
        print(f"{100 * n / samples:5.1f}%  {f}")


if __name__ == "__main__":
    main()
