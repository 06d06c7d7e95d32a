"""Run folders at a glance: what each run was, how far it got, and how two runs differ.

Reads only small files (run.json, config.toml, metrics.csv, summary.json, timing.json) and
never imports jax; a damaged or half-written file costs that run a note, not the listing.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import tomllib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from cnncli.reporting.reportdata import read_history
from cnncli.training.timing import read_timing

SORT_KEYS = ("date", "name", "acc", "wall", "epochs", "status")


@dataclass
class RunInfo:
    """One row of `cnn runs`."""

    name: str
    path: str
    date: str  # when the run folder was made, local time, ISO 8601 to the second
    data: str
    model: str
    image_size: int | list[int] | None  # N (N x N) or [height, width]
    epochs_done: int
    epochs: int | None  # planned
    best_val_acc: float | None
    wall_s: float | None
    status: str  # finished | interrupted | running
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _json(path: Path, notes: list[str]) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if isinstance(data, dict):
            return data
    except (OSError, ValueError):
        pass
    notes.append(f"{path.name} unreadable")
    return {}


def _config(run: Path, notes: list[str]) -> dict[str, Any]:
    try:
        return tomllib.loads((run / "config.toml").read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError):
        notes.append("config.toml missing or unreadable")
        return {}


def describe_model(config: dict[str, Any], argv: list[str], recipe: dict | None = None) -> str:
    """The preset named on the command line or chosen by the recipe, a backbone, or the
    conv filters."""
    if "--model" in argv[:-1]:
        return argv[argv.index("--model") + 1]
    recipe = recipe or {}
    explicit = set(recipe.get("explicit", []))
    for choice in recipe.get("recipe", {}).get("choices", []):
        if choice.get("key") == "model" and not explicit & {
            "model",
            "model.conv",
            "model.backbone",
        }:
            return str(choice.get("value"))
    model = config.get("model", {})
    if model.get("backbone"):
        return str(model["backbone"])
    filters = [str(b.get("filters", "?")) for b in model.get("conv", [])]
    return "conv " + "-".join(filters) if filters else "?"


def _alive(session: dict[str, Any]) -> bool:
    """Is the process that wrote this session still running (on this host)?"""
    pid = session.get("pid")
    if not isinstance(pid, int) or session.get("host") != platform.node():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a recycled pid that is not a cnn process does not count
        return b"cnn" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return True


def run_status(summary: dict, timing: dict) -> str:
    """running (its process is alive), finished (summary.json, written when training
    ends), or interrupted (Ctrl-C, kill, crash: `cnn train --resume` continues it)."""
    sessions = timing.get("sessions") or [{}]
    if not sessions[-1].get("ended") and _alive(sessions[-1]):
        return "running"
    return "finished" if summary else "interrupted"


def read_run(run: Path) -> RunInfo:
    """Everything `cnn runs` shows about one run folder."""
    notes: list[str] = []
    info = _json(run / "run.json", notes)
    config = _config(run, notes)
    summary = _json(run / "summary.json", notes)
    timing = read_timing(run)
    history = read_history(run / "metrics.csv")
    _check_metrics(run, history, notes)
    planned = config.get("train", {}).get("epochs")
    done = len(history) if history else int(summary.get("epochs", 0) or 0)
    accs = [r["val_acc"] for r in history if "val_acc" in r]
    best = max(accs) if accs else summary.get("best_val_acc")
    walls = [s.get("wall_s") for s in timing.get("sessions", []) if s.get("wall_s") is not None]
    made = run / "run.json" if (run / "run.json").exists() else run
    row = RunInfo(
        name=run.name,
        path=str(run),
        date=dt.datetime.fromtimestamp(made.stat().st_mtime).isoformat(timespec="seconds"),
        data=str(info.get("data_dir", "?")),
        model=describe_model(
            config, [str(a) for a in info.get("argv", [])], _json(run / "recipe.json", notes)
        ),
        image_size=config.get("data", {}).get("image_size"),
        epochs_done=done,
        epochs=planned,
        best_val_acc=float(best) if best is not None else None,
        wall_s=round(sum(walls), 1) if walls else None,
        status=run_status(summary, timing),
        notes=notes,
    )
    if (run / "fold1").is_dir():
        return _cross_validation(run, row)
    return row


def _cross_validation(run: Path, row: RunInfo) -> RunInfo:
    """A `cnn train --folds K` folder: its folds' epochs, wall time and status, the mean
    val accuracy over the folds (cv.json, written when every fold is done)."""
    folds = sorted(p for p in run.iterdir() if p.is_dir() and p.name.startswith("fold"))
    infos = [read_run(f) for f in folds]
    cv = _json(run / "cv.json", row.notes)
    row.model = f"{row.model}, {cv.get('k', len(folds))} folds"
    row.epochs_done = sum(i.epochs_done for i in infos)
    row.epochs = sum(i.epochs or 0 for i in infos) or row.epochs
    walls = [i.wall_s for i in infos if i.wall_s is not None]
    row.wall_s = round(sum(walls), 1) if walls else None
    if cv:
        row.status = "finished"
        row.best_val_acc = cv.get("val_acc", {}).get("mean")
        row.notes.append("val acc: mean over the folds")
    elif any(i.status == "running" for i in infos):
        row.status = "running"
    else:
        row.status = "interrupted"
    return row


def _check_metrics(run: Path, history: list[dict], notes: list[str]) -> None:
    """Note a metrics.csv that lost rows or ends mid-line (written by something else)."""
    path = run / "metrics.csv"
    if not path.is_file():
        return
    try:
        lines = path.read_bytes().decode("utf-8", "replace").splitlines()
    except OSError:
        notes.append("metrics.csv unreadable")
        return
    if len(lines) - 1 != len(history) or (lines and not path.read_bytes().endswith(b"\n")):
        notes.append(f"metrics.csv damaged ({len(history)} readable rows)")


def is_run(path: Path) -> bool:
    return path.is_dir() and any(
        (path / f).is_file() for f in ("run.json", "config.toml", "metrics.csv")
    )


def find_runs(base: str | Path) -> list[RunInfo]:
    """Every run folder in base (base itself when it is one), in no particular order."""
    base = Path(base)
    if is_run(base):
        return [read_run(base)]
    return [read_run(p) for p in sorted(base.iterdir()) if is_run(p)]


def sort_runs(runs: list[RunInfo], key: str) -> list[RunInfo]:
    """Sorted for display: dates and names ascending, accuracy and times best/longest first."""
    if key == "name":
        return sorted(runs, key=lambda r: r.name)
    if key == "date":
        return sorted(runs, key=lambda r: (r.date, r.name))
    if key == "acc":
        return sorted(runs, key=lambda r: -(r.best_val_acc if r.best_val_acc is not None else -1))
    if key == "wall":
        return sorted(runs, key=lambda r: -(r.wall_s or 0))
    if key == "epochs":
        return sorted(runs, key=lambda r: -r.epochs_done)
    return sorted(runs, key=lambda r: (r.status, r.name))


def flat_config(config: dict[str, Any], prefix: str = "") -> dict[str, str]:
    """config.toml as 'section.key' -> value text (conv blocks as model.conv[i].key)."""
    out: dict[str, str] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flat_config(value, name + "."))
        elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            for i, item in enumerate(value):
                out.update(flat_config(item, f"{name}[{i}]."))
        else:
            out[name] = json.dumps(value)
    return out


def diff_runs(a: Path, b: Path) -> dict[str, Any]:
    """The config lines that differ and both runs' final metrics."""
    cfg_a, cfg_b = flat_config(_config(a, [])), flat_config(_config(b, []))
    keys = sorted(set(cfg_a) | set(cfg_b))
    changed = [
        (k, cfg_a.get(k, "-"), cfg_b.get(k, "-")) for k in keys if cfg_a.get(k) != cfg_b.get(k)
    ]
    info_a, info_b = read_run(a), read_run(b)
    if info_a.data != info_b.data:
        changed.insert(0, ("data", info_a.data, info_b.data))
    finals = []
    for run, info in ((a, info_a), (b, info_b)):
        history = read_history(run / "metrics.csv")
        final = history[-1] if history else {}
        finals.append(
            {
                **{k: v for k, v in final.items()},
                "best_val_acc": info.best_val_acc,
                "wall_s": info.wall_s,
                "status": info.status,
            }
        )
    return {"a": str(a), "b": str(b), "config": changed, "final": finals}
