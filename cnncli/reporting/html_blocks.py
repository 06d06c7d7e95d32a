"""The HTML report's building blocks: its stylesheet, escaping, data: URIs, tables, percentages."""

from __future__ import annotations

import base64
import html
import math

CSS = """
:root{--fg:#1d2330;--mute:#5b6474;--line:#d9dee7;--bg:#fff;--acc:#2f6fde;--bad:#c8372d}
*{box-sizing:border-box}
body{font:15px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;color:var(--fg);
background:var(--bg);margin:0 auto;max-width:1100px;padding:12px}
h1{font-size:1.4em;margin:.3em 0}h2{font-size:1.15em;margin:1.4em 0 .4em;
border-bottom:1px solid var(--line);padding-bottom:.2em}
nav{display:flex;flex-wrap:wrap;gap:4px 12px;font-size:.9em}nav a{color:var(--acc)}
.scroll{overflow-x:auto;max-width:100%}
table{border-collapse:collapse;font-size:.9em;margin:.3em 0}
td,th{border:1px solid var(--line);padding:3px 7px;text-align:right;white-space:nowrap}
td:first-child,th:first-child,.formula td:last-child{text-align:left}
pre{background:#f5f7fa;border:1px solid var(--line);padding:8px;overflow-x:auto;
white-space:pre-wrap;word-break:break-all;font-size:.85em}
.muted{color:var(--mute)}.warn{color:var(--bad)}
.cards{display:flex;flex-wrap:wrap;gap:10px}
.card{width:150px;border:1px solid var(--line);border-radius:6px;padding:4px;font-size:.8em;
overflow-wrap:anywhere}
.card img{width:100%;height:auto;image-rendering:pixelated;display:block}
.card.wide{width:300px}.pair{display:flex;gap:4px}.pair img{width:50%}
.charts{display:flex;flex-wrap:wrap;gap:12px}.chart{flex:1 1 320px;max-width:540px}
svg{width:100%;height:auto;background:#fff}
img.full{max-width:100%;height:auto}
.kv td{text-align:left;white-space:normal;overflow-wrap:anywhere}
@media (max-width:600px){body{font-size:14px;padding:8px}.card{width:calc(50% - 5px)}
.card.wide{width:100%}}
"""


def esc(value) -> str:
    """Text as HTML, quotes included (for attributes too)."""
    return html.escape(str(value), quote=True)


def data_uri(png: bytes) -> str:
    """PNG bytes as a data: URI, so the page needs no other file."""
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def html_table(header: list[str] | None, rows: list[list], cls: str = "") -> str:
    """A table in a horizontally scrolling box (header None: no header row)."""
    head = "<tr>" + "".join(f"<th>{esc(h)}</th>" for h in header) + "</tr>" if header else ""
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in rows)
    return f'<div class="scroll"><table class="{cls}">{head}{body}</table></div>'


def percent(x: float) -> str:
    """A fraction as a percentage with one decimal; "-" when missing."""
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:.1f}%"
