"""Load timm / torchvision ResNet weights from safetensors into cnn's flat names, strictly.

A timm file names its arrays like PyTorch's module tree (`layer1.0.conv1.weight`,
`layer2.0.downsample.1.running_var`, `fc.weight`); ours are `layer1/0/conv1/kernel`,
`layer2/0/downsample_bn/var`, `logits/kernel`. Loading is strict: every array of the file
is used (BN's `num_batches_tracked` counters are the one thing dropped), every array of the
network is filled, and a wrong shape or an unknown name is an error naming it. Conv kernels
go from PyTorch's OIHW to HWIO, the classifier's (classes, features) to (features, classes).

Only safetensors is read. Pickle-based checkpoints (.pth, .pt, .bin, ...) can run code when
loaded; they are refused with the one-line recipe that converts them.
"""

from __future__ import annotations

import json
import re
import struct
from pathlib import Path
from typing import Any

import numpy as np

from cnncli.model.pretrained.state_dict import (
    TORCH_LEAF,
    LoadedWeights,
    WeightsError,
    strict_map,
)
from cnncli.model.resnet_spec import ARCHS, param_shapes

WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
PICKLE_SUFFIXES = (".pth", ".pt", ".bin", ".ckpt", ".pkl", ".pickle", ".tar")

# ImageNet preprocessing, used when a file comes without a config.json beside it.
IMAGENET_CFG = {
    "mean": [0.485, 0.456, 0.406],
    "std": [0.229, 0.224, 0.225],
    "crop_pct": 0.875,
    "interpolation": "bilinear",
    "input_size": [3, 224, 224],
}


def convert_hint(path: Path) -> str:
    """The one-line recipe that turns a PyTorch pickle state dict into safetensors."""
    return (
        f"{path}: a PyTorch pickle checkpoint; cnn never unpickles (loading a pickle can run "
        "code). Convert it once where PyTorch is installed: load the state dict in PyTorch "
        "with weights_only=True, save it with safetensors.torch.save_file as model.safetensors, "
        "and pass that file"
    )


def resolve_file(source: str | Path) -> tuple[Path, Path | None]:
    """(safetensors file, config.json beside it or None) from a file or a timm-layout folder."""
    path = Path(source)
    if path.is_dir():
        candidates = [path / WEIGHTS_FILE, *sorted(path.glob("*.safetensors"))]
        found = next((p for p in candidates if p.is_file()), None)
        if found is None:
            pickles = [p for p in sorted(path.iterdir()) if p.suffix in PICKLE_SUFFIXES]
            if pickles:
                raise WeightsError(convert_hint(pickles[0]))
            raise WeightsError(f"{path}: no {WEIGHTS_FILE} in this folder")
        path = found
    elif not path.is_file():
        raise WeightsError(f"{path}: no such weights file or folder")
    if path.suffix.lower() in PICKLE_SUFFIXES:
        raise WeightsError(convert_hint(path))
    config = path.parent / CONFIG_FILE
    return path, config if config.is_file() else None


def read_header(path: Path) -> dict[str, Any]:
    """The safetensors JSON header (name -> dtype, shape, offsets), without reading the arrays.

    Anything that is not safetensors is refused here; a pickle (zip or raw protocol) with
    the recipe to convert it.
    """
    try:
        with path.open("rb") as fh:
            head = fh.read(8)
            size = struct.unpack("<Q", head)[0] if len(head) == 8 else 0
            text = fh.read(size) if 2 <= size <= 100_000_000 else b""
    except OSError as exc:
        raise WeightsError(f"{path}: cannot read ({exc.strerror or exc})") from None
    try:
        header = json.loads(text.decode("utf-8"))
        if not isinstance(header, dict):
            raise ValueError
    except (UnicodeDecodeError, ValueError):
        if head[:2] == b"PK" or head[:1] == b"\x80":  # torch.save's zip, or a raw pickle
            raise WeightsError(convert_hint(path)) from None
        raise WeightsError(
            f"{path}: not a safetensors file (only safetensors weights are read; a PyTorch "
            "checkpoint converts with safetensors.torch.save_file)"
        ) from None
    return header


def infer_arch(names: list[str], path: Path) -> str:
    """The ResNet depth whose block layout the file's array names show."""
    depths = [0, 0, 0, 0]
    for name in names:
        found = re.match(r"layer([1-4])\.(\d+)\.", name)
        if found:
            stage, index = int(found.group(1)) - 1, int(found.group(2))
            depths[stage] = max(depths[stage], index + 1)
    block = "bottleneck" if any(re.search(r"\.conv3\.weight$", n) for n in names) else "basic"
    for arch_name, arch in ARCHS.items():
        if arch.block == block and arch.depths == tuple(depths):
            return arch_name
    raise WeightsError(
        f"{path}: not a ResNet this version knows ({block} blocks, stage depths "
        f"{tuple(depths)}); supported: {', '.join(ARCHS)}"
    )


def timm_name(ours: str) -> str:
    """cnn's array name -> timm's: layer1/0/downsample_bn/var -> layer1.0.downsample.1.running_var."""
    module, _, kind = ours.rpartition("/")
    parts = module.split("/")
    if parts[-1] in ("downsample", "downsample_bn"):  # nn.Sequential(conv, bn) in PyTorch
        parts[-1:] = ["downsample", "0" if parts[-1] == "downsample" else "1"]
    module = "fc" if parts == ["logits"] else ".".join(parts)
    leaf = TORCH_LEAF[kind]
    return f"{module}.{leaf}"


def read_arrays(path: Path, header: dict[str, Any] | None = None) -> dict[str, np.ndarray]:
    """Every array of a safetensors file (float32/16/64 or int64), checked."""
    return _read_arrays(path, read_header(path) if header is None else header)


def _read_arrays(path: Path, header: dict[str, Any]) -> dict[str, np.ndarray]:
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    odd = sorted(
        {v.get("dtype") for k, v in header.items() if k != "__metadata__" and isinstance(v, dict)}
        - {"F32", "F16", "F64", "I64"}
    )
    if odd:
        raise WeightsError(
            f"{path}: holds {', '.join(map(str, odd))} arrays; save the weights as float32 "
            "(e.g. in PyTorch: {k: v.float() for k, v in state_dict.items()})"
        )
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise WeightsError(f"{path}: corrupt or truncated safetensors file ({exc})") from None


def file_arch(
    path: Path, header: dict[str, Any], config: dict[str, Any], config_path: Path | None
) -> str:
    """The ResNet a weights file holds: config.json's architecture when it names one
    (checked against ARCHS), else inferred from the tensor names in the header."""
    from cnncli.model.family import KNOWN
    from cnncli.model.pretrained.lite_weights import infer_lite

    declared = str(config.get("architecture", "") or "").removeprefix("tf_")
    if declared and declared not in KNOWN:
        raise WeightsError(
            f"{config_path}: architecture {declared!r} is not supported "
            f"(supported: {', '.join(KNOWN)})"
        )
    shapes = {k: v.get("shape", []) for k, v in header.items() if isinstance(v, dict)}
    lite = infer_lite(shapes, path)
    return declared or lite or infer_arch([k for k in header if k != "__metadata__"], path)


def load_resnet(source: str | Path, channels: int = 3) -> LoadedWeights:
    """Read a timm/torchvision ResNet from a safetensors file or a folder in timm's layout
    (model.safetensors, optionally config.json beside it), strictly, into cnn's names."""
    path, config_path = resolve_file(source)
    header = read_header(path)
    config = read_config(config_path)
    arch = file_arch(path, header, config, config_path)
    arrays = _read_arrays(path, header)
    file_classes = int(arrays["fc.bias"].shape[0]) if "fc.bias" in arrays else 1000
    expected = param_shapes(arch, 3, file_classes)
    params, stats, head = strict_map(arrays, expected, timm_name, path, arch)
    if channels != 3:  # timm's adapt_input_conv: grey input sees the sum of the RGB filters
        params["conv1/kernel"] = params["conv1/kernel"].sum(axis=2, keepdims=True)
    return LoadedWeights(
        path, arch, params, stats, head, pretrained_cfg(config), licence_of(config, path)
    )


def read_config(path: Path | None) -> dict[str, Any]:
    """timm's config.json (architecture, pretrained_cfg), or {} when there is none."""
    if path is None:
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise WeightsError(f"{path}: unreadable config.json ({exc})") from None
    if not isinstance(data, dict):
        raise WeightsError(f"{path}: config.json must hold a JSON object")
    return data


def pretrained_cfg(config: dict[str, Any]) -> dict[str, Any]:
    """mean, std, crop_pct, interpolation, input_size from a timm config (ImageNet's if absent)."""
    given = config.get("pretrained_cfg") or {}
    if not isinstance(given, dict):
        given = {}
    return {k: given.get(k, default) for k, default in IMAGENET_CFG.items()}


def licence_of(config: dict[str, Any], path: Path) -> str:
    """The licence named by config.json (pretrained_cfg.license or license) or by the model
    card (README.md front matter 'license:') beside the file; '' when neither says."""
    cfg = config.get("pretrained_cfg") if isinstance(config.get("pretrained_cfg"), dict) else {}
    for value in (cfg.get("license"), config.get("license")):
        if isinstance(value, str) and value.strip():
            return value.strip()
    card = path.parent / "README.md"
    try:
        text = card.read_text(encoding="utf-8")[:4000] if card.is_file() else ""
    except (OSError, UnicodeDecodeError):
        text = ""
    if text.startswith("---"):
        found = re.search(r"^license:\s*(\S+)", text.split("---", 2)[1], re.MULTILINE)
        if found:
            return found.group(1).strip("'\"")
    return ""


def is_non_commercial(licence: str) -> bool:
    """True for licences that forbid commercial use (CC BY-NC, 'non-commercial', research-only)."""
    text = licence.lower()
    return any(
        mark in text for mark in ("-nc", "nc-", "noncommercial", "non-commercial", "research-only")
    )
