"""Line charts as inline SVG for the HTML report: no plotting library, scales like text."""

from __future__ import annotations

import html
import math


def esc(value) -> str:
    return html.escape(str(value), quote=True)


def svg_chart(
    series: dict[str, list[tuple[float, float]]], title: str, percent=False, log=False
) -> str:
    """A small line chart as inline SVG (scales with the page: zoom it like text)."""
    W, H, L, R, T, B = 480, 260, 54, 12, 26, 34
    pts = [(x, y) for s in series.values() for x, y in s if math.isfinite(y) and (y > 0 or not log)]
    if not pts:
        return f'<p class="muted">{esc(title)}: no data</p>'
    f = math.log10 if log else (lambda v: v)
    xs, ys = [p[0] for p in pts], [f(p[1]) for p in pts]
    x0, x1 = min(xs), max(xs)
    y0, y1 = (0.0, 1.0) if percent else (min(ys), max(ys))
    if x1 == x0:
        x0, x1 = x0 - 1, x1 + 1
    if y1 - y0 < 1e-12:
        y0, y1 = y0 - 0.5, y1 + 0.5

    def px(x):
        return L + (x - x0) / (x1 - x0) * (W - L - R)

    def py(y):
        return H - B - (y - y0) / (y1 - y0) * (H - T - B)

    out = [
        f'<svg viewBox="0 0 {W} {H}" role="img" aria-label="{esc(title)}">',
        f'<text x="{W / 2}" y="16" text-anchor="middle" font-size="13">{esc(title)}</text>',
    ]
    for k in range(5):
        y = y0 + (y1 - y0) * k / 4
        label = f"{100 * y:.0f}%" if percent else (f"{10**y:.0e}" if log else f"{y:.3g}")
        out.append(
            f'<line x1="{L}" x2="{W - R}" y1="{py(y):.1f}" y2="{py(y):.1f}" stroke="#e4e8ef"/>'
            f'<text x="{L - 4}" y="{py(y) + 4:.1f}" text-anchor="end" font-size="11">{label}</text>'
        )
    ticks = sorted({round(x0 + (x1 - x0) * k / 5) for k in range(6)})
    for x in ticks:
        out.append(
            f'<text x="{px(x):.1f}" y="{H - B + 16}" text-anchor="middle" font-size="11">{x:g}</text>'
        )
    out.append(
        f'<text x="{(L + W - R) / 2}" y="{H - 4}" text-anchor="middle" font-size="11">epoch</text>'
    )
    colors = ["#2f6fde", "#e07b20", "#2a9d55", "#9b4dca"]
    for n, (name, s) in enumerate(series.items()):
        good = [(x, f(y)) for x, y in s if math.isfinite(y) and (y > 0 or not log)]
        if not good:
            continue
        c = colors[n % len(colors)]
        line = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in good)
        out.append(f'<polyline fill="none" stroke="{c}" stroke-width="2" points="{line}"/>')
        out += [f'<circle cx="{px(x):.1f}" cy="{py(y):.1f}" r="2.5" fill="{c}"/>' for x, y in good]
        out.append(
            f'<text x="{L + 8 + 110 * n}" y="{T + 12}" font-size="11" fill="{c}">{esc(name)}</text>'
        )
    out.append("</svg>")
    return "".join(out)
