"""`make bench`: run every command of bench/README.md's "What `make bench` runs" table, in order.

The table is the one list of what the docs' figures rest on, so the Makefile does not keep a
second copy: this script reads it. ``--quick`` (``make bench-quick``) appends each command's smoke
options and sets ``BENCH_QUICK=1`` (one short round: proves the tables still print, measures
nothing). A failing command does not stop the others; the exit status is 1 if any failed.

    .venv/bin/python bench/suite.py [--quick] [--only TEXT] [--list]
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "bench" / "README.md"
SECTION = "## What `make bench` runs"


def commands(text: str | None = None) -> list[tuple[str, str]]:
    """(command, smoke options) of each row of the README's command table, in order."""
    text = README.read_text() if text is None else text
    body = text.split(SECTION, 1)[1].split("\n## ", 1)[0]
    rows = []
    for line in body.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) >= 2 and cells[0].startswith("`bench/"):
            quick = re.fullmatch(r"`([^`]*)`", cells[1])
            rows.append((cells[0].strip("`"), quick.group(1) if quick else ""))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: each command's smoke options, BENCH_QUICK=1")
    parser.add_argument("--only", help="run only the commands containing this text")
    parser.add_argument("--list", action="store_true", help="print the commands and exit")
    args = parser.parse_args()
    chosen = [(c, q) for c, q in commands() if not args.only or args.only in c]
    if args.list:
        for command, quick in chosen:
            print(command + (f"  [smoke: {quick}]" if quick else ""))
        return
    env = {**os.environ, **({"BENCH_QUICK": "1"} if args.quick else {})}
    failed = []
    for command, quick in chosen:
        argv = shlex.split(command) + (shlex.split(quick) if args.quick else [])
        print(f"\n== {' '.join(argv)}", flush=True)
        started = time.monotonic()
        code = subprocess.call([sys.executable, *argv], cwd=ROOT, env=env)
        print(f"== {command}: exit {code} after {time.monotonic() - started:.0f} s", flush=True)
        if code:
            failed.append(command)
    if failed:
        print("\nFAILED: " + "; ".join(failed))
        sys.exit(1)


if __name__ == "__main__":
    main()
