"""ResNet backbones: timm weights -> cnn's forward equals timm's logits; strict loading."""

from __future__ import annotations

import pickle
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from safetensors.numpy import save_file

from cnncli.config import ModelConfig
from cnncli.model import network
from cnncli.model.pretrained.state_dict import WeightsError
from cnncli.model.pretrained.weights import load_resnet
from cnncli.model.resnet_spec import layer_table, param_shapes
from tests.resnet_reference import ARCHS, REFERENCE, SIZES, reference_inputs, timm_state

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def resnet18_file(tmp_path_factory) -> Path:
    """The reference resnet18 weights as a timm-layout folder's model.safetensors."""
    folder = tmp_path_factory.mktemp("resnet18")
    save_file(timm_state("resnet18"), str(folder / "model.safetensors"))
    return folder / "model.safetensors"


def _cfg(arch: str) -> ModelConfig:
    return ModelConfig(backbone=arch, dense=[], dropout=0.0, global_pool=True)


@pytest.mark.parametrize("arch", ARCHS)
def test_logits_equal_timm_reference(arch, tmp_path):
    """Seeded weights in timm's names -> safetensors -> our loader -> our forward: the logits
    timm + PyTorch computed from the same file (scripts/resnet_reference_logits.py), at 64 px
    and at an odd size where 'SAME' padding would shift every stride-2 layer."""
    path = tmp_path / "model.safetensors"
    save_file(timm_state(arch), str(path))
    loaded = load_resnet(path)
    assert loaded.arch == arch
    params = {**loaded.params, **loaded.head}
    reference = np.load(ROOT / REFERENCE, allow_pickle=False)
    cfg = _cfg(arch)
    run = jax.jit(lambda p, s, x: network.forward(p, s, cfg, x)[0])
    for size in SIZES:
        x = jnp.asarray(reference_inputs(size).transpose(0, 2, 3, 1))  # NCHW -> NHWC
        ours = np.asarray(run(params, loaded.stats, x))
        expected = reference[f"{arch}_{size}"]
        assert ours.shape == expected.shape
        assert np.abs(ours - expected).max() < 1e-4, (arch, size)
        assert (ours.argmax(1) == expected.argmax(1)).all()


def test_a_swapped_mapping_would_show(resnet18_file):
    """The reference is sensitive: a BN's scale and bias swapped, or a kernel's H and W
    transposed (OIHW read as OIWH), move the logits far past the tolerance."""
    loaded = load_resnet(resnet18_file)
    params = {**loaded.params, **loaded.head}
    x = jnp.asarray(reference_inputs(64).transpose(0, 2, 3, 1))
    run = jax.jit(lambda p: network.forward(p, loaded.stats, _cfg("resnet18"), x)[0])
    good = run(params)
    swapped = dict(params)
    swapped["layer3/0/bn1/scale"], swapped["layer3/0/bn1/bias"] = (
        params["layer3/0/bn1/bias"],
        params["layer3/0/bn1/scale"],
    )
    transposed = {
        **params,
        "layer2/1/conv1/kernel": params["layer2/1/conv1/kernel"].transpose(1, 0, 2, 3),
    }
    for wrong in (swapped, transposed):
        assert float(jnp.abs(good - run(wrong)).max()) > 1e-2


def test_strict_loading_names_the_array(tmp_path, resnet18_file):
    state = timm_state("resnet18")

    def fails(tensors, match):
        path = tmp_path / "model.safetensors"
        save_file(tensors, str(path))
        with pytest.raises(WeightsError, match=match):
            load_resnet(path)

    fails(
        {**state, "layer5.0.conv1.weight": np.zeros((2, 2, 1, 1), np.float32)},
        "layer5.0.conv1.weight",
    )
    fails(
        {k: v for k, v in state.items() if k != "layer2.1.bn2.running_var"},
        "missing array 'layer2.1.bn2.running_var'",
    )
    fails(
        {**state, "layer1.0.conv2.weight": np.zeros((64, 64, 1, 1), np.float32)},
        r"layer1.0.conv2.weight' has shape \[64, 64, 1, 1\]",
    )
    # without the counters it still loads (num_batches_tracked is all that may be missing)
    save_file(
        {k: v for k, v in state.items() if "num_batches" not in k}, str(tmp_path / "ok.safetensors")
    )
    assert load_resnet(tmp_path / "ok.safetensors").arch == "resnet18"


def test_pickle_and_other_formats_refused(tmp_path):
    for name in ("resnet18.pth", "pytorch_model.bin", "weights.pt"):
        (tmp_path / name).write_bytes(b"PK\x03\x04 zip of a pickle")
        with pytest.raises(WeightsError, match="never unpickles.*safetensors.torch.save_file"):
            load_resnet(tmp_path / name)
    disguised = tmp_path / "model.safetensors"
    disguised.write_bytes(pickle.dumps({"conv1.weight": [1.0]}))  # written, never loaded
    with pytest.raises(WeightsError, match="never unpickles"):
        load_resnet(disguised)
    folder = tmp_path / "only_pickle"
    folder.mkdir()
    (folder / "pytorch_model.bin").write_bytes(b"\x80\x04 raw pickle")
    with pytest.raises(WeightsError, match="pytorch_model.bin: a PyTorch pickle"):
        load_resnet(folder)


def test_folder_layout_reads_config_and_licence(tmp_path, resnet18_file):
    folder = resnet18_file.parent
    (folder / "config.json").write_text(
        '{"architecture": "resnet18", "pretrained_cfg": {"mean": [0.5, 0.5, 0.5], '
        '"std": [0.25, 0.25, 0.25], "crop_pct": 0.95, "interpolation": "bicubic", '
        '"license": "cc-by-nc-4.0"}}'
    )
    try:
        loaded = load_resnet(folder)
    finally:
        (folder / "config.json").unlink()
    assert loaded.pretrained_cfg["crop_pct"] == 0.95
    assert loaded.pretrained_cfg["interpolation"] == "bicubic"
    assert loaded.license == "cc-by-nc-4.0"
    grey = load_resnet(resnet18_file, channels=1)
    assert grey.params["conv1/kernel"].shape == (7, 7, 1, 64)


def test_layer_table_and_shapes_agree():
    rows = layer_table("resnet50", 97, 97, 3, 7)
    assert rows[0].formula == "(97 - 7 + 2*3) / 2 + 1 = 49"
    assert rows[3].name == "maxpool" and rows[3].formula == "(49 - 3 + 2*1) / 2 + 1 = 25"
    assert rows[-2].out_shape == (2048,)
    total = sum(r.params for r in rows)
    assert total == sum(int(np.prod(s)) for s, _ in param_shapes("resnet50", 3, 7).values())
    # 25.6M with ImageNet's 1000 classes, as published
    assert (
        round(
            sum(
                int(np.prod(s))
                for s, k in param_shapes("resnet50", 3, 1000).values()
                if k == "param"
            )
            / 1e6,
            1,
        )
        == 25.6
    )


def test_backbone_bundle_exports_and_explains(tmp_path):
    """A ResNet-18 bundle (random weights, randomised BN statistics): ONNX and StableHLO
    exports verify against the Flax model, and Grad-CAM explains the last stage."""
    from cnncli.config import RunConfig
    from cnncli.inference.bundle import load_bundle, save_bundle
    from cnncli.inference.explain import explain_image
    from cnncli.inference.export import export_bundle
    from cnncli.model.flax_module import init_weights

    cfg = RunConfig()
    cfg.model, cfg.data.image_size = _cfg("resnet18"), 32
    params, stats = init_weights(cfg.model, image_size=32, channels=3, num_classes=3, seed=0)
    rng = np.random.default_rng(0)
    stats = {
        k: (rng.uniform(0.5, 2, v.shape) if k.endswith("/var") else rng.normal(0, 0.3, v.shape))
        for k, v in stats.items()
    }
    save_bundle(tmp_path / "model", cfg, ["a", "b", "c"], params, stats)
    bundle = load_bundle(tmp_path)
    for fmt in ("onnx", "stablehlo"):
        result = export_bundle(bundle, fmt, tmp_path / "export")
        assert result.verification.passed and result.verification.max_abs_diff < 1e-4
    image = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    explained = explain_image(bundle.params, bundle.stats, bundle.model, image)
    assert explained.layer_names == ["stem", "layer1", "layer2", "layer3", "layer4"]
    assert explained.cam.shape == (32, 32) and 0 <= explained.cam.min() <= explained.cam.max() <= 1
    assert explained.feature_maps[-1].shape == (1, 1, 512)
