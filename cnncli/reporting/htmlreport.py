"""RUN/report.html: one self-contained page (inline CSS, images as data: URIs, no script).

Every name that comes from the user's files (paths, class names, the command line) goes
through html.escape, and a Content-Security-Policy forbids scripts and network access, so
a class folder called `<script>` is shown as text and can run nothing. The sections are
built here; the stylesheet and the small HTML pieces they share are in html_blocks.
"""

from __future__ import annotations

import json
import secrets
import statistics
from pathlib import Path

from cnncli.atomic import atomic_write_text
from cnncli.charts.svgchart import svg_chart
from cnncli.reporting.html_blocks import CSS, data_uri, esc, html_table, percent
from cnncli.reporting.reportdata import Predictions, ReportData, Thumb, collect

REPORT_FILE = "report.html"
SECTIONS = (
    ("command", "Command and config"),
    ("data", "Data"),
    ("network", "Network"),
    ("curves", "Training curves"),
    ("learning", "Learning check"),
    ("confusion", "Confusion matrix"),
    ("per-class", "Per-class precision, recall, F1"),
    ("mistakes", "Most confident mistakes"),
    ("unsure", "Least confident correct"),
    ("augmentation", "Augmentation samples"),
    ("gradcam", "Grad-CAM of mistakes"),
    ("label-issues", "Likely mislabeled images"),
    ("timing", "Timing and machine"),
)


def _command(d: ReportData) -> str:
    rows = [
        ["data folder", esc(d.info.get("data_dir", "?"))],
        ["python", esc(d.info.get("python", "?"))],
        ["platform", esc(d.info.get("platform", "?"))],
    ]
    if d.summary:
        best = d.summary.get("best_val_acc")
        rows.append(["best epoch", esc(d.summary.get("best_epoch", "?"))])
        rows.append(["best val accuracy", percent(best) if isinstance(best, float) else "-"])
    return (
        f"<pre>{esc(d.command or '(command not recorded)')}</pre>"
        + html_table(None, rows, "kv")
        + _recipe(d.recipe)
        + f"<details><summary>config.toml (click to open)</summary><pre>{esc(d.config_text)}</pre></details>"
    )


def _recipe(recipe: dict) -> str:
    """The automatic recipe's choices and reasons (recipe.json), when there is one."""
    choices = recipe.get("recipe", {}).get("choices", [])
    if not choices:
        return ""
    explicit = set(recipe.get("explicit", []))
    rows = [
        [esc(c.get("key", "")), esc(json.dumps(c.get("value"))), esc(c.get("reason", ""))]
        for c in choices
    ]
    note = f" (your settings won for: {esc(', '.join(sorted(explicit)))})" if explicit else ""
    return (
        f"<details><summary>automatic recipe: {len(rows)} choices{note}</summary>"
        + html_table(["key", "value", "why"], rows, "kv")
        + "</details>"
    )


def _data(d: ReportData) -> str:
    parts = []
    if d.label_source:
        parts.append(f"<p>labels from {esc(d.label_source)}</p>")
    if d.counts:
        splits = [s for s in ("train", "val", "test") if any(s in c for c in d.counts.values())]
        rows = [[esc(name)] + [c.get(s, 0) for s in splits] for name, c in d.counts.items()]
        rows.append(
            ["<b>total</b>"] + [sum(c.get(s, 0) for c in d.counts.values()) for s in splits]
        )
        parts.append(html_table(["class", *splits], rows))
    else:
        parts.append('<p class="muted">split.csv missing or unreadable</p>')
    if d.skipped:
        items = "".join(f"<li>{esc(p)}: {esc(r)}</li>" for p, r in d.skipped[:50])
        parts.append(
            f"<p>{len(d.skipped)} file(s) skipped (could not be decoded):</p><ul>{items}</ul>"
        )
    else:
        parts.append("<p>no files skipped</p>")
    if d.warnings:
        items = "".join(f'<li class="warn">{esc(w)}</li>' for w in d.warnings[:50])
        parts.append(f"<p>doctor warnings:</p><ul>{items}</ul>")
    else:
        parts.append(
            '<p class="muted">doctor (quick check): no identical files across splits or classes</p>'
        )
    return "".join(parts)


def _network(d: ReportData) -> str:
    if not d.layers:
        return '<p class="muted">no layer table (config or split missing)</p>'
    rows = [
        [esc(n), esc(i), esc(o), f"{p:,}" if p else "", f"{m:,}" if m else "", esc(f)]
        for n, i, o, p, m, f in d.layers
    ]
    rows.append(
        [
            "<b>total</b>",
            "",
            "",
            f"{sum(r[3] for r in d.layers):,}",
            f"{sum(r[4] for r in d.layers):,}",
            "",
        ]
    )
    header = ["layer", "input", "output", "params", "MACs", "(W - F + 2P) / S + 1"]
    return f"<p>input {esc(d.input_shape)}</p>" + html_table(header, rows, "formula")


def _curves(d: ReportData) -> str:
    if not d.history:
        return '<p class="muted">metrics.csv missing or empty</p>'
    h = d.history

    def col(key):
        return [(r["epoch"], r[key]) for r in h if key in r]

    charts = [
        svg_chart({"train loss": col("train_loss"), "val loss": col("val_loss")}, "loss"),
        svg_chart(
            {"train acc": col("train_acc"), "val acc": col("val_acc")}, "accuracy", percent=True
        ),
        svg_chart({"learning rate": col("lr")}, "learning rate (end of epoch)", log=True),
    ]
    if any("val_map" in r for r in h):
        charts.insert(2, svg_chart({"val mAP": col("val_map")}, "val mAP", percent=True))
    return (
        '<div class="charts">' + "".join(f'<div class="chart">{c}</div>' for c in charts) + "</div>"
    )


def _warning(d: ReportData) -> str:
    """The one-class / near-the-largest-class warning, at the top of the page."""
    if not d.warning:
        return ""
    return f'<p class="warn"><b>Warning:</b> {esc(d.warning)}</p>'


def _learning(d: ReportData) -> str:
    """The learning check: what it saw, and both attempts when it restarted the run."""
    line = d.summary.get("not_learning") if isinstance(d.summary, dict) else None
    parts = []
    if not d.attempts and not line:
        if d.summary.get("learning_check") != "passed":
            return '<p class="muted">not recorded for this run</p>'
        return (
            '<p class="muted">passed: after its first epochs the run was learning (train '
            "accuracy above the largest class's share, or the loss falling)</p>"
        )
    if d.attempts:
        first = d.attempts[0]
        parts.append(
            '<p class="warn">attempt 1 was not learning and was stopped; the run restarted '
            "from scratch once with less regularisation (attempts.json; attempt 1's config, "
            f"metrics, curves and model in {esc(first.get('folder', 'attempts/1'))}/)</p>"
            f"<p>{esc(first.get('not_learning', ''))}</p>"
        )
        rows = []
        for a in d.attempts:
            changes = a.get("changes") or []
            what = "; ".join(
                f"{esc(c.get('key'))}: {esc(json.dumps(c.get('from')))} &rarr; "
                f"{esc(json.dumps(c.get('to')))}"
                for c in changes
            )
            if a.get("attempt") == 1:
                acc, epochs = a.get("best_val_acc"), a.get("epochs", "?")
                train_acc = a.get("train_acc")
            else:
                best = max(d.history, key=lambda r: r.get("val_acc", 0.0), default={})
                acc, epochs = best.get("val_acc"), len(d.history)
                train_acc = d.history[-1].get("train_acc") if d.history else None
            rows.append(
                [
                    esc(a.get("attempt", "?")),
                    esc(epochs),
                    percent(train_acc) if isinstance(train_acc, float) else "-",
                    percent(acc) if isinstance(acc, float) else "-",
                    what or "-",
                ]
            )
        parts.append(
            html_table(["attempt", "epochs", "last train acc", "best val acc", "changed"], rows)
        )
    if line and (not d.attempts or line != d.attempts[0].get("not_learning")):
        parts.append(f'<p class="warn">{esc(line)}</p>')
    return "".join(parts)


def _confusion(d: ReportData) -> str:
    m = d.metrics
    if m is None:
        return '<p class="muted">no predictions</p>'
    if getattr(m, "multi_label", False):
        return '<p class="muted">multi-label model: see the per-label table</p>'
    cm = m.confusion
    header = ["true \\ predicted", *m.classes]
    rows = []
    for name, row in zip(m.classes, cm, strict=True):
        total = max(sum(row), 1)
        cells = []
        for j, v in enumerate(row):
            share = v / total
            tone = "47,111,222" if m.classes[j] == name else "200,55,45"
            cells.append(
                f'<span style="display:block;background:rgba({tone},{0.08 + 0.7 * share:.2f})">'
                f"{v}<br><small>{100 * share:.0f}%</small></span>"
            )
        rows.append([esc(name), *cells])
    return (
        f"<p>evaluated on {esc(d.eval_source)}: {m.n} images, accuracy {percent(m.top1)}</p>"
        + html_table(header, rows)
    )


def _per_class(d: ReportData) -> str:
    m = d.metrics
    if m is None:
        return '<p class="muted">no predictions</p>'
    if getattr(m, "multi_label", False):
        rows = [
            [esc(r.name), percent(r.precision), percent(r.recall), percent(r.f1), r.support]
            for r in m.per_label
        ]
        return f"<p>mAP {m.map:.3f}, subset accuracy {percent(m.subset_accuracy)}</p>" + html_table(
            ["label", "precision", "recall", "F1", "support"], rows
        )
    rows = [
        [esc(r.name), percent(r.precision), percent(r.recall), percent(r.f1), r.support]
        for r in m.per_class
    ]
    for name, avg in (("macro avg", m.macro), ("weighted avg", m.weighted)):
        rows.append(
            [
                f"<b>{name}</b>",
                percent(avg["precision"]),
                percent(avg["recall"]),
                percent(avg["f1"]),
                m.n,
            ]
        )
    return html_table(["class", "precision", "recall", "F1", "support"], rows)


def _card(t: Thumb, wide=False) -> str:
    img = f'<img src="{data_uri(t.png)}" alt="{esc(Path(t.path).name)}">'
    if t.extra_png is not None:
        img = f'<div class="pair">{img}<img src="{data_uri(t.extra_png)}" alt="Grad-CAM"></div>'
    return (
        f'<div class="card{" wide" if wide else ""}">{img}<div>{t.words[0]} <b>{esc(t.true)}</b>'
        f"<br>{t.words[1]} <b>{esc(t.predicted)}</b> {100 * t.probability:.1f}%</div>"
        f'<div class="muted">{esc(Path(t.path).name)}</div></div>'
    )


def _gallery(thumbs: list[Thumb], empty: str, wide=False) -> str:
    if not thumbs:
        return f'<p class="muted">{esc(empty)}</p>'
    return '<div class="cards">' + "".join(_card(t, wide) for t in thumbs) + "</div>"


def _timing(d: ReportData) -> str:
    t = d.timing
    if not t:
        return '<p class="muted">timing.json missing</p>'
    rows = []
    for n, s in enumerate(t.get("sessions", []), 1):
        rows.append(
            [
                f"session {n}",
                esc(s.get("decode_s", "-")),
                esc(s.get("images", "-")),
                esc(s.get("first_step_s", "-")),
                esc(s.get("wall_s", "-")),
            ]
        )
    out = html_table(["", "decode s", "images", "first step s (compile)", "wall s"], rows)
    epochs = t.get("epochs", {})
    if epochs:
        secs = sorted(float(v) for v in epochs.values())
        out += (
            f"<p>{len(secs)} epochs: {sum(secs):.1f} s in all; per epoch min {secs[0]:.2f} s, "
            f"median {statistics.median(secs):.2f} s, max {secs[-1]:.2f} s</p>"
            + "<details><summary>seconds per epoch</summary>"
            + html_table(["epoch", "seconds"], [[esc(k), esc(v)] for k, v in epochs.items()])
            + "</details>"
        )
    machine = t.get("machine", {})
    out += "<p>machine</p>" + html_table(None, [[esc(k), esc(v)] for k, v in machine.items()], "kv")
    return out


def render(d: ReportData, probe_script: str | None = None) -> str:
    """The report page. probe_script (tests only) is embedded under a one-off CSP nonce."""
    nonce = secrets.token_hex(12) if probe_script else ""
    script_src = f"'nonce-{nonce}'" if nonce else "'none'"
    csp = f"default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src {script_src}"
    samples = (
        f'<img class="full" src="{data_uri(d.samples_png)}" alt="augmented training samples">'
        if d.samples_png
        else '<p class="muted">samples.png missing</p>'
    )
    none = ""  # why a gallery is empty when it is not for want of images
    if d.metrics is None:
        none = "no predictions (see the note at the top)"
    elif getattr(d.metrics, "multi_label", False):
        none = "multi-label model: the galleries are drawn for single-label runs"
    body = {
        "command": _command(d),
        "data": _data(d),
        "network": _network(d),
        "curves": _curves(d),
        "learning": _learning(d),
        "confusion": _confusion(d),
        "per-class": _per_class(d),
        "mistakes": _gallery(d.mistakes, none or "no mistakes on the evaluated images"),
        "unsure": _gallery(d.unsure, none or "no correct predictions"),
        "augmentation": "<p>training images as the network sees them (after augmentation)</p>"
        + samples,
        "gradcam": _gallery(d.gradcams, none or "no mistakes to explain", wide=True),
        "label-issues": (f"<p>{esc(d.label_issues_note)}</p>" if d.label_issues_note else "")
        + _gallery(d.label_issues, "not checked yet: run cnn doctor DIR --model RUN"),
        "timing": _timing(d),
    }
    nav = "".join(f'<a href="#{k}">{esc(v)}</a>' for k, v in SECTIONS)
    notes = "".join(f'<p class="muted">{esc(n)}</p>' for n in d.notes)
    sections = "".join(
        f'<section id="{k}"><h2>{esc(v)}</h2>{body[k]}</section>' for k, v in SECTIONS
    )
    probe = f'<script nonce="{nonce}">{probe_script}</script>' if probe_script else ""
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{csp}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>cnn run {esc(d.run_name)}</title><style>{CSS}</style>{probe}</head><body>"
        f"<h1>cnn run {esc(d.run_name)}</h1>{_warning(d)}<nav>{nav}</nav>{notes}{sections}"
        "</body></html>\n"
    )


def write_report(
    run_dir: str | Path, predictions: Predictions | None = None, probe_script: str | None = None
) -> Path:
    """Build RUN/report.html (atomically) and return its path."""
    run_dir = Path(run_dir)
    page = render(collect(run_dir, predictions), probe_script)
    path = run_dir / REPORT_FILE
    atomic_write_text(path, page)
    return path
