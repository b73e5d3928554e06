"""The delivery chart: 24 hourly stacked bars (delivered, retrying, dead) as inline SVG geometry.

Only numbers are computed here; templates/_delivery.html draws them. No JavaScript needed.
"""

from __future__ import annotations

from typing import Any

WIDTH, HEIGHT, PAD_LEFT, PAD_BOTTOM, PAD_TOP = 720, 180, 36, 22, 8
SERIES = ("delivered", "retrying", "dead")


def nice_max(value: int) -> int:
    for step in (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10_000, 20_000, 50_000, 100_000):
        if value <= step:
            return step
    return ((value // 100_000) + 1) * 100_000


def bars(points: list[dict[str, Any]]) -> dict[str, Any]:
    """Rectangles for each hour and series, y axis ticks and x labels every 6 hours."""
    top = nice_max(max([sum(p[s] for s in SERIES) for p in points] + [1]))
    plot_h = HEIGHT - PAD_BOTTOM - PAD_TOP
    slot = (WIDTH - PAD_LEFT) / max(len(points), 1)
    rects, labels = [], []
    for i, point in enumerate(points):
        x = PAD_LEFT + i * slot + 1
        y = HEIGHT - PAD_BOTTOM
        for series in SERIES:
            count = point[series]
            if not count:
                continue
            h = max(count / top * plot_h, 1.5)
            y -= h
            rects.append({"x": round(x, 1), "y": round(y, 1), "w": round(slot - 2, 1), "h": round(h, 1),
                          "series": series, "title": f"{point['hour'][11:16]} UTC: {count} {series}"})
        if i % 6 == 0 or i == len(points) - 1:
            labels.append({"x": round(x + (slot - 2) / 2, 1), "text": point["hour"][11:16]})
    # Gridlines only at whole numbers: 0, the top, and the middle when it is whole.
    levels = [0, top // 2, top] if top % 2 == 0 else [0, top]
    ticks = [{"y": round(HEIGHT - PAD_BOTTOM - plot_h * n / top, 1), "text": str(n)} for n in levels]
    totals = {s: sum(p[s] for p in points) for s in SERIES}
    return {"width": WIDTH, "height": HEIGHT, "left": PAD_LEFT, "base": HEIGHT - PAD_BOTTOM, "rects": rects,
            "labels": labels, "ticks": ticks, "totals": totals}
