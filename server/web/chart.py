"""Server-rendered charts as inline SVG geometry: stacked hourly bars (deliveries per hour over
24 h; a source's events per hour over 7 days by type) and a line (a destination's latency per
hour). Only numbers are computed here; the templates draw them. No JavaScript needed.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

WIDTH, HEIGHT, PAD_LEFT, PAD_BOTTOM, PAD_TOP = 720, 180, 36, 22, 8
SERIES = ("delivered", "retrying", "dead")


def nice_max(value: float) -> int:
    for step in (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10_000, 20_000, 50_000, 100_000):
        if value <= step:
            return step
    return ((int(value) // 100_000) + 1) * 100_000


def _ticks(top: int) -> list[dict[str, Any]]:
    # Gridlines only at whole numbers: 0, the top, and the middle when it is whole.
    plot_h = HEIGHT - PAD_BOTTOM - PAD_TOP
    levels = [0, top // 2, top] if top % 2 == 0 else [0, top]
    return [{"y": round(HEIGHT - PAD_BOTTOM - plot_h * n / top, 1), "text": f"{n:,}"} for n in levels]


def _clock(hour: str) -> str:
    return hour[11:16]


def _day(hour: str) -> str:
    return hour[5:10]


def bars(points: list[dict[str, Any]], series: Sequence[str] = SERIES, *, label_every: int = 6,
         label: Callable[[str], str] = _clock, title: Callable[[str], str] = _clock) -> dict[str, Any]:
    """Rectangles for each hour and series (stacked in ``series`` order), y axis ticks and an x
    label every ``label_every`` buckets."""
    top = nice_max(max([sum(p[s] for s in series) for p in points] + [1]))
    plot_h = HEIGHT - PAD_BOTTOM - PAD_TOP
    slot = (WIDTH - PAD_LEFT) / max(len(points), 1)
    gap = 2 if slot > 6 else 0.5
    rects, labels = [], []
    for i, point in enumerate(points):
        x = PAD_LEFT + i * slot + gap / 2
        y = HEIGHT - PAD_BOTTOM
        for name in series:
            count = point[name]
            if not count:
                continue
            h = max(count / top * plot_h, 1.5)
            y -= h
            rects.append({"x": round(x, 1), "y": round(y, 1), "w": round(slot - gap, 2), "h": round(h, 1),
                          "series": name, "title": f"{title(point['hour'])} UTC: {count} {name}"})
        if i % label_every == 0 or (label_every <= 6 and i == len(points) - 1):
            labels.append({"x": round(x + (slot - gap) / 2, 1), "text": label(point["hour"])})
    totals = {s: sum(p[s] for p in points) for s in series}
    return {"width": WIDTH, "height": HEIGHT, "left": PAD_LEFT, "base": HEIGHT - PAD_BOTTOM, "rects": rects,
            "labels": labels, "ticks": _ticks(top), "totals": totals, "series": list(series)}


def week_bars(points: list[dict[str, Any]], series: Sequence[str]) -> dict[str, Any]:
    """168 hourly buckets (7 days): a label at each day's first bucket, titles with the date."""
    return bars(points, series, label_every=24, label=_day, title=lambda h: f"{_day(h)} {_clock(h)}")


def line(points: list[dict[str, Any]], key: str) -> dict[str, Any]:
    """A polyline through the hours that have a value (gaps where none), with a dot per value."""
    values = [p[key] for p in points if p[key] is not None]
    top = nice_max(max(values + [1]))
    plot_h = HEIGHT - PAD_BOTTOM - PAD_TOP
    slot = (WIDTH - PAD_LEFT) / max(len(points), 1)
    segments: list[list[tuple[float, float]]] = [[]]
    dots, labels = [], []
    for i, point in enumerate(points):
        x = round(PAD_LEFT + i * slot + slot / 2, 1)
        if point[key] is None:
            if segments[-1]:
                segments.append([])
        else:
            y = round(HEIGHT - PAD_BOTTOM - point[key] / top * plot_h, 1)
            segments[-1].append((x, y))
            dots.append({"x": x, "y": y, "title": f"{_clock(point['hour'])} UTC: {point[key]:,.0f} ms"})
        if i % 6 == 0 or i == len(points) - 1:
            labels.append({"x": x, "text": _clock(point["hour"])})
    paths = [" ".join(f"{x},{y}" for x, y in seg) for seg in segments if len(seg) > 1]
    return {"width": WIDTH, "height": HEIGHT, "left": PAD_LEFT, "base": HEIGHT - PAD_BOTTOM, "paths": paths,
            "dots": dots, "labels": labels, "ticks": _ticks(top), "empty": not values}
