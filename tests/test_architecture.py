"""The house (docs/architecture.md): rooms import only downward and peers stay apart,
checked by import-linter's contracts in pyproject.toml; no module grows past its job."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_import_contracts_hold():
    """`lint-imports` (import-linter) over cnncli: every contract kept. A new upward import
    or loop fails here with the importing and imported module named."""
    exe = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    if exe is None:
        pytest.skip("import-linter is not installed (pip install -e '.[test]')")
    done = subprocess.run(
        [exe, "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert "0 broken" in done.stdout


def test_every_room_says_what_it_owns():
    """Each subpackage opens with a docstring (what the room holds)."""
    for init in sorted((ROOT / "cnncli").rglob("__init__.py")):
        text = init.read_text(encoding="utf-8").lstrip()
        assert text.startswith('"""') and len(text) > 40, init


def test_a_run_written_before_the_move_still_loads(tmp_path):
    """tests/data/pre_move_run (written by the flat-layout code): today's predict gives its
    answers to 1e-5, eval on its own held-out split and the report read its files, and the
    Python API loads it."""
    import json

    from typer.testing import CliRunner

    from cnncli import api
    from cnncli.cli import app
    from tests.imagefactory import make_class_tree

    run = tmp_path / "run"
    shutil.copytree(ROOT / "tests" / "data" / "pre_move_run", run)
    photos = tmp_path / "photos"
    make_class_tree(photos, {"blue": 6, "green": 6, "red": 6}, size=16)
    info = json.loads((run / "run.json").read_text())
    info["data_dir"] = str(photos)
    (run / "run.json").write_text(json.dumps(info))
    expected = json.loads((run / "expected_predictions.json").read_text())
    runner = CliRunner()
    result = runner.invoke(app, ["predict", str(photos), "--model", str(run), "--json"])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    got = {str(Path(r["path"]).relative_to(photos)): r for r in rows}
    assert set(got) == set(expected)
    for name, (label, confidence) in expected.items():
        assert got[name]["label"] == label and abs(got[name]["confidence"] - confidence) < 1e-5
    result = runner.invoke(app, ["eval", str(run), "--json", "--out", str(tmp_path / "eval")])
    assert result.exit_code == 0, result.output
    split = (run / "split.csv").read_text().splitlines()
    held_out = sum(1 for line in split if line.startswith("val,"))
    assert held_out > 0 and json.loads(result.stdout.strip().splitlines()[-1])["n"] == held_out
    result = runner.invoke(app, ["report", str(run)])
    assert result.exit_code == 0 and (run / "report.html").is_file(), result.output
    first = api.load(run).predict(photos / "red" / "000.png")[0]
    assert (first.label, round(first.probability, 5)) == (
        expected["red/000.png"][0],
        round(expected["red/000.png"][1], 5),
    )


def test_no_module_imports_itself_back():
    """No import loop anywhere in cnncli, also inside a room (the layers contract only sees
    loops between rooms): no strongly connected group of two or more modules in grimp's
    graph of every import, function-level ones included."""
    grimp = pytest.importorskip("grimp")
    graph = grimp.build_graph("cnncli", cache_dir=None)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    loops: list[list[str]] = []

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph.find_modules_directly_imported_by(v):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                loops.append(sorted(group))

    for module in sorted(graph.modules):
        if module not in index:
            visit(module)
    assert loops == [], loops
