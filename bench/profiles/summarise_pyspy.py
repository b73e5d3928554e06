"""Summarise py-spy's raw (collapsed) stacks: share per thread, then functions by own and by
inclusive samples.  usage: summarise_pyspy.py FILE.raw [TOP]"""

from __future__ import annotations

import collections
import sys


def main() -> None:
    raw = sys.argv[1]
    top = int(sys.argv[2]) if len(sys.argv) > 2 else 30
    own: collections.Counter = collections.Counter()
    inclusive: collections.Counter = collections.Counter()
    threads: collections.Counter = collections.Counter()
    total = 0
    for line in open(raw):
        stack, _, count = line.rstrip().rpartition(" ")
        n = int(count)
        total += n
        frames = stack.split(";")
        threads[frames[0].split(" (")[0] + " " + frames[0].rsplit(":", 1)[-1].strip()] += n
        names = []
        for frame in frames[1:]:
            if " (" in frame:  # "function (path/file.py:line)" -> "function (file.py)"
                function, where = frame.split(" (", 1)
                frame = f"{function} ({where.split(':')[0].rsplit('/', 1)[-1]})"
            names.append(frame)
        if names:
            own[names[-1]] += n
        for name in set(names):
            inclusive[name] += n
    print(f"samples {total}")
    for thread, n in threads.most_common():
        print(f"  {n / total:6.1%}  {thread}")
    print("own:")
    for name, n in own.most_common(top):
        print(f"  {n / total:6.1%}  {name}")
    print("inclusive:")
    for name, n in inclusive.most_common(top):
        print(f"  {n / total:6.1%}  {name}")


if __name__ == "__main__":
    main()
