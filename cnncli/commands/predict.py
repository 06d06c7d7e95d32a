"""`cnn predict`: classify files, folders and globs; table, CSV or JSON."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cnncli.commands.common import BatchOpt, Opt, QuietOpt, TtaOpt, fail, handled_errors
from cnncli.training.xla_env import configure_xla


def predict(
    inputs: Annotated[
        list[str],
        typer.Argument(
            help="Image and video files, folders of images (recursive) and globs.",
            show_default=False,
        ),
    ],
    model: Annotated[
        Path | None,
        Opt(
            "--model",
            "-m",
            help="Run or model/ folder, .onnx or .stablehlo file (default: newest run under runs/).",
        ),
    ] = None,
    top_k: Annotated[int, Opt("--top-k", help="Show the k most likely classes.")] = 1,
    threshold: Annotated[
        float | None,
        Opt(
            "--threshold",
            help="Below this confidence the label is 'unknown'. Multi-label models: every "
            "label's threshold (default: each label's, tuned on val).",
        ),
    ] = None,
    csv_path: Annotated[
        Path | None, Opt("--csv", help="Write the predictions to this CSV file.")
    ] = None,
    json_out: Annotated[
        bool, Opt("--json", help="Print one JSON object per image on stdout.")
    ] = False,
    sort_into: Annotated[
        Path | None,
        Opt(
            "--sort-into",
            help="Copy each image into DIR/<label>/ (multi-label: every predicted label's "
            "folder; never moves or overwrites).",
        ),
    ] = None,
    tta: TtaOpt = False,
    batch_size: BatchOpt = 64,
    fps: Annotated[
        float,
        Opt(
            "--fps",
            help="Video files (.mp4 .mov .avi .mkv .webm, needs cnn\\[video]): frames "
            "classified per second of video.",
        ),
    ] = 1.0,
    quiet: QuietOpt = False,
) -> None:
    """Classify images (and video frames) with a trained model; exit 1 if some files could
    not be read."""
    configure_xla()
    with handled_errors():
        from cnncli.inference.exported import load_model
        from cnncli.inference.predict import collect_inputs, label_of, predict_paths
        from cnncli.inference.predict import top_k as top_k_of
        from cnncli.reporting.report import make_console
        from cnncli.reporting.result_tables import predictions_table
        from cnncli.training.run import newest_run

        console = make_console(to_stderr=json_out, quiet=quiet)
        if threshold is not None and not 0.0 <= threshold <= 1.0:
            raise fail("--threshold must be between 0 and 1")
        if top_k < 1:
            raise fail("--top-k must be >= 1")
        if not fps > 0:
            raise fail("--fps must be > 0")
        if model is None:
            model = newest_run()
            if model is None:
                raise fail("no trained model under runs/; pass --model RUN_OR_MODEL_DIR")
            console.print(f"using model [bold]{model}[/bold]")
        bundle = load_model(model)
        paths, problems = collect_inputs(inputs)
        for item, reason in problems:
            console.print(f"[red]error:[/red] {item}: {reason}")
        preds = predict_paths(bundle, paths, batch_size=batch_size, tta=tta, fps=fps)
        k = min(top_k, len(bundle.classes))
        if getattr(bundle, "multi_label", False):
            _report_label_sets(console, bundle, preds, threshold, csv_path, json_out, sort_into)
            _exit_on_errors(console, preds, problems)
            return
        rows = []
        for p in preds:
            if p.error is not None:
                rows.append({"path": p.path, "error": p.error})
                continue
            label, conf = label_of(p.probs, bundle.classes, threshold)
            row = {**_where(p), "label": label, "confidence": conf}
            if k > 1:
                row["top_k"] = [
                    {"label": c, "p": v} for c, v in top_k_of(p.probs, bundle.classes, k)
                ]
            rows.append(row)
        if csv_path is not None:
            _write_predictions_csv(csv_path, rows, k)
        if json_out:
            import json

            for row in rows:
                print(json.dumps(row, ensure_ascii=False))
        else:
            console.print(predictions_table(_framed(rows), k))
        if sort_into is not None:
            from cnncli.inference.predict import sort_into as copy_sorted

            ok = [p for p in preds if p.error is None]
            labels = [r["label"] for r in rows if "error" not in r]
            copies = copy_sorted(ok, labels, sort_into)
            console.print(f"copied {len(copies)} image(s) into [bold]{sort_into}[/bold]")
        _exit_on_errors(console, preds, problems)


def _where(p) -> dict:
    """A row's path and, for a video frame, the frame's index and time in seconds."""
    if p.frame is None:
        return {"path": p.path}
    return {"path": p.path, "frame": p.frame, "time": p.time}


def _framed(rows: list[dict]) -> list[dict]:
    """Rows for the terminal table: a video frame's path shows its time and index."""
    return [
        {**r, "path": f"{r['path']} @ {r['time']:.2f}s (frame {r['frame']})"} if "frame" in r else r
        for r in rows
    ]


def _exit_on_errors(console, preds, problems) -> None:
    """Name the files that could not be read and exit 1, if there are any."""
    failed = sum(1 for p in preds if p.error is not None) + len(problems)
    if failed:
        from rich.markup import escape

        for p in preds:
            if p.error is not None:  # one line however long: soft_wrap
                console.print(f"[red]error:[/red] {escape(f'{p.path}: {p.error}')}", soft_wrap=True)
        raise typer.Exit(1)


def _report_label_sets(console, bundle, preds, threshold, csv_path, json_out, sort_into) -> None:
    """Multi-label output: each image's label set (probability >= its label's threshold)."""
    from cnncli.inference.predict import label_set
    from cnncli.reporting.result_tables import label_sets_table

    thresholds = [threshold] * len(bundle.classes) if threshold is not None else bundle.thresholds
    rows = []
    for p in preds:
        if p.error is not None:
            rows.append({"path": p.path, "error": p.error})
            continue
        found = label_set(p.probs, bundle.classes, thresholds)
        probs = {c: float(v) for c, v in zip(bundle.classes, p.probs, strict=True)}
        rows.append({**_where(p), "labels": [c for c, _ in found], "probs": probs})
    if csv_path is not None:
        _write_label_sets_csv(csv_path, rows, bundle.classes)
    if json_out:
        import json

        for row in rows:
            print(json.dumps(row, ensure_ascii=False))
    else:
        console.print(label_sets_table(_framed(rows)))
    if sort_into is not None:
        from cnncli.inference.predict import sort_into as copy_sorted

        ok = [p for p in preds if p.error is None]
        labels = [r["labels"] or ["unknown"] for r in rows if "error" not in r]
        copies = copy_sorted(ok, labels, sort_into)
        console.print(
            f"copied {len(ok)} image(s) into [bold]{sort_into}[/bold] ({len(copies)} copies, "
            "one per predicted label; no label: unknown/)"
        )


def _write_label_sets_csv(path: Path, rows: list[dict], classes: list[str]) -> None:
    """path, (videos: frame, time), labels (joined by ';'), p_<class> for every class, error."""
    import csv
    import io

    from cnncli.atomic import atomic_write_text

    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    framed = any("frame" in row for row in rows)
    where = ["path", "frame", "time"] if framed else ["path"]
    writer.writerow([*where, "labels", *(f"p_{c}" for c in classes), "error"])
    for row in rows:
        cells = [row.get(name, "") for name in where]
        if "error" in row:
            writer.writerow([*cells, "", *([""] * len(classes)), row["error"]])
        else:
            probs = [f"{row['probs'][c]:.6f}" for c in classes]
            writer.writerow([*cells, ";".join(row["labels"]), *probs, ""])
    atomic_write_text(path, buf.getvalue())


def _write_predictions_csv(path: Path, rows: list[dict], k: int) -> None:
    """path, (videos: frame, time), label, confidence, (k > 1) top_k, error."""
    import csv
    import io

    from cnncli.atomic import atomic_write_text

    buf = io.StringIO()
    # Video frames add their index and time (seconds) after the path.
    where = ["path", "frame", "time"] if any("frame" in row for row in rows) else ["path"]
    fields = [*where, "label", "confidence"] + (["top_k"] if k > 1 else []) + ["error"]
    writer = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        out = {
            **{name: row.get(name, "") for name in where},
            "label": row.get("label", ""),
            "confidence": row.get("confidence", ""),
            "error": row.get("error", ""),
        }
        if k > 1:
            out["top_k"] = ";".join(f"{a['label']}:{a['p']:.6f}" for a in row.get("top_k", []))
        writer.writerow(out)
    atomic_write_text(path, buf.getvalue())
