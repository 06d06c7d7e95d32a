"""Start training from weights: resolve `--init SOURCE`, shape the run for it, fill the state.

SOURCE is one of
- a registered backbone name (resnet18, resnet18.tv_in1k, resnet50): downloaded only when
  asked (model/pretrained/hub.py), at a pinned revision, SHA-256 checked;
- a safetensors file or a folder in timm's layout (model.safetensors, optionally config.json
  and a model card README.md beside it): the offline route;
- a cnn run or model folder: a warm start. Classes are matched by name: head rows of the
  classes that persist are kept, new classes get fresh rows, dropped ones go.
Resolving reads headers and JSON only (no jax), so `cnn train` fails before it starts.
"""

from __future__ import annotations

import importlib.util
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cnncli.model.pretrained.state_dict import WeightsError

# A pretrained backbone on a CPU trains at 160 px (ResNet-18 fine-tunes ~35 img/s at 128,
# ~14 at 160, ~6 at 224 on 2 cores); with an accelerator at the backbone's own size.
CPU_IMAGE_SIZE = 160


@dataclass
class InitSource:
    """Where a run's first weights come from, as resolved before training."""

    given: str  # what the user typed
    kind: str  # "pretrained" (a registered name), "file" (timm layout) or "run" (cnn bundle)
    path: str  # the safetensors file, or the bundle folder
    arch: str  # the ResNet the weights are for ("" for a run of a cnn preset)
    licence: str = ""
    pretrained_cfg: dict[str, Any] = field(default_factory=dict)  # timm's preprocessing keys
    classes: list[str] = field(default_factory=list)  # a run's classes (its head's rows)
    head_classes: int = 0  # rows of the file's classifier (1000 for ImageNet); 0 = none
    sha256: str = ""  # of a downloaded file whose hash the registry does not pin

    def as_dict(self) -> dict[str, Any]:
        """For run.json and the bundle's model.json."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> InitSource:
        """Back from as_dict()."""
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})


def resolve(source: str) -> InitSource:
    """Find SOURCE: an existing path (run/bundle, or timm file/folder) first, then a name."""
    from cnncli.model.pretrained import hub
    from cnncli.model.pretrained.lite_weights import lookup_packaged, packaged_file
    from cnncli.model.pretrained.registry import PRETRAINED, lookup
    from cnncli.model.pretrained.weights import PICKLE_SUFFIXES

    path = Path(source).expanduser()
    if path.exists():
        if path.is_dir() and any((p / "model.json").is_file() for p in (path, path / "model")):
            return _from_run(source, path)
        return _from_file(source, path)
    packaged = lookup_packaged(source)
    if packaged is not None:
        return InitSource(
            source,
            "packaged",
            str(packaged_file(packaged)),
            packaged.arch,
            packaged.license,
            packaged.pretrained_cfg(),
            head_classes=1000,
        )
    spec = lookup(source)
    if spec is not None:
        file = hub.fetch(spec)
        _check_holds(file, spec.arch)
        return InitSource(
            source,
            "pretrained",
            str(file),
            spec.arch,
            spec.license,
            spec.pretrained_cfg(),
            head_classes=1000,
            sha256="" if spec.pinned else hub.sha256_of(file),
        )
    if path.suffix.lower() in PICKLE_SUFFIXES or path.suffix.lower() == ".safetensors":
        raise WeightsError(f"{path}: no such weights file")
    names = ", ".join(sorted({*PRETRAINED, "efficientnet_lite0", "lite0"}))
    raise WeightsError(
        f"--init {source}: no such file or folder, and not a pretrained backbone name "
        f"(known: {names}); or pass a model.safetensors file or a cnn run folder"
    )


def _from_file(given: str, path: Path) -> InitSource:
    """A timm-layout safetensors file or folder: its ResNet, preprocessing and licence."""
    from cnncli.model.pretrained.hub import registered_file
    from cnncli.model.pretrained.weights import (
        file_arch,
        licence_of,
        pretrained_cfg,
        read_config,
        read_header,
        resolve_file,
    )

    packaged = _packaged_pth(path)
    if packaged is not None:  # the package's own pinned file, passed by path
        return InitSource(
            given,
            "packaged",
            str(path),
            packaged.arch,
            packaged.license,
            packaged.pretrained_cfg(),
            head_classes=1000,
        )
    file, config_path = resolve_file(path)
    header = read_header(file)
    config = read_config(config_path)
    arch = file_arch(file, header, config, config_path)
    cfg, licence = pretrained_cfg(config), licence_of(config, file)
    if config_path is None:  # the very file of a registered name: its card is known
        spec = registered_file(file)
        if spec is not None:
            cfg, licence = spec.pretrained_cfg(), licence or spec.license
    bias = header.get("fc.bias") or header.get("classifier.bias")
    head = int(bias["shape"][0]) if isinstance(bias, dict) and bias.get("shape") else 0
    return InitSource(given, "file", str(file), arch, licence, cfg, head_classes=head)


def _check_holds(file: Path, arch: str) -> None:
    """Before any run folder exists: the downloaded file's header names exactly `arch`'s
    arrays (every name and shape; the values are checked again when loaded)."""
    from cnncli.model.pretrained.weights import file_arch, read_header

    held = file_arch(file, read_header(file), {}, None)
    if held != arch:
        raise WeightsError(f"{file}: holds a {held}, the name stands for {arch}")


def _packaged_pth(path: Path):
    """The packaged weights whose pinned .pth file `path` is (same SHA-256), or None."""
    from cnncli.model.pretrained.hub import sha256_of
    from cnncli.model.pretrained.lite_weights import PACKAGED

    if not path.is_file() or path.suffix.lower() != ".pth":
        return None
    size = path.stat().st_size
    if not 1_000_000 < size < 200_000_000:
        return None
    digest = sha256_of(path)
    return next((s for s in PACKAGED.values() if s.sha256 == digest), None)


def _from_run(given: str, path: Path) -> InitSource:
    """A cnn run or model folder (validated in full: loading it reads every array)."""
    from cnncli.inference.bundle import load_bundle

    bundle = load_bundle(path)
    earlier = bundle.meta.get("init") if isinstance(bundle.meta.get("init"), dict) else {}
    return InitSource(
        given,
        "run",
        str(bundle.path),
        bundle.model.backbone,
        str(earlier.get("licence", "")),
        classes=list(bundle.classes),
        head_classes=len(bundle.classes),
    )


def accelerator_present() -> bool:
    """Whether jax will likely run on a GPU/TPU (its plugin is installed), without importing jax."""
    plugins = ("jax_cuda12_plugin", "jax_cuda13_plugin", "jax_rocm60_plugin", "libtpu")
    return any(importlib.util.find_spec(name) is not None for name in plugins)


def configure(cfg, src: InitSource, explicit: set[str], train_images: int = 0):
    """The run config for SOURCE: its network and preprocessing, and (for what the user left
    unset, `explicit` holding the dotted keys they set) the fine-tuning recipe.

    Recipe, for a pretrained backbone (fastai's fine_tune, with its frozen epoch done on
    cached features): the new head alone for head_epochs, then 5 epochs of everything with
    Adam at lr 1e-3 for the head and 1e-4 (lr / 10) for the backbone, batch 32. A warm
    start from a run keeps that run's network and preprocessing, and fine-tunes the
    backbone at the full lr: its features come from fewer images than ImageNet's and must
    move to serve new classes (Fashion-MNIST, 20 images per new class: 87 % test accuracy
    at lr, 76 % at lr / 10, 84 % from scratch; docs/results.md).

    Head-only epochs on cached features cost next to nothing, but a few images make few
    steps an epoch, and a fresh head needs a few hundred Adam steps at 1e-3: so head_epochs
    is at least 5 (3 from a run) and at least ~100 steps, at most 50 epochs; --freeze trains
    the head for at least 20 epochs and ~400 steps, at most 200 epochs (Fashion-MNIST, 80
    images: 20 % test accuracy after 30 steps, 75 % after 400).
    """
    from cnncli.config import ModelConfig, validate
    from cnncli.model.family import check_config

    d, t = cfg.data, cfg.train
    if src.kind == "run":
        from cnncli.inference.bundle import load_bundle

        bundle = load_bundle(src.path)
        if "data.channels" in explicit and d.channels != bundle.channels:
            raise WeightsError(
                f"{src.path}: a {bundle.channels}-channel model; drop --channels {d.channels}"
            )
        cfg.model, d.channels = bundle.model, bundle.channels
        r = bundle.resize
        d.crop_pct, d.interpolation = r.crop_pct, r.interpolation
        if "data.resize" not in explicit:
            d.resize, d.pad_color = r.policy, list(r.pad_color)
        if "data.image_size" not in explicit:
            d.image_size = r.spec()["image_size"]
        _recipe(t, explicit, train_images, head_epochs=3, backbone_lr=t.lr)
        return check_config(validate(cfg))
    pre = src.pretrained_cfg
    mean, std = [float(v) for v in pre["mean"]], [float(v) for v in pre["std"]]
    if d.channels == 1:  # conv1 sums its RGB filters (weights.load_resnet): grey = R = G = B
        mean, std = [sum(mean) / 3], [sum(std) / 3]
    dropout = cfg.model.dropout if "model.dropout" in explicit else 0.0
    cfg.model = ModelConfig(
        conv=cfg.model.conv,
        backbone=src.arch,
        dense=[],
        global_pool=True,
        dropout=dropout,
        mean=mean,
        std=std,
    )
    d.crop_pct = float(pre.get("crop_pct", 1.0))
    d.interpolation = str(pre.get("interpolation", "bilinear"))
    if "data.image_size" not in explicit:
        native = int(pre.get("input_size", [3, 224, 224])[-1])
        lite = src.arch.startswith("efficientnet_lite")  # cheap enough at its own size
        d.image_size = native if accelerator_present() or lite else min(native, CPU_IMAGE_SIZE)
    if "train.batch_size" not in explicit:
        t.batch_size = 32
    if "train.epochs" not in explicit and not t.freeze:
        t.epochs = 5
    _recipe(t, explicit, train_images, head_epochs=5, backbone_lr=t.lr / 10)
    return check_config(validate(cfg))


def _recipe(t, explicit: set[str], images: int, *, head_epochs: int, backbone_lr: float) -> None:
    """Fill the fine-tuning defaults the user did not set (see configure)."""
    steps = max(1, math.ceil(images / t.batch_size)) if images else 1
    if t.freeze and "train.epochs" not in explicit:
        t.epochs = min(200, max(20, math.ceil(400 / steps)))
    if "train.head_epochs" not in explicit:
        t.head_epochs = 0 if t.freeze else min(50, max(head_epochs, math.ceil(100 / steps)))
    if "train.backbone_lr" not in explicit and not t.freeze:
        t.backbone_lr = backbone_lr


def class_match(src: InitSource, classes: list[str]) -> dict[str, list[str]]:
    """A warm start's classes by name: kept (in both), new (only in the data), dropped."""
    if src.kind != "run":
        return {}
    before = set(src.classes)
    return {
        "kept": [c for c in classes if c in before],
        "new": [c for c in classes if c not in before],
        "dropped": [c for c in src.classes if c not in set(classes)],
    }


def describe(src: InitSource, classes: list[str]) -> list[str]:
    """Lines the CLI prints about the start: where from, the head, the licence."""
    from cnncli.model.pretrained.weights import is_non_commercial

    lines = []
    if src.kind == "run":
        match = class_match(src, classes)
        lines.append(f"init: warm start from {src.path} ({src.arch or 'cnn network'})")
        for what in ("kept", "new", "dropped"):
            names = match[what]
            lines.append(f"  {what} {len(names)}: {', '.join(names) if names else '-'}")
    else:
        lines.append(f"init: {src.arch} weights from {src.path}")
        head = f"the file's {src.head_classes}-class head" if src.head_classes else "no head"
        lines.append(f"  {head} replaced by a new {len(classes)}-class one")
        if src.sha256:
            lines.append(
                f"  SHA-256 {src.sha256} (no pinned hash for this name: checked by every "
                "array's name and shape; stored in run.json)"
            )
    if src.licence:
        lines.append(f"  licence: {src.licence}")
        if is_non_commercial(src.licence):
            lines.append(
                f"warning: {src.licence} does not allow commercial use; the trained model "
                "inherits that restriction"
            )
    elif src.kind != "run":
        lines.append("  licence: not stated (no config.json or model card beside the file)")
    return lines


def load_backbone(src: InitSource, channels: int = 3):
    """SOURCE's pretrained arrays (weights.LoadedWeights): the packaged Lite weights, a timm
    EfficientNet-Lite or ResNet safetensors file."""
    from cnncli.model.lite_spec import is_lite
    from cnncli.model.pretrained.weights import load_resnet

    if src.kind == "packaged":
        from cnncli.model.pretrained.lite_weights import load_packaged, lookup_packaged

        return load_packaged(lookup_packaged(src.arch), channels)
    if is_lite(src.arch):
        from cnncli.model.pretrained.lite_weights import load_timm_lite
        from cnncli.model.pretrained.weights import read_arrays, resolve_file

        path, _ = resolve_file(src.path)
        return load_timm_lite(path, read_arrays(path), src.arch, channels)
    return load_resnet(src.path, channels)


def load_into(
    src: InitSource,
    params: dict[str, Any],
    stats: dict[str, Any],
    classes: list[str],
    channels: int,
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """A fresh network's (params, stats) with SOURCE's arrays in place; the head sized to the
    data (fresh from a pretrained file; matched by class name from a run)."""
    params = {k: np.asarray(v) for k, v in params.items()}
    stats = {k: np.asarray(v) for k, v in stats.items()}
    if src.kind != "run":
        loaded = load_backbone(src, channels)
        if loaded.arch != src.arch:
            raise WeightsError(f"{src.path}: holds a {loaded.arch}, the run expects {src.arch}")
        return {**params, **loaded.params}, {**stats, **loaded.stats}
    from cnncli.inference.bundle import load_bundle

    bundle = load_bundle(src.path)
    for mine, theirs in ((params, bundle.params), (stats, bundle.stats)):
        for name, value in mine.items():
            if name.startswith("logits/"):
                continue
            other = theirs.get(name)
            if other is None or other.shape != value.shape:
                got = "missing" if other is None else f"shape {list(other.shape)}"
                raise WeightsError(
                    f"{bundle.path}: '{name}' is {got}, this run needs {list(value.shape)} "
                    "(a flattening network keeps its --image-size)"
                )
            mine[name] = other
    kernel, bias = params["logits/kernel"].copy(), params["logits/bias"].copy()
    old = {c: i for i, c in enumerate(bundle.classes)}
    for j, name in enumerate(classes):
        if name in old:
            kernel[:, j] = bundle.params["logits/kernel"][:, old[name]]
            bias[j] = bundle.params["logits/bias"][old[name]]
    params["logits/kernel"], params["logits/bias"] = kernel, bias
    return params, stats
