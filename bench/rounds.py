"""Rounds for every bench: a figure is the median of at least three rounds, printed with its
spread (min–max) and the machine's load average when it was taken, so that a reader can tell
what it rests on and whether a later run reproduces it.

    from rounds import Figure, rounds
    figure = rounds(measure, n=3)        # measure() -> float, called n times
    print(figure.text("{:,.0f} events/s"))

``BENCH_QUICK=1`` in the environment (``make bench-quick``) makes a smoke run: one round is
allowed, and the header says that what follows is not a figure. It proves that a script still
prints its table, nothing more.
"""

from __future__ import annotations

import os
import statistics
import time
from dataclasses import dataclass, field
from typing import Callable

MIN_ROUNDS = 3


def quick() -> bool:
    """A smoke run (``BENCH_QUICK=1``): tables are printed, but from one short round."""
    return os.environ.get("BENCH_QUICK", "") not in ("", "0")


def count(requested: int) -> int:
    """How many rounds a script runs when asked for ``requested``: at least MIN_ROUNDS (1 in a smoke run)."""
    return max(requested, 1 if quick() else MIN_ROUNDS)


def load() -> str:
    """The 1-minute load average (and the core count): how busy the machine was."""
    try:
        one, _, _ = os.getloadavg()
    except OSError:
        return "load n/a"
    return f"load {one:.2f} on {os.cpu_count()} cores"


@dataclass
class Figure:
    values: list[float]
    loads: list[str] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.values)

    def spread(self, fmt: str = "{:.3g}") -> str:
        """'median (min–max)': for a table whose header gives the rounds and the load."""
        return f"{fmt.format(self.median)} ({fmt.format(min(self.values))}–{fmt.format(max(self.values))})"

    def text(self, fmt: str = "{:.3g}") -> str:
        """'median (min–max, n rounds, load …)'."""
        low, high = min(self.values), max(self.values)
        return (f"{fmt.format(self.median)} ({fmt.format(low)}–{fmt.format(high)}, "
                f"{len(self.values)} rounds, {self.loads[-1] if self.loads else load()})")


def rounds(measure: Callable[[], float], n: int = MIN_ROUNDS, pause: float = 0.0) -> Figure:
    """Call ``measure`` ``n`` (≥ 3) times; the load average is read after each round."""
    figure = Figure([])
    for index in range(count(n)):
        if index and pause:
            time.sleep(pause)
        figure.values.append(float(measure()))
        figure.loads.append(load())
    return figure


def header(title: str) -> None:
    """The first line of a bench's output: what ran, when (UTC) and how busy the machine was."""
    print(f"{title} — {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {load()}", flush=True)
    if quick():
        print("QUICK smoke run (BENCH_QUICK=1): one short round; these numbers are not figures", flush=True)
