"""`--labels FILE` through the real CLI: a labels file gives what class folders give."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

from cnncli.cli import app
from tests.conftest import TINY, shared_data


def _rows(manifest: Path) -> list[list[str]]:
    """The split manifest's data rows (split, label, class, path)."""
    with manifest.open(encoding="utf-8", newline="") as fh:
        return [row for row in csv.reader(fh) if row and not row[0].startswith("#")][1:]


def test_ants_and_bees_from_a_csv_train_exactly_like_the_folders(runner, tmp_path):
    """A CSV naming the same photos with a split column: same split, same metrics, same weights."""
    source = shared_data("hymenoptera_data")
    photos = tmp_path / "photos"
    lines = ["split,path,label"]
    for split in ("train", "val"):
        for name in ("ants", "bees"):
            (photos / split / name).mkdir(parents=True)
            for path in sorted((source / split / name).iterdir())[:8]:
                shutil.copy(path, photos / split / name / path.name)
                # Rows in another order than the folders', with a quoted comma-free path.
                lines.insert(1, f"{split},{split}/{name}/{path.name},{name}")
    (tmp_path / "labels.csv").write_text("\n".join(lines) + "\n")
    flags = [*TINY, "--epochs", "1", "--seed", "3", "--quiet"]
    by_folder = runner.invoke(app, ["train", str(photos), "--out", str(tmp_path / "a"), *flags])
    assert by_folder.exit_code == 0, by_folder.output
    by_csv = runner.invoke(
        app,
        ["train", str(photos), "--labels", str(tmp_path / "labels.csv")]
        + ["--out", str(tmp_path / "b"), *flags],
    )
    assert by_csv.exit_code == 0, by_csv.output
    a, b = tmp_path / "a", tmp_path / "b"
    assert _rows(b / "split.csv") == _rows(a / "split.csv")
    assert len(_rows(a / "split.csv")) == 32
    assert "# layout: labels" in (b / "split.csv").read_text()
    assert (b / "metrics.csv").read_bytes() == (a / "metrics.csv").read_bytes()
    weights = "model/weights.safetensors"
    assert (b / weights).read_bytes() == (a / weights).read_bytes()
    assert json.loads((b / "run.json").read_text())["labels"] == str(tmp_path / "labels.csv")
    # Single-label outputs keep their shape: no multi-label keys or columns.
    assert "multi_label" not in json.loads((b / "model" / "model.json").read_text())
    assert (
        (b / "metrics.csv")
        .read_text()
        .startswith("epoch,train_loss,train_acc,val_loss,val_acc,lr\n")
    )
    # Evaluating on the labels file's val rows gives the folder run's numbers.
    ev = [
        runner.invoke(
            app, ["eval", str(run), str(photos), *extra, "--json", "--out", str(run / "e")]
        )
        for run, extra in ((a, []), (b, ["--labels", str(tmp_path / "labels.csv")]))
    ]
    assert all(r.exit_code == 0 for r in ev), ev[1].output
    metrics = [json.loads(r.stdout.strip().splitlines()[-1]) for r in ev]
    assert metrics[0]["n"] == metrics[1]["n"] == 16
    for key in ("loss", "top1", "confusion"):
        assert metrics[0][key] == metrics[1][key]


def test_doctor_and_train_report_skipped_rows_one_line_each(runner, tree3, tmp_path):
    rows = ["path,label"]
    rows += [
        f"{p.relative_to(tree3).as_posix()},{p.parent.name}" for p in sorted(tree3.rglob("*.*"))
    ]
    rows += ["blue/none.png,blue", "../photos/red/000.png,red", "green/001.png,"]
    (tmp_path / "l.csv").write_text("\n".join(rows) + "\n")
    doctor = runner.invoke(app, ["doctor", str(tree3), "--labels", str(tmp_path / "l.csv")])
    assert doctor.exit_code == 1, doctor.output
    out = " ".join(doctor.output.split())
    assert "l.csv line 38 (blue/none.png): file not found" in out
    assert "l.csv line 39 (../photos/red/000.png): path leaves the data folder ('..')" in out
    assert "l.csv line 40 (green/001.png): empty label" in out
    assert "36 of 39 rows used" in out
    bad = runner.invoke(app, ["train", str(tree3), "--label-delimiter", "|"])
    assert bad.exit_code == 2 and "--label-delimiter needs --labels" in bad.output
    resumed = runner.invoke(app, ["train", "--resume", str(tmp_path), "--labels", "x.csv"])
    assert resumed.exit_code == 2 and "drop DATA_DIR/--labels" in " ".join(resumed.output.split())


def test_csv_of_all_ants_and_bees_photos_gives_the_folders_split(tmp_path):
    """scripts/labels_csv_from_folders.py on the real photos: the same 245/153 split."""
    import subprocess
    import sys

    from cnncli.data.labels import LabelOptions, load_dataset
    from cnncli.data.scan import scan_dataset

    source = shared_data("hymenoptera_data")
    script = Path(__file__).resolve().parents[1] / "scripts" / "labels_csv_from_folders.py"
    csv_path = tmp_path / "hymenoptera.csv"
    subprocess.run([sys.executable, str(script), str(source), str(csv_path)], check=True)
    from_csv = load_dataset(source, LabelOptions(csv_path))
    folders = scan_dataset(source)
    assert from_csv.label_source["skipped"] == [] and from_csv.label_source["used"] == 398
    assert from_csv.classes == folders.classes == ["ants", "bees"]
    assert from_csv.splits == folders.splits
    assert [len(from_csv.splits[s]) for s in ("train", "val")] == [245, 153]
