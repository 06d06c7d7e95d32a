"""`cnn summary`: the network's layer table (shapes, parameters, MACs) without training.

Pure shape arithmetic (cnncli.model.shapes): this command never imports jax.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from cnncli.commands import train_options as opt
from cnncli.commands.common import ImageSizeOpt, Opt, fail, handled_errors, image_size_option

DEFAULT_NUM_CLASSES = 10


def _saved_classes(model_dir: Path) -> int | None:
    """Class count from a model bundle's model.json, or None when there is none to read."""
    meta_path = model_dir / "model.json"
    if not meta_path.is_file():
        return None
    try:
        classes = json.loads(meta_path.read_text(encoding="utf-8"))["classes"]
        return len(classes) if isinstance(classes, list) else None
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError):
        return None


def _load_source(source: Path | None):
    """(RunConfig, class count or None, description) from nothing, a .toml, a run or model/ folder."""
    from cnncli.config import ConfigError, RunConfig, load_toml

    if source is None:
        return RunConfig(), None, "default config"
    if source.is_file():
        return load_toml(source), None, str(source)
    if (source / "config.toml").is_file():
        return load_toml(source / "config.toml"), _saved_classes(source / "model"), str(source)
    if (source / "model.json").is_file():
        from cnncli.inference.bundle import load_bundle

        bundle = load_bundle(source)
        cfg = RunConfig()
        height, width = bundle.image_hw
        cfg.model, cfg.data.image_size, cfg.data.channels = (
            bundle.model,
            height if height == width else [height, width],
            bundle.channels,
        )
        cfg.data.resize, cfg.data.pad_color = bundle.resize.policy, list(bundle.resize.pad_color)
        return cfg, len(bundle.classes), str(source)
    if not source.exists():
        raise ConfigError(f"{source}: no such config file or run folder")
    raise ConfigError(
        f"{source}: not a config (.toml), a run folder (config.toml) or a model folder (model.json)"
    )


def _init_source(init: str):
    """(RunConfig, class count or None, description) for --init: a run, a weights file or
    folder (its header names the ResNet), or a backbone name. Nothing is downloaded."""
    from cnncli.config import ConfigError, ModelConfig, RunConfig
    from cnncli.model.family import KNOWN
    from cnncli.model.lite_spec import ARCHS as LITE
    from cnncli.model.pretrained.lite_weights import lookup_packaged
    from cnncli.model.pretrained.registry import lookup
    from cnncli.training.warm_start import CPU_IMAGE_SIZE

    path = Path(init).expanduser()
    if path.is_dir() and any((p / "model.json").is_file() for p in (path, path / "model")):
        return _load_source(path)
    if path.exists():
        from cnncli.training.warm_start import _from_file

        arch, described = _from_file(init, path).arch, f"weights file {path}"
    elif lookup_packaged(init) is not None:
        packaged = lookup_packaged(init)
        arch, described = packaged.arch, f"ImageNet weights from the package {packaged.package}"
    elif lookup(init) is not None:
        spec = lookup(init)
        arch, described = spec.arch, f"{spec.repo}; not downloaded, the table needs none"
    elif init.strip().lower() in KNOWN:
        arch, described = init.strip().lower(), "the architecture"
    else:
        raise ConfigError(f"--init {init}: no such file or folder, and not a backbone name")
    cfg = RunConfig()
    cfg.model = ModelConfig(backbone=arch, dense=[], global_pool=True, dropout=0.0)
    cfg.data.image_size = LITE[arch].resolution if arch in LITE else CPU_IMAGE_SIZE
    return cfg, None, f"{arch} ({described})"


def summary(
    source: Annotated[
        Path | None,
        typer.Argument(
            help="A config .toml, a run folder or its model/ folder (default: the default config).",
            metavar="CONFIG|RUN",
            show_default=False,
        ),
    ] = None,
    image_size: ImageSizeOpt = None,
    channels: opt.ChannelsOpt = None,
    model: opt.ModelOpt = None,
    filters: opt.FiltersOpt = None,
    kernel: opt.KernelOpt = None,
    stride: opt.StrideOpt = None,
    padding: opt.PaddingOpt = None,
    pool: opt.PoolOpt = None,
    batch_norm: opt.BatchNormOpt = None,
    global_pool: opt.GlobalPoolOpt = None,
    dense: opt.DenseOpt = None,
    dropout: opt.DropoutOpt = None,
    num_classes: Annotated[
        int | None,
        Opt(
            "--num-classes",
            help=f"Number of classes (default: the saved model's, else {DEFAULT_NUM_CLASSES}).",
        ),
    ] = None,
    json_out: Annotated[
        bool, Opt("--json", help="Print the layers as JSON on stdout instead of a table.")
    ] = False,
    init: Annotated[
        str | None,
        Opt(
            "--init",
            help="A pretrained backbone (resnet18, resnet50, ...), a weights file or a run, "
            "as `cnn train --init` takes it; nothing is downloaded (default size: 224 for "
            "efficientnet_lite0, 160 for a ResNet).",
        ),
    ] = None,
) -> None:
    """Show the network layer by layer, (W - F + 2P)/S + 1 worked out, params and MACs; no training."""
    with handled_errors():
        from rich.markup import escape

        from cnncli.config import merge_overrides, model_preset
        from cnncli.model.shapes import layer_table
        from cnncli.reporting.report import layer_inputs, layers_table, make_console
        from cnncli.training.new_run import int_list, model_overrides

        if num_classes is not None and num_classes < 2:
            raise fail(f"--num-classes must be >= 2, got {num_classes}")
        if init is not None and (source is not None or model is not None):
            raise fail("--init names the network; drop CONFIG|RUN and --model")
        if init is not None:
            cfg, saved_classes, described = _init_source(init)
        else:
            cfg, saved_classes, described = _load_source(source)
        if model is not None:
            cfg.model = model_preset(model)
        overrides = {
            "data.image_size": image_size_option(image_size),
            "data.channels": channels,
            "model.dense": int_list(dense, "--dense"),
            "model.dropout": dropout,
            "model.global_pool": global_pool,
        }
        if any(v is not None for v in (filters, kernel, stride, padding, pool, batch_norm)):
            overrides["model.conv"] = model_overrides(
                cfg, int_list(filters, "--filters"), kernel, stride, padding, pool, batch_norm
            )
        cfg = merge_overrides(cfg, overrides)
        classes = num_classes or saved_classes or DEFAULT_NUM_CLASSES
        size, chans = cfg.data.input_hw, cfg.data.channels
        rows = layer_table(cfg.model, size, chans, classes)
        input_shape = (*size, chans)
        if json_out:
            layers = [
                {
                    "name": r.name,
                    "kind": r.kind,
                    "input": list(shape_in),
                    "output": list(r.out_shape),
                    "params": r.params,
                    "macs": r.macs,
                    "formula": r.formula,
                }
                for r, shape_in in zip(rows, layer_inputs(rows, input_shape), strict=True)
            ]
            result = {
                "source": described,
                "input": list(input_shape),
                "num_classes": classes,
                "layers": layers,
                "total_params": sum(r.params for r in rows),
                "total_macs": sum(r.macs for r in rows),
            }
            print(json.dumps(result))
            return
        class_note = "" if num_classes or saved_classes else " (default; --num-classes)"
        title = escape(
            f"network for {size[0]}x{size[1]}x{chans} input, {classes} classes{class_note}; "
            f"from {described}"
        )
        make_console().print(layers_table(rows, title, input_shape=input_shape))
