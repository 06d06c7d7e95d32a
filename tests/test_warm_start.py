"""`cnn train --init`: pretrained weights from a local timm-layout file (the offline route),
--freeze, warm starts from a run with classes matched by name, and the refusals."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from safetensors.numpy import load_file, save_file

from cnncli.cli import app
from cnncli.data.decode import Resize, decode_image
from tests.conftest import TINY
from tests.imagefactory import make_class_tree
from tests.resnet_reference import timm_state

NC_CONFIG = {
    "architecture": "resnet18",
    "pretrained_cfg": {
        "mean": [0.5, 0.4, 0.3],
        "std": [0.2, 0.25, 0.3],
        "crop_pct": 0.9,
        "interpolation": "bicubic",
        "input_size": [3, 224, 224],
        "license": "cc-by-nc-4.0",
    },
}


@pytest.fixture(scope="module")
def timm_folder(tmp_path_factory) -> Path:
    """A timm-layout folder: seeded ResNet-18 weights with a 1000-class head, config.json."""
    folder = tmp_path_factory.mktemp("timm") / "resnet18"
    folder.mkdir()
    save_file(timm_state("resnet18", num_classes=1000), str(folder / "model.safetensors"))
    (folder / "config.json").write_text(json.dumps(NC_CONFIG))
    return folder


@pytest.fixture(scope="module")
def photos32(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("p32") / "photos"
    make_class_tree(root, {"blue": 6, "green": 6, "red": 6}, size=40)
    return root


def _train(runner, *args):
    return runner.invoke(app, ["train", *map(str, args)])


def _bundle(run: Path):
    meta = json.loads((run / "model" / "model.json").read_text())
    return meta, load_file(str(run / "model" / "weights.safetensors"))


def test_init_file_fine_tunes_in_two_phases_and_predict_matches(
    runner, timm_folder, photos32, tmp_path
):
    out = tmp_path / "run"
    result = _train(
        runner,
        photos32,
        "--init",
        timm_folder,
        "--image-size",
        "32",
        "--epochs",
        "1",
        "--head-epochs",
        "2",
        "--batch-size",
        "8",
        "--freeze-bn",
        "--augment",
        "flip",
        "--out",
        out,
    )
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "the file's 1000-class head replaced by a new 3-class one" in text
    assert "batch norm frozen" in text
    assert "licence: cc-by-nc-4.0" in text
    assert "warning: cc-by-nc-4.0 does not allow commercial use" in text
    assert "2 epoch(s) of the head alone" in text and "backbone lr 0.0001" in text
    meta, weights = _bundle(out)
    assert meta["init"]["licence"] == "cc-by-nc-4.0" and meta["init"]["arch"] == "resnet18"
    assert meta["model"]["backbone"] == "resnet18"
    assert meta["model"]["mean"] == [0.5, 0.4, 0.3] and meta["model"]["std"] == [0.2, 0.25, 0.3]
    assert meta["preprocess"]["crop_pct"] == 0.9
    assert meta["preprocess"]["interpolation"] == "bicubic"
    assert weights["logits/kernel"].shape == (512, 3)
    # Fine-tuned: the backbone moved away from the file, but not far (backbone lr 1e-4).
    source = timm_state("resnet18", num_classes=1000)["layer1.0.conv1.weight"]
    moved = np.abs(weights["layer1/0/conv1/kernel"] - source.transpose(2, 3, 1, 0)).max()
    assert 0 < moved < 0.05
    # --freeze-bn: batch norm kept the file's running statistics through the fine-tune
    state = timm_state("resnet18", num_classes=1000)
    assert np.array_equal(weights["layer2/0/bn1/var"], state["layer2.0.bn1.running_var"])
    assert np.array_equal(weights["bn1/mean"], state["bn1.running_mean"])
    # predict decodes with the stored crop_pct/interpolation and normalises with mean/std:
    # its probabilities equal the forward pass on the same pipeline done by hand.
    image = photos32 / "red" / "000.png"
    args = ["predict", str(image), "--model", str(out), "--json", "--top-k", "3"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    top = json.loads(result.stdout.strip().splitlines()[-1])["top_k"]
    probs = {row["label"]: row["p"] for row in top}
    pixels = decode_image(image, Resize(32, 32, crop_pct=0.9, interpolation="bicubic"), 3)
    assert not np.array_equal(pixels, decode_image(image, 32, 3))  # the crop differs
    by_hand = _forward(meta, weights, pixels)
    got = np.array([probs[c] for c in meta["classes"]])
    assert np.abs(got - by_hand).max() < 1e-4


def _forward(meta, weights, pixels):
    import jax

    from cnncli.config import from_dict
    from cnncli.model import network

    cfg = from_dict({"model": meta["model"]}).model
    params = {k: v for k, v in weights.items() if not k.endswith(("/mean", "/var"))}
    stats = {k: v for k, v in weights.items() if k.endswith(("/mean", "/var"))}
    x = (pixels[None].astype(np.float32) / 255 - np.array(cfg.mean)) / np.array(cfg.std)
    logits, _ = network.forward(params, stats, cfg, x.astype(np.float32))
    return np.asarray(jax.nn.softmax(logits[0]))


def test_freeze_trains_only_the_head(runner, timm_folder, photos32, tmp_path):
    out = tmp_path / "frozen"
    result = _train(
        runner,
        photos32,
        "--init",
        timm_folder,
        "--image-size",
        "32",
        "--freeze",
        "--epochs",
        "20",
        "--out",
        out,
    )
    assert result.exit_code == 0, result.output
    assert "--freeze: backbone frozen" in " ".join(result.output.split())
    meta, weights = _bundle(out)
    source = timm_state("resnet18", num_classes=1000)
    # every backbone array is the file's, bit for bit (kernels OIHW -> HWIO)
    assert np.array_equal(weights["conv1/kernel"], source["conv1.weight"].transpose(2, 3, 1, 0))
    assert np.array_equal(weights["layer4/1/bn2/var"], source["layer4.1.bn2.running_var"])
    rows = (out / "metrics.csv").read_text().strip().splitlines()
    assert len(rows) == 1 + 20
    assert meta["val_acc"] > 1 / 3  # colour classes separate on these random features too
    # ONNX export holds the per-channel mean/std; export itself checks it against Flax
    result = runner.invoke(app, ["export", str(out), "--format", "onnx", "--json"])
    assert result.exit_code == 0, result.output
    pre = json.loads((out / "export" / "preprocess.json").read_text())
    assert pre["crop_pct"] == 0.9 and pre["interpolation"] == "bicubic"
    assert "mean [0.5, 0.4, 0.3]" in pre["normalize"]
    image = photos32 / "green" / "001.png"
    result = runner.invoke(app, ["explain", str(out), str(image), "--out", str(tmp_path / "x")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "x" / "gradcam.png").is_file()


def test_warm_start_keeps_matched_rows_adds_new_and_drops_gone(runner, tmp_path):
    first = tmp_path / "abc"
    make_class_tree(first, {"blue": 8, "green": 8, "red": 8}, size=16)
    source = tmp_path / "source"
    assert _train(runner, first, *TINY, "--epochs", "2", "--out", source).exit_code == 0
    second = tmp_path / "new"
    make_class_tree(second, {"blue": 8, "red": 8, "teal": 8}, size=16, seed=3)
    warm = tmp_path / "warm"
    # lr so small that the head stays where it started: the copied rows show as they were
    result = _train(
        runner,
        second,
        "--init",
        source,
        "--freeze",
        "--epochs",
        "1",
        "--lr",
        "1e-12",
        "--out",
        warm,
    )
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "kept 2: blue, red" in text and "new 1: teal" in text and "dropped 1: green" in text
    _, before = _bundle(source)
    meta, after = _bundle(warm)
    assert meta["classes"] == ["blue", "red", "teal"]
    for j, i in ((0, 0), (1, 2)):  # blue <- blue, red <- red
        assert np.allclose(after["logits/kernel"][:, j], before["logits/kernel"][:, i], atol=1e-6)
        assert np.isclose(after["logits/bias"][j], before["logits/bias"][i], atol=1e-6)
    assert not np.allclose(after["logits/kernel"][:, 2], before["logits/kernel"][:, 1])
    assert np.array_equal(after["conv1/kernel"], before["conv1/kernel"])
    # without --freeze: the head phase, then everything; the network still sees 16 px
    full = tmp_path / "full"
    result = _train(runner, second, "--init", source, "--epochs", "2", "--out", full)
    assert result.exit_code == 0, result.output
    meta, _ = _bundle(full)
    assert meta["preprocess"]["image_size"] == 16 and meta["val_acc"] >= 0.5


def test_pickle_checkpoints_are_refused_with_a_conversion_hint(runner, photos32, tmp_path):
    for name in ("resnet18.pth", "pytorch_model.bin", "weights.pt"):
        path = tmp_path / name
        path.write_bytes(b"PK\x03\x04 a zip that holds a pickle")
        result = _train(runner, photos32, "--init", path, "--out", tmp_path / "never")
        assert result.exit_code == 2
        line = result.output.strip()
        assert "\n" not in line and name in line and "pickle" in line
        assert "safetensors" in line and "save_file" in line
        assert not (tmp_path / "never").exists()


def test_a_name_without_network_says_how_to_copy_the_file_in(photos32, tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    cmd = [sys.executable, "-m", "cnncli", "train", str(photos32), "--init", "resnet18"]
    done = subprocess.run(
        [*cmd, "--out", str(tmp_path / "r")], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2
    line = done.stderr.strip()
    assert "\n" not in line, line
    assert "https://huggingface.co/timm/resnet18.a1_in1k/resolve/" in line
    assert "--init path/to/model.safetensors" in line
    assert "80c49dee3da4822c009c5a7fe591e9223c5a2cfcf95a4067ca4dfb5a7b89c612" in line
    assert not (tmp_path / "r").exists()


def test_unknown_source_and_model_clash_are_one_line_errors(runner, photos32, tmp_path):
    result = _train(runner, photos32, "--init", "resnet999", "--out", tmp_path / "r")
    assert result.exit_code == 2 and "not a pretrained backbone name" in result.output
    result = _train(runner, photos32, "--init", "resnet18", "--model", "tiny")
    assert result.exit_code == 2 and "drop --model" in result.output
    result = _train(runner, photos32, "--freeze", "--out", tmp_path / "r2")
    assert result.exit_code == 2 and "--init" in result.output
    for flag in (["--find-lr"], ["--time-budget", "1"]):
        result = _train(runner, photos32, "--init", "resnet18", *flag)
        assert result.exit_code == 2 and "drop --find-lr/--time-budget" in result.output


def test_crop_pct_keeps_the_centre_of_the_shorter_side(tmp_path):
    """crop_pct 0.5 at 8 px: the shorter side scales to 16 and the centre 8 px stay, i.e.
    the centre 50 x 50 of a 200 x 100 image; white there (and a margin for the filter)
    gives an all-white image, where the whole centre square has black in it."""
    pixels = np.zeros((100, 200, 3), np.uint8)
    pixels[10:90, 60:140] = 255
    path = tmp_path / "centre.png"
    Image.fromarray(pixels).save(path)
    assert (decode_image(path, Resize(8, 8, crop_pct=0.5, interpolation="bicubic"), 3) == 255).all()
    whole = decode_image(path, 8, 3)
    assert whole.min() < 200 and whole.max() == 255


def test_summary_of_a_named_backbone_needs_no_download_and_no_jax(tmp_path):
    code = (
        "import sys, json\n"
        "from typer.testing import CliRunner\n"
        "from cnncli.cli import app\n"
        "r = CliRunner().invoke(app, ['summary', '--init', 'resnet18', '--json'])\n"
        "assert r.exit_code == 0, r.output\n"
        "print(json.dumps({'jax': 'jax' in sys.modules, 'out': json.loads(r.stdout)}))\n"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["jax"] is False
    layers = {row["name"]: row for row in result["out"]["layers"]}
    assert result["out"]["input"] == [160, 160, 3]
    assert layers["conv1"]["formula"] == "(160 - 7 + 2*3) / 2 + 1 = 80"
    assert layers["maxpool"]["formula"] == "(80 - 3 + 2*1) / 2 + 1 = 40"
    assert layers["layer4.0.conv1"]["formula"] == "(10 - 3 + 2*1) / 2 + 1 = 5"
    assert layers["logits"]["output"] == [10]


def test_recipe_gives_a_fresh_head_enough_steps():
    """Head-only epochs scale with the steps an epoch makes (few images: more epochs), a run
    source fine-tunes its backbone at the full lr, a pretrained one at lr / 10."""
    from cnncli.config import RunConfig
    from cnncli.training.warm_start import InitSource, configure

    pretrained = InitSource(
        "x", "file", "x", "resnet18", pretrained_cfg=NC_CONFIG["pretrained_cfg"]
    )
    cfg = configure(RunConfig(), pretrained, set(), train_images=80)  # batch 32: 3 steps
    assert (cfg.train.head_epochs, cfg.train.epochs, cfg.train.backbone_lr) == (34, 5, 1e-4)
    cfg = configure(RunConfig(), pretrained, set(), train_images=10_000)
    assert cfg.train.head_epochs == 5 and cfg.model.mean == [0.5, 0.4, 0.3]

    def frozen():
        cfg = RunConfig()
        cfg.train.init, cfg.train.freeze = "x", True
        return cfg

    assert configure(frozen(), pretrained, set(), train_images=80).train.epochs == 134
    assert configure(frozen(), pretrained, {"train.epochs"}, train_images=80).train.epochs == 15
