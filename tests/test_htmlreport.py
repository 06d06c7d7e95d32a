"""RUN/report.html: written by train, refreshed by eval, rebuilt by `cnn report`; opened in
headless Chromium (no console errors, every image decoded, every section there, fits a
phone); a class folder named like HTML stays text."""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cnncli.cli import app
from cnncli.reporting.htmlreport import SECTIONS, render
from cnncli.reporting.reportdata import collect
from tests.browser import PROBE, load_page, screenshot
from tests.conftest import TINY
from tests.imagefactory import make_class_tree

HOSTILE = "<img src=x onerror=alert(1)>"
SCRIPT = "<script>b"


@pytest.fixture(scope="module")
def hostile_run(tmp_path_factory) -> Path:
    """A 2-epoch run whose classes are named like HTML, trained through the CLI."""
    from typer.testing import CliRunner

    base = tmp_path_factory.mktemp("report")
    make_class_tree(base / "data", {HOSTILE: 10, SCRIPT: 10, "plain & simple": 10}, size=16)
    run = base / "run"
    result = CliRunner().invoke(
        app, ["train", str(base / "data"), "--out", str(run), *TINY, "--epochs", "2", "--seed", "1"]
    )
    assert result.exit_code == 0, result.output
    assert f"report: {run / 'report.html'}" in result.output.replace("\n", "")
    return run


def test_train_writes_a_self_contained_escaped_report(hostile_run):
    page = (hostile_run / "report.html").read_text(encoding="utf-8")
    # every section, with its heading
    for key, title in SECTIONS:
        assert f'<section id="{key}"><h2>{title}</h2>' in page
    # names from the data are text, never markup
    assert HOSTILE not in page and SCRIPT not in page
    assert "&lt;img src=x onerror=alert(1)&gt;" in page
    assert "&lt;script&gt;b" in page and "plain &amp; simple" in page
    assert "<script" not in page  # no script at all, inline or external
    # images only as data: URIs, no network
    srcs = re.findall(r'<img [^>]*src="([^"]*)"', page)
    assert srcs and all(s.startswith("data:image/png;base64,") for s in srcs)
    assert "http://" not in page and "https://" not in page
    assert "default-src 'none'" in page  # CSP: no script, no fetch, even if escaping failed
    # the layer table carries the (W - F + 2P)/S + 1 arithmetic of the 16 px input
    assert "(16 - 3 + 2*1) / 1 + 1 = 16" in page


def test_timing_file_records_decode_compile_and_epochs(hostile_run):
    timing = json.loads((hostile_run / "timing.json").read_text())
    (session,) = timing["sessions"]
    assert session["images"] == 30 and session["decode_s"] >= 0
    assert 0 < session["first_step_s"] <= session["wall_s"]
    assert sorted(timing["epochs"]) == ["1", "2"]
    assert timing["machine"]["cpus"] >= 1 and "devices" in timing["machine"]


def test_report_data_matches_the_model(hostile_run):
    data = collect(hostile_run)
    m = data.metrics
    assert m.n == sum(c["val"] for c in data.counts.values())
    assert np.asarray(m.confusion).sum() == m.n
    wrong = m.n - int(np.trace(np.asarray(m.confusion)))
    assert len(data.mistakes) == min(wrong, 12)
    assert len(data.gradcams) == min(wrong, 4)
    assert len(data.unsure) == min(m.n - wrong, 12)
    probs = [t.probability for t in data.mistakes]
    assert probs == sorted(probs, reverse=True)  # most confident mistakes first
    probs = [t.probability for t in data.unsure]
    assert probs == sorted(probs)  # least confident correct first
    for t in data.unsure[:2]:
        assert Image.open(io.BytesIO(t.png)).size == (96, 96)  # 16 px upscaled x6


def test_report_in_headless_chromium(hostile_run, tmp_path):
    page = tmp_path / "report.html"
    page.write_text(render(collect(hostile_run), probe_script=PROBE), encoding="utf-8")
    ids = [key for key, _ in SECTIONS]
    for width in (1200, 390):  # desktop, then a phone (headless clamps the window to 500)
        result, console = load_page(page, width, tmp_path / "profile")
        assert console == [] and result["errors"] == []
        assert result["sections"] == ids
        assert result["images"] >= 3 and result["undecoded"] == []
        assert result["scrollWidth"] <= result["innerWidth"]  # wide tables scroll inside
    png = screenshot(page, tmp_path / "shot.png", 1000, 1400, tmp_path / "profile")
    shot = np.asarray(Image.open(png).convert("L"))
    assert shot.shape == (1400, 1000) and shot.std() > 10  # something was drawn


def test_report_and_eval_rebuild_the_page(hostile_run, runner):
    (hostile_run / "report.html").unlink()
    # `cnn report` is inference: no training-only package is imported
    code = (
        "import sys; from typer.testing import CliRunner; from cnncli.cli import app; "
        f"r = CliRunner().invoke(app, ['report', {str(hostile_run)!r}]); "
        "print(r.exit_code, sorted(m for m in ('flax', 'optax', 'orbax') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.stdout.split("\n")[-2] == "0 []", done.stdout + done.stderr
    assert "the run&#x27;s val split" in (hostile_run / "report.html").read_text()
    result = runner.invoke(app, ["eval", str(hostile_run), str(hostile_run.parent / "data")])
    assert result.exit_code == 0, result.output
    page = (hostile_run / "report.html").read_text()
    assert f"evaluated on {hostile_run.parent / 'data'}: 30 images" in page


def test_report_of_a_folder_that_is_no_run(runner, tmp_path):
    result = runner.invoke(app, ["report", str(tmp_path)])
    assert result.exit_code == 2
    assert "not a run folder" in result.output
