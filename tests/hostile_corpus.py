"""The hostile-file corpus: build it, run every command over it, read back each case's outcome.

Shared by tests/test_hostile.py (which asserts the outcomes) and scripts/robustness_report.py
(which writes them to docs/robustness.md), so the published table is what the code does.
Every command runs as a real subprocess with a time limit; its peak resident memory is
sampled from /proc for it and every process it starts.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from tests.imagefactory import UNICODE_NAME, make_class_tree, make_odd_images

COMMANDS = ("train", "doctor", "predict", "augment")
TINY = ["--image-size", "16", "--filters", "8,16", "--dense", "16", "--batch-size", "8"]
TINY += ["--recipe", "fixed"]
TIMEOUT_S = 240
# Far below what a decoded bomb would need (30000 x 30000 x 3 bytes = 2.7 GB).
MEMORY_LIMIT_MIB = 1536
ESCAPE_CLASS = "evil\\..\\..\\escape"
HOSTILE_BUNDLE_CLASSES = ["../../escape", "/etc", ".."]
IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0

GOOD = {"train": "trained", "doctor": "ok", "predict": "predicted", "augment": "augmented"}
BAD = {"train": "skipped", "doctor": "unreadable", "predict": "error", "augment": "skipped"}
IGNORED = {"train": "ignored", "doctor": "ignored", "augment": "not used"}


@dataclass
class Case:
    """One hostile input and the outcome kind expected from each command that sees it."""

    name: str
    path: str  # relative to its dataset root ("" for the dataset itself)
    expect: dict[str, str]
    dataset: str = "corpus"  # "corpus", "names" or "bundle"
    note: str = ""
    depends_on_machine: bool = False  # the outcome differs by user (root) or Pillow build


@dataclass
class Finished:
    """A finished (or killed) command."""

    argv: list[str]
    returncode: int
    stdout: str
    stderr: str
    seconds: float
    peak_rss_mib: float
    timed_out: bool = False
    peak_detail: str = ""  # the processes (pid, name, MiB) at the peak


@dataclass
class Row:
    """One line of the robustness table."""

    case: str
    command: str
    outcome: str  # "<kind>" or "<kind>: <detail>"
    expected: str

    @property
    def kind(self) -> str:
        """The outcome's kind, without the detail."""
        return self.outcome.split(":", 1)[0]

    @property
    def ok(self) -> bool:
        """The outcome is the expected one (a duplicate may also be a leak, by the split)."""
        if self.expected == "duplicate":
            return self.kind in ("duplicate", "leak")
        return self.kind == self.expected


@dataclass
class CorpusRun:
    """Everything run_corpus produced."""

    root: Path
    cases: list[Case]
    runs: dict[str, Finished] = field(default_factory=dict)
    rows: list[Row] = field(default_factory=list)


# ---------------------------------------------------------------- building

_ODD_NAMES = {  # in the order of the table
    "truncated.jpg": "truncated JPEG",
    "truncated.png": "truncated PNG",
    "empty.jpg": "0-byte file",
    "text.jpg": "text file named .jpg",
    "page.png": "HTML page saved as .png",
    "garbage.png": "random bytes named .png",
    "bomb.png": "decompression bomb: 30000 x 30000 declared in a 69-byte PNG",
    "bomb_just_over.png": "decompression bomb just over the 100 MP limit",
    "gray16.png": "16-bit greyscale PNG",
    "palette_transparent.png": "palette PNG with a transparent index",
    "palette.png": "palette PNG",
    "cmyk.jpg": "CMYK JPEG",
    "exif_rot6.jpg": "EXIF-rotated JPEG (orientation 6)",
    "exif_rot8.jpg": "EXIF-rotated JPEG (orientation 8)",
    "tiny_1x1.png": "1x1 image",
    "animated.gif": "animated GIF (first frame)",
    "multipage.tif": "multi-page TIFF (first page)",
    UNICODE_NAME: "unicode file name with spaces",
    "UPPER CASE.JPG": "upper-case extension, space in the name",
    "gray.png": "greyscale PNG in a colour class",
    "gray.jpg": "greyscale JPEG in a colour class",
    "gray_alpha.png": "greyscale + alpha PNG",
    "rgba.png": "RGBA PNG with transparent pixels",
    "bilevel.png": "1-bit PNG",
    "int32.tif": "32-bit integer TIFF",
    "float.tif": "32-bit float TIFF",
    "progressive.jpg": "progressive JPEG",
    "plain.bmp": "BMP",
    "plain.webp": "WebP",
}


# Synthetic odd images that really are the same picture: the same grey gradient in five
# formats, and the same solid red first frame in a GIF and a TIFF. (Two-halves pictures such
# as white|red and black|white are different pictures; only the old 9 x 8 difference hash
# called them alike.)
_LOOK_ALIKE = frozenset(
    {
        "gray.png",
        "gray.jpg",
        "gray_alpha.png",
        "int32.tif",
        "float.tif",
        "animated.gif",
        "multipage.tif",
    }
)


def _image(path: Path, seed: int, fmt: str | None = None) -> None:
    """A distinct 16x16 noise picture (no two seeds look alike to the duplicate finder)."""
    pixels = np.random.default_rng(seed).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path, fmt)


def build_corpus(base: Path) -> tuple[Path, Path, Path, list[Case]]:
    """Write base/corpus and base/names (two datasets) and base/outside; returns them + cases."""
    corpus, names, outside = base / "corpus", base / "names", base / "outside"
    written = make_class_tree(corpus, {"cats": 12, "dogs": 12}, size=16)
    cases: list[Case] = []
    expected = make_odd_images(corpus / "cats" / "odd")
    ordered = [n for n in _ODD_NAMES if n in expected] + sorted(set(expected) - set(_ODD_NAMES))
    for name in ordered:
        outcome = expected[name]
        expect = dict(GOOD if outcome == "ok" else BAD)
        if name == "tiny_1x1.png":
            expect["doctor"] = "tiny"
        if name in _LOOK_ALIKE:
            expect["doctor"] = "duplicate"
        optional = name.endswith(".webp")  # only where Pillow was built with WebP
        cases.append(
            Case(
                _ODD_NAMES.get(name, name), f"cats/odd/{name}", expect, depends_on_machine=optional
            )
        )

    no_access = corpus / "cats" / "no_access.jpg"
    _image(no_access, 1)
    no_access.chmod(0)
    cases.append(
        Case(
            "unreadable file (mode 000)",
            "cats/no_access.jpg",
            dict(GOOD) if IS_ROOT else dict(BAD),
            note="run as root, which reads any file" if IS_ROOT else "",
            depends_on_machine=True,
        )
    )
    os.symlink(".", corpus / "cats" / "loop")
    cases.append(
        Case("symlink loop (cats/loop -> cats)", "cats/loop", {**IGNORED, "predict": "not listed"})
    )
    fifo = corpus / "cats" / "pipe.jpg"
    os.mkfifo(fifo)
    cases.append(Case("named pipe called .jpg", "cats/pipe.jpg", {**IGNORED, "predict": "error"}))
    (corpus / "cats" / ".hidden.jpg").write_bytes(written["cats"][0].read_bytes())
    cases.append(Case("hidden file", "cats/.hidden.jpg", {**IGNORED, "predict": "not listed"}))

    outside.mkdir(parents=True)
    _image(outside / "secret.png", 2)
    _image(outside / "other.png", 3)
    os.symlink(outside / "secret.png", corpus / "dogs" / "outside.png")
    cases.append(
        Case(
            "symlink to a file outside the dataset",
            "dogs/outside.png",
            {**IGNORED, "predict": "predicted"},
            note="predict reads what it is given",
        )
    )
    os.symlink(outside, corpus / "dogs" / "outside_dir")
    cases.append(
        Case(
            "symlink to a folder outside the dataset",
            "dogs/outside_dir",
            {**IGNORED, "predict": "not listed"},
        )
    )
    shutil.copy(written["cats"][0], corpus / "dogs" / "copy_of_a_cat.png")
    cases.append(
        Case(
            "the same file in two classes",
            "dogs/copy_of_a_cat.png",
            {**GOOD, "doctor": "conflict", "train": "trained+warned"},
        )
    )
    _image(corpus / "dogs" / "png_data.jpg", 4, "PNG")
    cases.append(Case("PNG data named .jpg", "dogs/png_data.jpg", dict(GOOD)))
    (corpus / "dogs" / "folder.jpg").mkdir()
    _image(corpus / "dogs" / "folder.jpg" / "inside.png", 5)
    cases.append(Case("folder named like an image", "dogs/folder.jpg/inside.png", dict(GOOD)))
    long_name = "long_" + "x" * 200 + ".png"
    _image(corpus / "dogs" / long_name, 6)
    cases.append(Case("205-character file name", f"dogs/{long_name}", dict(GOOD)))
    _image(corpus / "dogs" / "line\nbreak.png", 7)
    cases.append(Case("newline in a file name", "dogs/line\nbreak.png", dict(GOOD)))

    (corpus / "empty_class").mkdir()
    cases.append(Case("empty class folder", "empty_class", {**IGNORED, "predict": "not listed"}))
    make_class_tree(corpus, {"-rf": 3}, size=16, seed=3)
    cases.append(
        Case(
            "class folder named -rf",
            "-rf",
            {"train": "class", "doctor": "class", "predict": "sorted", "augment": "class"},
        )
    )
    make_class_tree(corpus, {"...": 3}, size=16, seed=4)
    cases.append(
        Case("class folder named ...", "...", {**IGNORED, "predict": "not listed"}, note="hidden")
    )

    make_class_tree(names, {ESCAPE_CLASS: 4, "plain": 4}, size=16, seed=5)
    cases.append(
        Case(
            "class folder named evil\\..\\..\\escape",
            ESCAPE_CLASS,
            {"train": "class", "doctor": "class", "predict": "sorted", "augment": "error"},
            dataset="names",
        )
    )
    cases.append(
        Case(
            "bundle whose class names are ../../escape, /etc and ..",
            "",
            {"predict": "sorted"},
            dataset="bundle",
        )
    )
    return corpus, names, outside, cases


# ---------------------------------------------------------------- running


def _session_rss_mib(sid: int) -> tuple[float, str]:
    """Summed peak resident memory (VmHWM) of every live process in session sid, in MiB, and
    who held it. VmHWM is each process's high-water mark since its exec, so a short spike
    between two samples still counts."""
    total, parts = 0, []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as fh:
                head, tail = fh.read().rsplit(b")", 1)
                fields = tail.split()
            if int(fields[3]) != sid:  # state ppid pgrp session ...
                continue
            with open(f"/proc/{entry.name}/status", encoding="ascii", errors="replace") as fh:
                for line in fh:
                    if line.startswith("VmHWM:"):
                        total += int(line.split()[1])
                        name = head.split(b"(", 1)[-1].decode("ascii", "replace")
                        parts.append(f"{entry.name} {name} {int(line.split()[1]) // 1024} MiB")
        except (OSError, ValueError, IndexError):
            continue
    return total / 1024, ", ".join(parts)


def run_measured(argv: list[str], timeout: float = TIMEOUT_S, cwd: Path | None = None) -> Finished:
    """Run argv in its own session; kill the whole session past timeout; sample its memory."""
    env = {**os.environ, "COLUMNS": "400", "PYTHONUTF8": "1", "NO_COLOR": "1"}
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started = time.monotonic()
        proc = subprocess.Popen(
            argv, stdout=out, stderr=err, cwd=cwd, env=env, start_new_session=True
        )
        peak, peak_detail, timed_out = 0.0, "", False
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            now, detail = _session_rss_mib(proc.pid)
            if now > peak:
                peak, peak_detail = now, detail
            if time.monotonic() - started > timeout:
                timed_out = True
                os.killpg(proc.pid, signal.SIGKILL)
                pid, status, usage = os.wait4(proc.pid, 0)
                break
            time.sleep(0.05)
        proc.returncode = os.waitstatus_to_exitcode(status)
        seconds = time.monotonic() - started
        # Not wait4's ru_maxrss: Linux carries the forking parent's high-water mark across
        # fork + exec into the child's, so under pytest it reports pytest's own peak (1.6-2.3
        # GiB after the in-process CLI tests), not the command's.
        out.seek(0)
        err.seek(0)
        text_out = out.read().decode("utf-8", "replace")
        text_err = err.read().decode("utf-8", "replace")
    return Finished(
        argv, proc.returncode, text_out, text_err, seconds, peak, timed_out, peak_detail
    )


def _cnn(*args: str | Path) -> list[str]:
    return [sys.executable, "-m", "cnncli", *map(str, args)]


def _hostile_bundle(run: Path, into: Path) -> Path:
    """A copy of run/model whose class names try to leave a --sort-into folder."""
    into.mkdir(parents=True)
    meta = json.loads((run / "model" / "model.json").read_text(encoding="utf-8"))
    meta["classes"] = HOSTILE_BUNDLE_CLASSES[: len(meta["classes"])]
    (into / "model.json").write_text(json.dumps(meta), encoding="utf-8")
    shutil.copy(run / "model" / "weights.safetensors", into / "weights.safetensors")
    return into


def run_commands(base: Path, corpus: Path, names: Path) -> dict[str, Finished]:
    """Run train, doctor, predict and augment on both datasets (and predict on a bad bundle)."""
    runs: dict[str, Finished] = {}
    for label, data in (("corpus", corpus), ("names", names)):
        run = base / f"run_{label}"
        runs[f"train/{label}"] = run_measured(
            _cnn("train", data, "--out", run, "--epochs", "1", *TINY, "--json")
        )
        runs[f"doctor/{label}"] = run_measured(_cnn("doctor", data, "--json"))
        runs[f"predict/{label}"] = run_measured(
            _cnn(
                "predict",
                data,
                "--model",
                run,
                "--json",
                "--sort-into",
                base / f"box_{label}" / "sorted",
            )
        )
        runs[f"augment/{label}"] = run_measured(
            _cnn("augment", data, base / f"aug_{label}", "--per-image", "1", "--ops", "flip")
        )
    if (base / "run_corpus" / "model" / "model.json").is_file():
        bundle = _hostile_bundle(base / "run_corpus", base / "hostile_bundle")
        runs["predict/bundle"] = run_measured(
            _cnn(
                "predict",
                corpus / "dogs",
                "--model",
                bundle,
                "--json",
                "--sort-into",
                base / "box_bundle" / "sorted",
            )
        )
    return runs


# ---------------------------------------------------------------- reading outcomes


def _json_tail(text: str) -> dict:
    for line in reversed(text.strip().splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    return {}


def _inside(path: Path, folder: Path) -> bool:
    real, top = os.path.realpath(path), os.path.realpath(folder)
    return os.path.commonpath([real, top]) == top


def _train_outcome(case: Case, run: Finished, run_dir: Path, root: Path) -> str:
    from cnncli.data.scan import read_manifest

    if run.returncode != 0:
        return f"error: exit {run.returncode}: {run.stderr.strip()[-200:]}"
    summary = _json_tail(run.stdout)
    skipped = {s["path"]: s["reason"] for s in summary.get("skipped", [])}
    dataset = read_manifest(run_dir / "split.csv", root)
    used = {p for items in dataset.splits.values() for p, _ in items}
    ignored = dict(dataset.ignored)
    if case.path in skipped:
        return f"skipped: {skipped[case.path]}"
    if case.path in dataset.classes:
        return "class: trained as a class"
    if case.path in used:
        warned = "warning:" in run.stderr + run.stdout and case.path in run.stdout + run.stderr
        return "trained+warned: flagged before training" if warned else "trained"
    if case.path in ignored:
        return f"ignored: {ignored[case.path]}"
    return "absent"


def _doctor_outcome(case: Case, run: Finished) -> str:
    if run.returncode not in (0, 1):
        return f"error: exit {run.returncode}: {run.stderr.strip()[-200:]}"
    report = _json_tail(run.stdout)
    for key in ("unreadable", "tiny"):
        for entry in report.get(key, []):
            if entry["path"] == case.path:
                return f"{key}: {entry['reason']}"
    for group in report.get("duplicates", []):
        if any(f["path"] == case.path for f in group["files"]):
            kind = "conflict" if group["conflict"] else "leak" if group["leak"] else "duplicate"
            others = ", ".join(f["path"] for f in group["files"] if f["path"] != case.path)
            return f"{kind}: same picture as {others}"
    ignored = {e["path"]: e["reason"] for e in report.get("ignored", [])}
    if case.path in ignored:
        return f"ignored: {ignored[case.path]}"
    if case.path in report.get("classes", []):
        return "class: checked as a class"
    return "ok"


def _predict_outcome(case: Case, run: Finished, root: Path, sorted_dir: Path) -> str:
    if run.returncode not in (0, 1):
        return f"error: exit {run.returncode}: {run.stderr.strip()[-200:]}"
    rows = [json.loads(line) for line in run.stdout.splitlines() if line.startswith("{")]
    by_path = {Path(os.path.relpath(r["path"], root)).as_posix(): r for r in rows}
    target = root / case.path
    if target.is_dir() or case.dataset == "bundle":
        inside = [p for p in by_path if case.dataset == "bundle" or p.startswith(f"{case.path}/")]
        if not inside:
            return "not listed"
        box = sorted_dir.parent
        escaped = [p for p in box.rglob("*") if not _inside(p, sorted_dir)]
        escaped += [p for p in (box.parent / "escape", box.parent.parent / "escape") if p.exists()]
        copies = [p for p in sorted_dir.rglob("*") if p.is_file()]
        if escaped or len(copies) != sum("error" not in r for r in rows):
            return f"escaped: {escaped[:1]}, {len(copies)} copies in --sort-into"
        return "sorted: every copy stays inside --sort-into"
    row = by_path.get(case.path)
    if row is None:
        return "not listed"
    if "error" in row:
        return f"error: {row['error']}"
    return "predicted"  # which label is the model's business, not the corpus's


def _augment_outcome(case: Case, run: Finished, out_dir: Path, root: Path) -> str:
    if run.returncode != 0:
        lines = [line for line in run.stderr.strip().splitlines() if line.strip()]
        last = lines[-1].removeprefix("error: ") if lines else ""
        return f"error: exit {run.returncode}: {last}"
    manifest = out_dir / "augment_manifest.csv"
    with manifest.open(encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh))
    if any(r["class"] == case.path for r in rows):
        return "class: augmented as a class"
    if any(r["source"] == case.path and r["kind"] == "augmented" for r in rows):
        return "augmented"
    prefix = f"skipped {root / case.path}: "
    text = run.stdout.replace("\r", "")
    start = text.find(prefix)
    if start >= 0:
        return f"skipped: {text[start + len(prefix) :].splitlines()[0].strip()}"
    return "not used"


def read_outcomes(base: Path, corpus: Path, names: Path, cases: list[Case], runs) -> list[Row]:
    """One Row per (case, command) the case has an expectation for."""
    rows = []
    for case in cases:
        root = {"corpus": corpus, "names": names, "bundle": corpus / "dogs"}[case.dataset]
        label = case.dataset
        for command in COMMANDS:
            if command not in case.expect:
                continue
            run = runs[f"{command}/{label}"]
            if run.timed_out:
                outcome = f"hang: killed after {TIMEOUT_S} s"
            elif command == "train":
                outcome = _train_outcome(case, run, base / f"run_{label}", root)
            elif command == "doctor":
                outcome = _doctor_outcome(case, run)
            elif command == "predict":
                sorted_dir = base / f"box_{label}" / "sorted"
                outcome = _predict_outcome(case, run, root, sorted_dir)
            else:
                outcome = _augment_outcome(case, run, base / f"aug_{label}", root)
            rows.append(Row(case.name, command, outcome, case.expect[command]))
    return rows


def run_corpus(base: Path) -> CorpusRun:
    """Build the corpus under base, run every command over it, and read the outcomes."""
    corpus, names, _, cases = build_corpus(base)
    try:
        runs = run_commands(base, corpus, names)
        rows = read_outcomes(base, corpus, names, cases, runs)
    finally:
        (corpus / "cats" / "no_access.jpg").chmod(0o644)  # so the folder can be removed
    return CorpusRun(base, cases, runs, rows)


# ---------------------------------------------------------------- the published table


def _cell(text: str) -> str:
    return text.replace("\n", "\\n").replace("|", "\\|")


def table_lines(result: CorpusRun, *, portable_only: bool = False) -> list[str]:
    """Markdown rows: one per case, one column per command (blank where it does not apply)."""
    by_case: dict[str, dict[str, str]] = {}
    for row in result.rows:
        by_case.setdefault(row.case, {})[row.command] = row.outcome
    lines = ["| case | " + " | ".join(f"`cnn {c}`" for c in COMMANDS) + " |"]
    lines.append("| --- " * (len(COMMANDS) + 1) + "|")
    for case in result.cases:
        if portable_only and case.depends_on_machine:
            continue
        cells = [by_case.get(case.name, {}).get(c, "") for c in COMMANDS]
        name = case.name + (f" ({case.note})" if case.note else "")
        lines.append("| " + " | ".join(_cell(x) for x in [name, *cells]) + " |")
    return lines
