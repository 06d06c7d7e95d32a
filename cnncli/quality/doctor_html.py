"""`cnn doctor --html FILE`: duplicate groups as thumbnails side by side, one page, no files.

Identical files first (certain: fix them), then near-duplicates (check them: each row is a
representative and the images that look like it, with their similarity), so a person can
judge a group at a glance. Thumbnails are JPEG data URIs; nothing here prints.
"""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path

from cnncli.data.decode import DecodeError, open_image
from cnncli.quality.duplicates import DuplicateGroup

THUMB = 200  # longer side of a thumbnail, pixels
MAX_GROUPS = 300  # groups drawn per section (the rest are counted)

_CSS = """
body{font:15px system-ui,sans-serif;margin:0 auto;max-width:1100px;padding:12px;color:#222}
h1{font-size:22px}h2{font-size:18px;margin-top:28px}
.group{border:1px solid #ddd;border-radius:6px;padding:8px;margin:10px 0}
.group.bad{border-color:#d33}.why{font-weight:600;margin-bottom:6px}
.row{display:flex;flex-wrap:wrap;gap:8px}
figure{margin:0;width:204px}figure img{max-width:200px;max-height:200px;display:block}
figcaption{font-size:12px;overflow-wrap:anywhere}.sim{font-weight:600}
.rep{outline:3px solid #369;outline-offset:1px}
"""


def _esc(value) -> str:
    return html.escape(str(value), quote=True)


def thumbnail(path: Path) -> str | None:
    """A JPEG data URI of the image, THUMB pixels on its longer side; None if unreadable."""
    try:
        img = open_image(path, draft_size=THUMB)
    except DecodeError:
        return None
    img.thumbnail((THUMB, THUMB))
    buffer = io.BytesIO()
    img.convert("RGB").save(buffer, "JPEG", quality=82)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _figure(root: Path, path: str, split: str, label: str, note: str, rep: bool) -> str:
    uri = thumbnail(root / path)
    img = f'<img src="{uri}" alt="{_esc(path)}"' + (' class="rep">' if rep else ">")
    body = img if uri else "<div>(unreadable)</div>"
    return (
        f"<figure>{body}<figcaption>{note}{_esc(path)}<br>{_esc(split)} · "
        f"{_esc(label)}</figcaption></figure>"
    )


def _group(root: Path, group: DuplicateGroup) -> str:
    issues = [w for w, on in (("conflicting labels", group.conflict), ("leak", group.leak)) if on]
    if group.certain:
        why = ("identical files" if group.kind == "exact" else "identical pixels") + (
            ": " + " and ".join(issues) if issues else " (same class and split)"
        )
    else:
        why = "near-duplicates" + (": " + " and ".join(issues) if issues else "")
    figures = []
    scores = group.scores or [None] * len(group.files)
    for k, ((path, split, label), score) in enumerate(zip(group.files, scores, strict=True)):
        note = f'<span class="sim">{score[0]:.2f}</span> ' if score else ""
        figures.append(_figure(root, path, split, label, note, rep=not group.certain and k == 0))
    bad = " bad" if group.certain and issues else ""
    return (
        f'<div class="group{bad}"><div class="why">{_esc(why)}</div>'
        f'<div class="row">{"".join(figures)}</div></div>'
    )


def _section(root: Path, title: str, intro: str, groups: list[DuplicateGroup]) -> str:
    if not groups:
        return ""
    shown = "".join(_group(root, g) for g in groups[:MAX_GROUPS])
    more = len(groups) - MAX_GROUPS
    tail = f"<p>... and {more} more groups (see --json).</p>" if more > 0 else ""
    return f"<h2>{_esc(title)} ({len(groups)})</h2><p>{intro}</p>{shown}{tail}"


def render(root: str | Path, groups: list[DuplicateGroup]) -> str:
    """The page for a DoctorReport's duplicate groups (certain first, then near)."""
    root = Path(root)
    certain = [g for g in groups if g.certain]
    near = [g for g in groups if not g.certain]
    parts = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>cnn doctor: duplicates in "
        f"{_esc(root)}</title><meta name='viewport' content='width=device-width'>"
        f"<style>{_CSS}</style></head><body><h1>Duplicates in {_esc(root)}</h1>",
        _section(
            root,
            "Identical files: fix these",
            "The same bytes or the same pixels. Across classes the labels conflict; across "
            "train/val/test the copy leaks. Keep one copy with the right label.",
            certain,
        ),
        _section(
            root,
            "Near-duplicates: check these",
            "Each row: a picture (outlined) and the pictures that look like it, with the "
            "similarity of pretrained features (1.00 = the same). Only you can tell a re-encoded "
            "or cropped copy from a second photo of the same thing; nothing here is counted "
            "as an error.",
            near,
        ),
    ]
    if not groups:
        parts.append("<p>No identical files and no near-duplicates.</p>")
    parts.append("</body></html>")
    return "".join(parts)


def write_page(path: str | Path, root: str | Path, groups: list[DuplicateGroup]) -> Path:
    """Write the page to path (atomically); returns the path."""
    from cnncli.atomic import atomic_write_text

    path = Path(path)
    atomic_write_text(path, render(root, groups))
    return path
