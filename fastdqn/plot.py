"""A small line-chart renderer on Pillow, for the learning curve.

Why not matplotlib: importing it and drawing one figure took ~0.85 s of a ~5 s training run
(bench/NOTES.md); Pillow draws the same chart in a few milliseconds. The benchmark scripts
still use matplotlib.
"""

from __future__ import annotations

import math
from pathlib import Path

WIDTH, HEIGHT = 800, 450
LEFT, RIGHT, TOP, BOTTOM = 70, 20, 40, 55


def nice_ticks(lo: float, hi: float, target: int = 6) -> list[float]:
    """Round tick values (1, 2 or 5 times a power of ten apart) covering [lo, hi]."""
    if hi <= lo:
        hi = lo + 1.0
    raw = (hi - lo) / target
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 5, 10) if m * mag >= raw)
    first = math.ceil(lo / step) * step
    return [first + i * step for i in range(int((hi - first) / step + 1e-9) + 1)]


def _font(size: int):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: fixed-size bitmap font
        return ImageFont.load_default()


def line_chart(path, series, *, title: str, xlabel: str, ylabel: str, hlines=(), points=(), ylim=None) -> Path:
    """Draw ``series`` = [(label, xs, ys, rgb, width), ...], dashed ``hlines`` = [(label, y, rgb)]
    and markers ``points`` = [(label, xs, ys, rgb)]. A series with an empty label stays out of the legend."""
    from PIL import Image, ImageDraw

    xs_all = [x for _, xs, _, _, _ in series for x in xs] + [x for _, xs, _, _ in points for x in xs] or [0, 1]
    ys_all = [y for _, _, ys, _, _ in series for y in ys] + [y for _, y, _ in hlines]
    x0, x1 = min(xs_all), max(max(xs_all), min(xs_all) + 1)
    y0, y1 = ylim if ylim else (min(0.0, min(ys_all, default=0.0)), max(ys_all, default=1.0) * 1.05 or 1.0)
    pw, ph = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def px(x, y):
        return LEFT + (x - x0) / (x1 - x0) * pw, TOP + ph - (y - y0) / (y1 - y0) * ph

    img = Image.new("RGB", (WIDTH, HEIGHT), "white")
    d = ImageDraw.Draw(img)
    small, big = _font(12), _font(15)
    for t in nice_ticks(y0, y1):
        _, y = px(x0, t)
        d.line([(LEFT, y), (LEFT + pw, y)], fill=(230, 230, 230))
        d.text((LEFT - 6, y), f"{t:g}", fill="black", font=small, anchor="rm")
    for t in nice_ticks(x0, x1):
        x, _ = px(t, y0)
        d.line([(x, TOP), (x, TOP + ph)], fill=(230, 230, 230))
        d.text((x, TOP + ph + 6), f"{t:g}", fill="black", font=small, anchor="mt")
    for _, y, rgb in hlines:
        _, yy = px(x0, y)
        for xa in range(LEFT, LEFT + pw, 12):
            d.line([(xa, yy), (min(xa + 6, LEFT + pw), yy)], fill=rgb, width=1)
    for _, xs, ys, rgb, width in series:
        pts = [px(x, y) for x, y in zip(xs, ys)]
        if len(pts) > 1:
            d.line(pts, fill=rgb, width=width, joint="curve")
        elif pts:
            d.ellipse([pts[0][0] - 2, pts[0][1] - 2, pts[0][0] + 2, pts[0][1] + 2], fill=rgb)
    for _, xs, ys, rgb in points:
        for x, y in zip(xs, ys):
            cx, cy = px(x, y)
            d.ellipse([cx - 4, cy - 4, cx + 4, cy + 4], outline=rgb, width=2)
    d.rectangle([LEFT, TOP, LEFT + pw, TOP + ph], outline="black")
    d.text((LEFT + pw / 2, 12), title, fill="black", font=big, anchor="mt")
    d.text((LEFT + pw / 2, HEIGHT - 8), xlabel, fill="black", font=small, anchor="mb")
    d.text((14, TOP + ph / 2), ylabel, fill="black", font=small, anchor="lm")
    legend = ([(label, rgb) for label, _, _, rgb, _ in series if label] + [(label, rgb) for label, _, rgb in hlines]
              + [(label, rgb) for label, _, _, rgb in points])
    for i, (label, rgb) in enumerate(legend):
        y = TOP + 12 + 16 * i
        d.line([(LEFT + 10, y), (LEFT + 30, y)], fill=rgb, width=3)
        d.text((LEFT + 36, y), label, fill="black", font=small, anchor="lm")
    path = Path(path)
    img.save(path)
    return path


def stacked_bar(path, segments, *, title: str, unit: str) -> Path:
    """One horizontal bar split into ``segments`` = [(label, value, rgb), ...], with a legend
    giving each value and its share of the total."""
    from PIL import Image, ImageDraw

    height = TOP + 80 + 18 * len(segments)
    img = Image.new("RGB", (WIDTH, height), "white")
    d = ImageDraw.Draw(img)
    small, big = _font(12), _font(15)
    total = sum(max(v, 0.0) for _, v, _ in segments) or 1.0
    pw = WIDTH - LEFT - RIGHT
    x = LEFT
    for _, v, rgb in segments:
        w = pw * max(v, 0.0) / total
        d.rectangle([x, TOP, x + w, TOP + 40], fill=rgb)
        x += w
    d.rectangle([LEFT, TOP, LEFT + pw, TOP + 40], outline="black")
    d.text((LEFT + pw / 2, 12), title, fill="black", font=big, anchor="mt")
    for i, (label, v, rgb) in enumerate(segments):
        y = TOP + 60 + 18 * i
        d.rectangle([LEFT, y - 6, LEFT + 12, y + 6], fill=rgb)
        d.text((LEFT + 20, y), f"{label}: {v:.1f} {unit} ({100 * v / total:.1f} %)", fill="black", font=small,
               anchor="lm")
    path = Path(path)
    img.save(path)
    return path
