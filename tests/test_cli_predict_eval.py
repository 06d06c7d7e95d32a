"""`cnn eval` and `cnn predict` through the real CLI, on a model trained once per module."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from cnncli.cli import app
from cnncli.inference.bundle import BundleError, load_bundle
from tests.conftest import TINY
from tests.imagefactory import make_class_tree


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """(data root, run folder) for a tiny model trained on three colour classes."""
    from typer.testing import CliRunner

    base = tmp_path_factory.mktemp("trained")
    data = base / "photos"
    make_class_tree(data, {"blue": 12, "green": 12, "red": 12}, size=16)
    run = base / "run"
    result = CliRunner().invoke(
        app, ["train", str(data), "--out", str(run), "--epochs", "4", "--lr", "0.003", *TINY]
    )
    assert result.exit_code == 0, result.output
    return data, run


def _json_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def test_predict_files_folder_and_glob_agree(runner, trained):
    data, run = trained
    files = sorted(str(p) for p in (data / "red").iterdir())
    by_file = _json_lines(
        runner.invoke(app, ["predict", *files, "--model", str(run), "--json"]).stdout
    )
    by_dir = _json_lines(
        runner.invoke(app, ["predict", str(data / "red"), "--model", str(run), "--json"]).stdout
    )
    by_glob = _json_lines(
        runner.invoke(
            app, ["predict", str(data / "red" / "*"), "--model", str(run), "--json"]
        ).stdout
    )
    key = lambda rows: sorted((r["path"], r["label"], round(r["confidence"], 6)) for r in rows)  # noqa: E731
    assert len(by_file) == 12
    assert key(by_file) == key(by_dir) == key(by_glob)
    assert sum(r["label"] == "red" for r in by_file) >= 10


def test_csv_json_and_table_hold_the_same_labels(runner, trained, tmp_path):
    data, run = trained
    out_csv = tmp_path / "p.csv"
    table = runner.invoke(
        app, ["predict", str(data), "--model", str(run), "--csv", str(out_csv), "--top-k", "2"]
    )
    assert table.exit_code == 0, table.output
    rows = list(csv.DictReader(out_csv.open()))
    js = _json_lines(
        runner.invoke(
            app, ["predict", str(data), "--model", str(run), "--json", "--top-k", "2"]
        ).stdout
    )
    assert [r["label"] for r in rows] == [r["label"] for r in js]
    assert len(rows) == 36 and all(len(r["top_k"]) == 2 for r in js)
    for r in js[:5]:
        assert Path(r["path"]).name in table.output.replace("\n", "")


def test_threshold_gives_unknown(runner, trained):
    data, run = trained
    rows = _json_lines(
        runner.invoke(
            app,
            ["predict", str(data / "blue"), "--model", str(run), "--json", "--threshold", "1.0"],
        ).stdout
    )
    assert rows and all(r["label"] == "unknown" for r in rows if r["confidence"] < 1.0)
    rows = _json_lines(
        runner.invoke(
            app, ["predict", str(data / "blue"), "--model", str(run), "--json", "--threshold", "0"]
        ).stdout
    )
    assert all(r["label"] != "unknown" for r in rows)


def test_corrupt_input_exit_1_and_others_predicted(runner, trained, tmp_path):
    data, run = trained
    bad = tmp_path / "bad.jpg"
    bad.write_text("this is text")
    good = sorted((data / "green").iterdir())[:3]
    result = runner.invoke(
        app, ["predict", str(bad), *map(str, good), "--model", str(run), "--json"]
    )
    assert result.exit_code == 1
    rows = _json_lines(result.stdout)
    assert [r["path"] for r in rows] == [str(bad), *map(str, good)]
    assert "error" in rows[0] and all("label" in r for r in rows[1:])
    assert "bad.jpg" in result.stderr


def test_small_batches_decoded_ahead_keep_order_errors_and_results(runner, trained, tmp_path):
    """Several batches (decoded ahead in background threads) with bad files among them
    give the same rows, in input order, as one batch decoded in the foreground."""
    data, run = trained
    good = [
        str(p) for p in sorted((data / "blue").iterdir())[:4] + sorted((data / "red").iterdir())[:3]
    ]
    bad_text, bad_empty = tmp_path / "text.png", tmp_path / "empty.jpg"
    bad_text.write_text("not an image")
    bad_empty.write_bytes(b"")
    paths = [good[0], str(bad_text), *good[1:4], str(bad_empty), *good[4:]]

    def rows(batch: int) -> list[dict]:
        result = runner.invoke(
            app, ["predict", *paths, "--model", str(run), "--json", "--batch-size", str(batch)]
        )
        assert result.exit_code == 1, result.output
        assert "text.png" in result.stderr and "empty.jpg" in result.stderr
        return _json_lines(result.stdout)

    ahead, one = rows(2), rows(64)
    assert [r["path"] for r in ahead] == paths == [r["path"] for r in one]
    assert ["error" in r for r in ahead] == [p not in good for p in paths]
    assert sum("error" in r for r in ahead) == 2
    for a, b in zip(ahead, one, strict=True):
        assert a.get("label") == b.get("label")
        assert a.get("confidence", 0) == pytest.approx(b.get("confidence", 0), abs=1e-5)


def test_usage_errors_exit_2(runner, trained, tmp_path):
    _, run = trained
    assert (
        runner.invoke(app, ["predict", "x.jpg", "--model", str(tmp_path / "nope")]).exit_code == 2
    )
    assert (
        runner.invoke(app, ["predict", "x.jpg", "--model", str(run), "--threshold", "2"]).exit_code
        == 2
    )


def test_sort_into_copies_never_overwrites(runner, trained, tmp_path):
    data, run = trained
    dest = tmp_path / "sorted"
    files = sorted(str(p) for p in (data / "red").iterdir())[:4]
    for _ in range(2):
        result = runner.invoke(
            app, ["predict", *files, "--model", str(run), "--sort-into", str(dest)]
        )
        assert result.exit_code == 0, result.output
    copied = sorted(p for p in dest.rglob("*") if p.is_file())
    assert len(copied) == 8  # second run added suffixed copies, replaced nothing
    assert all(Path(f).exists() for f in files)  # originals stay


def test_hostile_class_name_cannot_escape_sort_dir(runner, trained, tmp_path):
    data, run = trained
    evil = tmp_path / "evil_model"
    evil.mkdir()
    meta = json.loads((run / "model" / "model.json").read_text())
    meta["classes"] = ["../../escaped", "/etc/x", ".."]
    (evil / "model.json").write_text(json.dumps(meta))
    (evil / "weights.safetensors").write_bytes((run / "model" / "weights.safetensors").read_bytes())
    dest = tmp_path / "box" / "sorted"
    files = [
        str(p) for p in sorted((data / "red").iterdir())[:3] + sorted((data / "blue").iterdir())[:3]
    ]
    result = runner.invoke(app, ["predict", *files, "--model", str(evil), "--sort-into", str(dest)])
    assert result.exit_code == 0, result.output
    for p in (tmp_path / "box").rglob("*"):
        assert dest in p.parents or p == dest
    assert not (tmp_path / "escaped").exists()


def test_eval_matches_predict_argmax_and_writes_files(runner, trained, tmp_path):
    data, run = trained
    out = tmp_path / "ev"
    result = runner.invoke(app, ["eval", str(run), str(data), "--out", str(out), "--json"])
    assert result.exit_code == 0, result.output
    metrics = json.loads(result.stdout.strip().splitlines()[-1])
    for name in ("metrics.json", "misclassified.csv", "confusion_matrix.png"):
        assert (out / name).is_file()
    rows = _json_lines(
        runner.invoke(app, ["predict", str(data), "--model", str(run), "--json"]).stdout
    )
    classes = metrics["classes"]
    pred_conf = np.zeros((3, 3), int)
    for r in rows:
        pred_conf[classes.index(Path(r["path"]).parent.name), classes.index(r["label"])] += 1
    assert pred_conf.tolist() == metrics["confusion"]
    assert metrics["top1"] == pytest.approx(np.trace(pred_conf) / 36)
    wrong = list(csv.DictReader((out / "misclassified.csv").open()))
    assert len(wrong) == 36 - np.trace(pred_conf)


def test_eval_tta_averages_flips(runner, trained, tmp_path):
    data, run = trained
    plain = runner.invoke(
        app, ["eval", str(run), str(data), "--out", str(tmp_path / "a"), "--json"]
    )
    tta = runner.invoke(
        app, ["eval", str(run), str(data), "--out", str(tmp_path / "b"), "--json", "--tta"]
    )
    assert plain.exit_code == tta.exit_code == 0, tta.output
    m_plain = json.loads(plain.stdout.strip().splitlines()[-1])
    m_tta = json.loads(tta.stdout.strip().splitlines()[-1])
    assert m_plain["n"] == m_tta["n"] == 36
    assert m_plain["loss"] != m_tta["loss"]  # flipped copies changed the probabilities


def test_eval_without_dir_uses_run_val_split(runner, trained):
    _, run = trained
    result = runner.invoke(app, ["eval", str(run), "--json"])
    assert result.exit_code == 0, result.output
    metrics = json.loads(result.stdout.strip().splitlines()[-1])
    val_rows = [
        line for line in (run / "split.csv").read_text().splitlines() if line.startswith("val,")
    ]
    assert metrics["n"] == len(val_rows) > 0
    assert (run / "eval" / "metrics.json").is_file()


def test_eval_unknown_class_folder_is_an_error(runner, trained, tmp_path):
    _, run = trained
    other = tmp_path / "other"
    make_class_tree(other, {"blue": 2, "purple": 2}, size=16)
    result = runner.invoke(app, ["eval", str(run), str(other)])
    assert result.exit_code == 2 and "purple" in result.output


def test_truncated_or_tampered_bundle_is_rejected(trained, tmp_path):
    _, run = trained
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "model.json").write_text((run / "model" / "model.json").read_text())
    blob = (run / "model" / "weights.safetensors").read_bytes()
    (bad / "weights.safetensors").write_bytes(blob[: len(blob) // 2])
    with pytest.raises(BundleError, match="weights"):
        load_bundle(bad)
    tensors = load_file(str(run / "model" / "weights.safetensors"))
    tensors["logits/bias"] = np.zeros(7, np.float32)
    save_file(tensors, str(bad / "weights.safetensors"))
    with pytest.raises(BundleError, match="logits/bias"):
        load_bundle(bad)


def test_predict_imports_no_training_packages(trained):
    data, run = trained
    img = next((data / "red").iterdir())
    code = (
        f"import sys\nfrom cnncli.cli import main\nsys.argv=['cnn','predict',{str(img)!r},'--model',{str(run)!r},'-q']\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "print(sorted(m for m in ('optax','orbax','flax','matplotlib') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.strip().splitlines()[-1] == "[]", out.stdout + out.stderr


def test_bundle_with_conv_biases_before_batch_norm_still_loads(tmp_path):
    """Models saved before convs lost their bias in front of batch norm keep working."""
    import jax.numpy as jnp

    from cnncli.config import ConvBlock, DataConfig, ModelConfig, RunConfig
    from cnncli.inference.bundle import save_bundle
    from cnncli.model import network
    from cnncli.model.flax_module import init_weights

    cfg = RunConfig(
        model=ModelConfig(conv=[ConvBlock(4, batch_norm=True), ConvBlock(8)], dense=[8]),
        data=DataConfig(image_size=16, channels=3),
    )
    params, stats = init_weights(cfg.model, image_size=16, channels=3, num_classes=2, seed=0)
    assert "conv1/bias" not in params and "conv2/bias" in params
    save_bundle(tmp_path / "new", cfg, ["a", "b"], params, stats)
    old = {**params, "conv1/bias": np.zeros(4, np.float32)}  # the old layout, bias zero
    save_bundle(tmp_path / "old", cfg, ["a", "b"], old, stats)
    x = jnp.asarray(np.random.default_rng(0).uniform(-1, 1, (3, 16, 16, 3)), jnp.float32)
    logits = []
    for name in ("new", "old"):
        bundle = load_bundle(tmp_path / name)
        logits.append(np.asarray(network.forward(bundle.params, bundle.stats, cfg.model, x)[0]))
    np.testing.assert_allclose(logits[0], logits[1], atol=1e-6)
