"""`cnn train`: parse flags into a RunConfig, plan the run, show progress."""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import typer

from cnncli.commands.common import (
    ImageSizeOpt,
    LabelDelimiterOpt,
    LabelsOpt,
    MultiLabelOpt,
    Opt,
    fail,
    handled_errors,
    image_size_option,
    int_list,
    label_options,
    model_overrides,
    write_run_report,
)
from cnncli.xla_env import configure_xla


def train(
    data_dir: Annotated[
        Path | None,
        typer.Argument(
            help="Folder with <class>/ subfolders (or train/ and val/), or the folder the "
            "paths of --labels FILE are relative to.",
            show_default=False,
        ),
    ] = None,
    config: Annotated[
        Path | None,
        Opt("--config", help="TOML config (e.g. a run's config.toml); flags override it."),
    ] = None,
    out: Annotated[
        Path | None, Opt("--out", help="Run folder (default: runs/train, runs/train2, ...).")
    ] = None,
    resume: Annotated[
        Path | None,
        Opt("--resume", help="Continue the run in this folder from its last checkpoint."),
    ] = None,
    labels: LabelsOpt = None,
    label_delimiter: LabelDelimiterOpt = ";",
    multi_label: MultiLabelOpt = False,
    image_size: ImageSizeOpt = None,
    resize: Annotated[
        str | None,
        Opt(
            "--resize",
            help="How other shapes become the input size: crop (centre), pad (whole image, "
            "letterboxed) or squish (stretched) (default: crop).",
        ),
    ] = None,
    pad_color: Annotated[
        str | None,
        Opt(
            "--pad-color",
            help="Fill of --resize pad: grey level, R,G,B or #rrggbb (default: 128,128,128).",
        ),
    ] = None,
    channels: Annotated[
        int | None, Opt("--channels", help="1 (grayscale) or 3 (RGB) (default: 3).")
    ] = None,
    filters: Annotated[
        str | None,
        Opt("--filters", help="Filters per conv block, comma-separated (default: 32,64,128)."),
    ] = None,
    kernel: Annotated[int | None, Opt("--kernel", help="Conv kernel size F (default: 3).")] = None,
    stride: Annotated[int | None, Opt("--stride", help="Conv stride S (default: 1).")] = None,
    padding: Annotated[
        str | None,
        Opt("--padding", help="Conv padding P: same, valid or an integer (default: same)."),
    ] = None,
    pool: Annotated[
        int | None,
        Opt("--pool", help="Max-pool size (and stride) after each conv; 0 = none (default: 2)."),
    ] = None,
    batch_norm: Annotated[
        bool | None,
        Opt("--batch-norm/--no-batch-norm", help="Batch norm after each conv (default: off)."),
    ] = None,
    global_pool: Annotated[
        bool | None,
        Opt(
            "--global-pool/--flatten",
            help="Global average pool instead of flatten (default: flatten).",
        ),
    ] = None,
    dense: Annotated[
        str | None,
        Opt(
            "--dense",
            help="Fully connected layer sizes, comma-separated; '' for none (default: 128).",
        ),
    ] = None,
    dropout: Annotated[
        float | None, Opt("--dropout", help="Dropout after each dense layer (default: 0.3).")
    ] = None,
    epochs: Annotated[int | None, Opt("--epochs", help="Epochs (default: 15).")] = None,
    batch_size: Annotated[int | None, Opt("--batch-size", help="Batch size (default: 64).")] = None,
    optimizer: Annotated[
        str | None, Opt("--optimizer", help="adam, adamw or sgd (default: adam).")
    ] = None,
    lr: Annotated[float | None, Opt("--lr", help="Peak learning rate (default: 0.001).")] = None,
    weight_decay: Annotated[
        float | None, Opt("--weight-decay", help="Weight decay for adamw/sgd (default: 1e-4).")
    ] = None,
    momentum: Annotated[
        float | None, Opt("--momentum", help="SGD momentum (default: 0.9).")
    ] = None,
    warmup_epochs: Annotated[
        float | None, Opt("--warmup-epochs", help="Linear warm-up length (default: 1).")
    ] = None,
    schedule: Annotated[
        str | None, Opt("--schedule", help="cosine or constant after warm-up (default: cosine).")
    ] = None,
    label_smoothing: Annotated[
        float | None, Opt("--label-smoothing", help="Label smoothing (default: 0).")
    ] = None,
    augment: Annotated[
        str | None,
        Opt(
            "--augment",
            help="Preset (none, light, default, strong) or ops, e.g. flip,translate=0.1,zoom=0.2,rotate=15 (default: none).",
        ),
    ] = None,
    val_fraction: Annotated[
        float | None,
        Opt(
            "--val-fraction",
            help="Validation share per class when there is no val/ folder (default: 0.2).",
        ),
    ] = None,
    seed: Annotated[
        int | None,
        Opt(
            "--seed", help="Seed for the split, init, order, dropout and augmentation (default: 0)."
        ),
    ] = None,
    cache_memory: Annotated[
        int | None,
        Opt(
            "--cache-memory",
            help="MiB of decoded images kept in RAM; beyond it a memory-mapped file (default: 2048).",
        ),
    ] = None,
    follow_symlinks: Annotated[
        bool | None,
        Opt("--follow-symlinks", help="Follow symlinks that point outside the data folder."),
    ] = None,
    model: Annotated[
        str | None,
        Opt(
            "--model",
            help="Architecture preset: tiny, small, small-bn, compact, medium or resnet "
            "(default: chosen by the recipe; small with --recipe fixed).",
        ),
    ] = None,
    patience: Annotated[
        int | None,
        Opt(
            "--patience",
            help="Stop after this many epochs without a val accuracy gain (default: off).",
        ),
    ] = None,
    time_limit: Annotated[
        float | None,
        Opt(
            "--time-limit",
            help="Stop at the epoch end before this many minutes pass (default: off).",
        ),
    ] = None,
    class_weights: Annotated[
        str | None,
        Opt("--class-weights", help="none, or auto: weight the loss by inverse class frequency."),
    ] = None,
    sampler: Annotated[
        str | None,
        Opt(
            "--sampler",
            help="shuffle (each image once per epoch) or balanced (classes equally often).",
        ),
    ] = None,
    devices: Annotated[
        int | None,
        Opt(
            "--devices",
            help="Data-parallel over N devices (0 = all visible); on a CPU, N host devices (default: 1).",
        ),
    ] = None,
    shards: Annotated[
        int | None,
        Opt(
            "--shards",
            help="Split the data order into N shards (default: one per process); one process with --shards N repeats an N-process run.",
        ),
    ] = None,
    large_batch: Annotated[
        int | None,
        Opt(
            "--large-batch",
            help="Accelerator preset: scale the recipe to N images a step (lr x sqrt(N/batch) "
            "for adam/adamw, x N/batch for sgd; warm-up >= 2 epochs), e.g. 1024.",
        ),
    ] = None,
    precision: Annotated[
        str | None,
        Opt(
            "--precision",
            help="fp32, or bf16: bfloat16 activations and convolutions, float32 weights, "
            "optimizer state, batch-norm statistics and loss (default: fp32).",
        ),
    ] = None,
    data_placement: Annotated[
        str | None,
        Opt(
            "--data-placement",
            help="auto, device (train split on the device, batches gathered there), chunked "
            "(streamed in chunks) or host (copied per batch) (default: auto).",
        ),
    ] = None,
    steps_per_dispatch: Annotated[
        int | None,
        Opt(
            "--steps-per-dispatch",
            help="Train steps per call to the device (lax.scan); 0 = auto: 1 on a CPU, "
            "~100k images on a GPU/TPU (default: 0).",
        ),
    ] = None,
    coordinator: Annotated[
        str | None,
        Opt(
            "--coordinator",
            envvar="CNN_COORDINATOR",
            help="Multi-host: HOST:PORT of process 0, or auto (SLURM, Open MPI, Cloud TPU...).",
        ),
    ] = None,
    num_processes: Annotated[
        int | None,
        Opt("--num-processes", envvar="CNN_NUM_PROCESSES", help="Multi-host: processes in all."),
    ] = None,
    process_id: Annotated[
        int | None,
        Opt("--process-id", envvar="CNN_PROCESS_ID", help="Multi-host: this process, 0..N-1."),
    ] = None,
    recipe: Annotated[
        str | None,
        Opt(
            "--recipe",
            help="auto: choose input size, channels, model, augmentation, epochs... from the "
            "data (flags and --config win); fixed: the old fixed defaults (64x64 RGB, small "
            "CNN, 15 epochs, no augmentation) (default: auto).",
        ),
    ] = None,
    time_budget: Annotated[
        float | None,
        Opt(
            "--time-budget",
            help="Minutes to use: race 3-6 candidate recipes on the val split (successive "
            "halving), then finish training the best one within the budget.",
        ),
    ] = None,
    folds: Annotated[
        int | None,
        Opt(
            "--folds",
            help="K-fold cross-validation: train K models, each validated on another 1/K "
            "(stratified); report the spread and write oof.csv.",
            show_default=False,
        ),
    ] = None,
    tensorboard: Annotated[
        bool,
        Opt(
            "--tensorboard",
            help="Write TensorBoard event files to RUN/tb/ (pip install 'cnn[tensorboard]').",
        ),
    ] = False,
    init: Annotated[
        str | None,
        Opt(
            "--init",
            help="Start from weights: a pretrained backbone (resnet18, resnet18.tv_in1k, "
            "resnet50; downloaded once, needs cnn[pretrained]), a model.safetensors file or "
            "timm-layout folder (offline), or a cnn run folder (warm start, classes matched "
            "by name).",
        ),
    ] = None,
    freeze: Annotated[
        bool | None,
        Opt(
            "--freeze",
            help="With --init: keep the backbone frozen; its features are computed once and "
            "only the new head trains (seconds; best for a few images per class).",
        ),
    ] = None,
    head_epochs: Annotated[
        int | None,
        Opt(
            "--head-epochs",
            help="With --init: epochs of the head alone (on cached features) before "
            "fine-tuning everything (default: 5 pretrained, 3 from a run).",
        ),
    ] = None,
    backbone_lr: Annotated[
        float | None,
        Opt(
            "--backbone-lr",
            help="With --init: learning rate of the backbone while fine-tuning (default: lr / 10).",
        ),
    ] = None,
    freeze_bn: Annotated[
        bool | None,
        Opt(
            "--freeze-bn",
            help="With --init: batch norm keeps its running statistics while fine-tuning "
            "(for small batches).",
        ),
    ] = None,
    find_lr: Annotated[
        bool,
        Opt(
            "--find-lr",
            help="Run a learning-rate range test instead of training; plots and suggests an lr.",
        ),
    ] = False,
    quiet: Annotated[bool, Opt("--quiet", "-q", help="Print nothing but errors.")] = False,
    json_out: Annotated[
        bool, Opt("--json", help="Print a JSON summary on stdout (progress goes to stderr).")
    ] = False,
) -> None:
    """Train a CNN on DIR/<class>/*.jpg (or DIR/train + DIR/val, or labels from --labels).

    Several labels per image train in multi-label mode (sigmoid outputs, one threshold each).
    """
    configure_xla()
    with _leave_cluster_on_error(), handled_errors():
        if folds is not None and folds < 2:
            raise fail(f"--folds must be at least 2 (K-fold cross-validation), got {folds}")
        if folds is not None and (
            resume is not None or find_lr or coordinator or time_budget is not None
        ):
            raise fail(
                "--folds runs K new trainings in one process; drop "
                "--resume/--find-lr/--coordinator/--time-budget"
            )
        from cnncli.config import parse_color
        from cnncli.distributed import resolve_cluster
        from cnncli.report import make_console

        cluster = resolve_cluster(coordinator, num_processes, process_id)
        if cluster is not None and find_lr:
            raise fail("--find-lr runs in one process; drop --coordinator/--num-processes")
        conv = overrides = None
        label_source = label_options(labels, label_delimiter, multi_label)
        if recipe is not None and recipe not in ("auto", "fixed"):
            raise fail(f"--recipe must be auto or fixed, got {recipe!r}")
        if time_budget is not None and not 0 < time_budget <= 60 * 24 * 7:
            raise fail(f"--time-budget takes minutes > 0, got {time_budget:g}")
        if time_budget is not None and (recipe == "fixed" or find_lr or cluster is not None):
            raise fail("--time-budget races recipes in one process; drop --recipe fixed/--find-lr")
        if resume is not None:
            if data_dir is not None or config is not None or labels is not None or multi_label:
                raise fail(
                    "--resume takes its data, labels and config from the run folder; drop "
                    "DATA_DIR/--labels/--multi-label/--config"
                )
            if recipe is not None or time_budget is not None:
                raise fail("--resume keeps the run's saved config; drop --recipe/--time-budget")
        else:
            if data_dir is None:
                raise fail(
                    "missing DATA_DIR (a folder of class subfolders), or use --resume RUN_DIR"
                )
            overrides = {
                "data.image_size": image_size_option(image_size),
                "data.resize": resize,
                "data.pad_color": None if pad_color is None else parse_color(pad_color),
                "data.channels": channels,
                "data.val_fraction": val_fraction,
                "data.cache_memory": cache_memory,
                "data.follow_symlinks": follow_symlinks,
                "model.dense": int_list(dense, "--dense"),
                "model.dropout": dropout,
                "model.global_pool": global_pool,
                "train.epochs": epochs,
                "train.batch_size": batch_size,
                "train.optimizer": optimizer,
                "train.lr": lr,
                "train.weight_decay": weight_decay,
                "train.momentum": momentum,
                "train.warmup_epochs": warmup_epochs,
                "train.schedule": schedule,
                "train.label_smoothing": label_smoothing,
                "train.seed": seed,
                "train.patience": patience,
                "train.time_limit": time_limit,
                "train.class_weights": class_weights,
                "train.sampler": sampler,
                "train.devices": devices,
                "train.shards": shards,
                "train.init": init,
                "train.freeze": freeze,
                "train.head_epochs": head_epochs,
                "train.backbone_lr": backbone_lr,
                "train.freeze_bn": freeze_bn,
                "train.precision": precision,
                "train.data_placement": data_placement,
                "train.steps_per_dispatch": steps_per_dispatch,
                "log.tensorboard": True if tensorboard else None,
                "large_batch": large_batch,  # applied last, to the resolved recipe
            }
            if init is not None and model is not None:
                raise fail("--init sets the network (from SOURCE); drop --model")
            if init is not None and (find_lr or time_budget is not None):
                raise fail(
                    "--init trains from SOURCE with its own recipe; drop --find-lr/--time-budget "
                    "(they build networks from scratch)"
                )
            conv = (filters, kernel, stride, padding, pool, batch_norm)
        rank, processes = _join(cluster)
        console = make_console(to_stderr=json_out, quiet=quiet or rank > 0)
        given = _Given(config, model, augment, overrides, conv, processes, recipe or "auto")
        if folds is not None or (resume is not None and _is_cross_validation(resume)):
            from cnncli.commands.train_folds import run_folds

            run_folds(data_dir, given, out, folds, label_source, console, json_out, resume)
            return
        if find_lr:
            _find_lr(data_dir, given, out, console, json_out, label_source)
            return

        def make_plan():
            return _plan(data_dir, given, out, resume, label_source)

        plan = make_plan() if cluster is None else _plan_across_processes(make_plan, rank)
        _request_host_devices(plan.cfg.train.devices)
        if time_budget is not None:
            from cnncli.commands.train_budget import race_recipes

            plan = race_recipes(plan, given, time_budget, console)
        _run_training(plan, console, json_out, quiet, rank, processes)


def _is_cross_validation(run_dir: Path) -> bool:
    from cnncli.crossval import is_cross_validation

    return is_cross_validation(run_dir)


@dataclass
class _Given:
    """What the user set for a new run: --config, --model, --augment, the other flags
    (dotted config keys, None when absent), the conv flags, and --recipe."""

    config: Path | None
    model: str | None
    augment: str | None
    overrides: dict | None
    conv: tuple | None
    processes: int
    recipe: str

    def explicit(self) -> set[str]:
        """The config keys the user set (they win over the recipe's choices)."""
        from cnncli.config import file_keys

        keys = {k for k, v in (self.overrides or {}).items() if v is not None}
        if self.config is not None:
            keys |= file_keys(self.config)
        if any(k.startswith("augment.") for k in keys) or self.augment is not None:
            keys.add("augment.ops")
        if "model.conv" in keys or "model.backbone" in keys or self.model is not None:
            keys.add("model")
        if self.conv is not None and any(v is not None for v in self.conv):
            keys.add("model")
        return keys


def _configure(data_dir, given: _Given, labels, seed_recipe=None):
    """Scan the data, choose the recipe from it, and build the new run's RunConfig.

    Returns (cfg, dataset, recipe info for the table and recipe.json, or None).
    """
    from cnncli.run import load_run_dataset

    # The scan's settings (split, seed, symlinks) are never the recipe's to choose.
    cfg = _new_config(given)
    dataset = load_run_dataset(data_dir, labels, cfg)
    if given.recipe == "fixed":
        return cfg, dataset, None
    from cnncli.data.stats import dataset_stats
    from cnncli.recipe import choose_recipe, recipe_rows

    stats = dataset_stats(dataset, seed=cfg.train.seed)
    recipe = seed_recipe or choose_recipe(stats)
    cfg = _new_config(given, recipe)
    explicit = given.explicit()
    info = {
        "recipe": recipe.as_dict(),
        "rows": recipe_rows(recipe, cfg, explicit),
        "explicit": sorted(explicit),
        "stats": stats.as_dict(),
    }
    return cfg, dataset, info


def _new_config(given: _Given, recipe=None):
    """The RunConfig of a new run: defaults, the recipe's choices, the --config file's
    keys, the --model preset, then the flags (each step wins over the one before), then
    --large-batch's scaling of the resulting batch size and learning rate."""
    from cnncli.config import (
        RunConfig,
        load_toml,
        merge_overrides,
        model_preset,
        overlay_toml,
        validate,
    )
    from cnncli.config import large_batch as large_batch_preset

    config, model, augment, overrides, conv, processes = (
        given.config,
        given.model,
        given.augment,
        given.overrides,
        given.conv,
        given.processes,
    )
    if recipe is None:
        cfg = load_toml(config) if config else RunConfig()
    else:
        from cnncli.recipe import apply_recipe

        cfg = apply_recipe(RunConfig(), recipe)
        if config:
            cfg = overlay_toml(cfg, config)
    if model is not None:
        cfg.model = model_preset(model)
    if augment is not None:
        cfg = _with_augment(cfg, augment)
    overrides = dict(overrides)
    large_batch = overrides.pop("large_batch", None)
    filters, kernel, stride, padding, pool, batch_norm = conv
    if any(v is not None for v in (filters, kernel, stride, padding, pool, batch_norm)):
        overrides["model.conv"] = model_overrides(
            cfg, int_list(filters, "--filters"), kernel, stride, padding, pool, batch_norm
        )
    if processes > 1 and overrides.get("train.shards") is None and cfg.train.shards == 0:
        overrides["train.shards"] = processes  # recorded, so a resume keeps the data order
    cfg = merge_overrides(cfg, overrides)
    if large_batch:
        cfg.train = large_batch_preset(cfg.train, large_batch)
        validate(cfg)
    return cfg


def _with_init(data_dir, given: _Given, labels):
    """(cfg shaped for --init SOURCE and its fine-tuning recipe, the scanned dataset, the
    resolved source).

    A start from weights brings its own network, preprocessing and recipe
    (warm_start.configure, which sizes the head-only phase by the training images), so the
    recipe chosen from the data does not apply; keys the user set (flags, --config) win.
    """
    from cnncli import warm_start
    from cnncli.run import load_run_dataset

    cfg = _new_config(given)
    src = warm_start.resolve(cfg.train.init)
    dataset = load_run_dataset(data_dir, labels, cfg)
    images = len(dataset.splits.get("train", []))
    return warm_start.configure(cfg, src, given.explicit(), images), dataset, src


def _plan(data_dir, given: _Given, out, resume, labels):
    """Plan a new run or a resume (on process 0 only, in a multi-process run)."""
    from cnncli.run import plan_new_run, plan_resume, write_recipe
    from cnncli.tblog import tensorboard_missing

    if resume is not None:
        plan = plan_resume(resume)
        if plan.cfg.log.tensorboard and tensorboard_missing():
            raise fail(tensorboard_missing())
        return plan
    if (given.overrides or {}).get("train.init"):
        cfg, dataset, src = _with_init(data_dir, given, labels)
        return plan_new_run(data_dir, cfg, out, labels=labels, dataset=dataset, init=src)
    cfg, dataset, recipe = _configure(data_dir, given, labels)
    if cfg.log.tensorboard and tensorboard_missing():  # before the run folder is made
        raise fail(tensorboard_missing())
    plan = plan_new_run(data_dir, cfg, out, labels=labels, dataset=dataset)
    if recipe is not None:
        plan.recipe = recipe
        write_recipe(plan.run_dir, recipe)
    return plan


def _join(cluster) -> tuple[int, int]:
    """Join the multi-process run, if any: (this process's index, number of processes)."""
    if cluster is None:
        return 0, 1
    from cnncli import distributed

    try:
        distributed.initialize(cluster)
    except distributed.DistributedError as exc:
        raise fail(str(exc), 1) from None
    return distributed.process_index(), distributed.process_count()


@contextmanager
def _leave_cluster_on_error():
    """In a multi-process run, a process that fails exits at once with its code.

    A normal exit waits in jax.distributed's shutdown barrier for processes that will never
    arrive; exiting hard instead makes the others stop as soon as they lose this one.
    """
    try:
        yield
    except BaseException as exc:
        code = exc.exit_code if isinstance(exc, typer.Exit) else 1
        if isinstance(exc, KeyboardInterrupt):
            code = 130
        from cnncli.distributed import in_cluster

        if code and in_cluster():
            import os
            import sys
            import traceback

            if not isinstance(exc, typer.Exit):
                traceback.print_exc()
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
        raise


def _plan_across_processes(make_plan, rank: int):
    """Process 0 plans (and writes the run folder); the others receive the plan from it.

    If planning fails on process 0, every process stops with its message.
    """
    from cnncli import distributed
    from cnncli.run import plan_from_message, plan_message

    if rank == 0:
        try:
            plan = make_plan()
        except Exception as exc:
            distributed.broadcast_json({"error": str(exc)})
            raise
        distributed.broadcast_json(plan_message(plan))
        return plan
    message = distributed.broadcast_json(None)
    if "error" in message:
        raise fail(f"process 0 stopped: {message['error']}")
    return plan_from_message(message)


def _request_host_devices(count: int) -> None:
    """On a CPU, ask XLA for `count` host devices (must happen before jax is imported)."""
    import os
    import sys

    if count <= 1 or "jax" in sys.modules:
        return
    flags = os.environ.get("XLA_FLAGS", "")
    if "xla_force_host_platform_device_count" not in flags:
        os.environ["XLA_FLAGS"] = f"{flags} --xla_force_host_platform_device_count={count}".strip()


def _find_lr(data_dir, given: _Given, out, console, json_out: bool, labels=None) -> None:
    """The learning-rate range test: a table, lr_find.png and a suggestion."""
    import json

    from rich.table import Table

    from cnncli.run import find_lr, plan_new_run

    cfg, dataset, _ = _configure(data_dir, given, labels)
    plan = plan_new_run(data_dir, cfg, out or None, name="find_lr", labels=labels, dataset=dataset)
    console.print(f"learning-rate range test in [bold]{plan.run_dir}[/bold]")
    result = find_lr(plan)
    table = Table(title="loss against learning rate", title_justify="left")
    table.add_column("lr", justify="right")
    table.add_column("loss (smoothed)", justify="right")
    for lr_value, loss in list(zip(result["lrs"], result["losses"], strict=True))[
        :: max(1, len(result["lrs"]) // 15)
    ]:
        table.add_row(f"{lr_value:.2e}", f"{loss:.4f}")
    console.print(table)
    console.print(
        f"suggested --lr {result['suggestion']:.2e} (a tenth of the lr at the lowest loss); plot: {plan.run_dir / 'lr_find.png'}"
    )
    if json_out:
        print(json.dumps(result))


def _with_augment(cfg, text: str):
    from cnncli.augment import PRESETS, parse_ops
    from cnncli.config import AugmentConfig, ConfigError

    name = text.strip().lower()
    try:
        if name in PRESETS:
            cfg.augment = AugmentConfig(preset=name, ops={})
        else:
            cfg.augment = AugmentConfig(preset="none", ops=parse_ops(text))
    except ValueError as exc:
        raise ConfigError(f"--augment: {exc}") from None
    return cfg


def _run_training(
    plan, console, json_out: bool, quiet: bool, rank: int = 0, processes: int = 1
) -> None:
    import json

    from cnncli.data.scan import class_counts
    from cnncli.report import dataset_table, layers_table
    from cnncli.run import write_summary

    console.print(
        f"run folder: [bold]{plan.run_dir}[/bold]" + ("  (resuming)" if plan.resume else "")
    )
    console.print(dataset_table(class_counts(plan.dataset), _data_title(plan.dataset)))
    _print_label_source(plan.dataset, console)
    if plan.dataset.ignored:
        console.print(
            f"[yellow]ignored {len(plan.dataset.ignored)} non-image or unreachable file(s)[/yellow]"
        )
    if rank == 0:
        _warn_dataset(plan, console)
    if plan.recipe is not None and "race" not in plan.recipe:
        from cnncli.report import recipe_table

        console.print(recipe_table(plan.recipe["rows"], "recipe (chosen from the data; flags win)"))
    _print_init(plan, console)
    console.print(
        layers_table(
            plan.layers,
            f"network for {_input_text(plan.cfg.data)} input",
        )
    )

    outcome = run_with_live_table(
        console,
        plan,
        f"[yellow]interrupted; finished epochs are checkpointed. Resume with: cnn train --resume {plan.run_dir}[/yellow]",
    )
    for path, reason in outcome.skipped:
        console.print(f"[yellow]skipped {path}: {reason}[/yellow]", soft_wrap=True)
    if getattr(outcome, "stopped", ""):
        console.print(f"stopped early: {outcome.stopped}")
    if outcome.finished_before:
        console.print(
            f"run already finished ({len(outcome.history)} epochs); nothing to do. Model: {plan.run_dir / 'model'}"
        )
    summary = {
        "run_dir": str(plan.run_dir),
        "model": str(plan.run_dir / "model"),
        "epochs": len(outcome.history),
        "best_epoch": outcome.best_epoch,
        "best_val_acc": outcome.best_val_acc,
        "final": outcome.history[-1] if outcome.history else None,
        "skipped": [{"path": p, "reason": r} for p, r in outcome.skipped],
        "already_finished": outcome.finished_before,
        "stopped_early": outcome.stopped,
    }
    if plan.dataset.multi_label:  # best_val_acc is then the best epoch's subset accuracy
        summary["multi_label"] = True
        summary["best_val_map"] = outcome.best_val_map
    if plan.recipe is not None and "race" in plan.recipe:
        summary["time_budget"] = plan.recipe["race"]
    report = None
    if rank == 0:
        write_summary(plan.run_dir, summary)
        report = write_run_report(plan.run_dir, console)
        if report is not None:
            summary["report"] = str(report)
    if processes > 1:
        summary["process"] = {
            "index": rank,
            "count": processes,
            "train_images": outcome.train_size,  # decoded by this process (its shards)
            "val_images": outcome.val_size,
        }
    if not outcome.finished_before and plan.dataset.multi_label:
        console.print(
            f"best val mAP {outcome.best_val_map:.4f} (subset accuracy "
            f"{100 * outcome.best_val_acc:.1f}%) at epoch {outcome.best_epoch}; "
            f"{len(outcome.skipped)} file(s) skipped; model and per-label thresholds saved to "
            f"[bold]{plan.run_dir / 'model'}[/bold]"
        )
    elif not outcome.finished_before:
        console.print(
            f"best val acc {100 * outcome.best_val_acc:.1f}% at epoch {outcome.best_epoch}; "
            f"{len(outcome.skipped)} file(s) skipped; model saved to [bold]{plan.run_dir / 'model'}[/bold]"
        )
    if report is not None:
        console.print(f"report: [bold]{report}[/bold]")
    if json_out:
        print(json.dumps(summary))


def _input_text(data) -> str:
    """'64x64x3', plus the resize policy when it is not the centre crop."""
    height, width = data.input_hw
    text = f"{height}x{width}x{data.channels}"
    return text if data.resize == "crop" else f"{text} ({data.resize})"


def run_with_live_table(console, plan, interrupted: str):
    """execute_run(plan) under the live training table and the Ctrl-C guard; the outcome.

    A diverged run is a one-line error (exit 1); Ctrl-C prints `interrupted` and exits 130.
    """
    from cnncli.report import TrainingDisplay
    from cnncli.run import execute_run
    from cnncli.train import TrainingDiverged

    display = TrainingDisplay(console, multi_label=plan.dataset.multi_label)
    try:
        with display, _StopOnCtrlC(display) as guarded:
            outcome = execute_run(plan, guarded, guarded.on_decode)
        if not console.is_terminal:
            console.line()
    except (TrainingDiverged, KeyboardInterrupt) as exc:
        if not console.is_terminal:
            console.line()  # end the training table's last line
        if isinstance(exc, TrainingDiverged):
            raise fail(f"{exc} ({plan.run_dir})", 1) from None
        console.print(interrupted)
        raise typer.Exit(130) from None
    return outcome


class _StopOnCtrlC:
    """Training callbacks that turn Ctrl-C into a KeyboardInterrupt at the next safe point.

    Python ignores an exception raised inside a garbage-collection callback (JAX installs
    one), so the default handler can lose a Ctrl-C and training would just go on. Here the
    handler only takes note; the next decoded block, epoch start or step raises. A second
    Ctrl-C interrupts at once.
    """

    def __init__(self, inner) -> None:
        self.inner = inner
        self.pressed = False
        self.previous = None

    def __enter__(self):
        import signal
        import threading

        if threading.current_thread() is threading.main_thread():
            self.previous = signal.signal(signal.SIGINT, self._note)
        return self

    def __exit__(self, *exc) -> None:
        import signal

        if self.previous is not None:
            signal.signal(signal.SIGINT, self.previous)

    def _note(self, signum, frame) -> None:
        import signal

        self.pressed = True
        signal.signal(signal.SIGINT, self.previous)

    def _check(self) -> None:
        if self.pressed:
            raise KeyboardInterrupt

    def on_decode(self, done: int, total: int) -> None:
        self._check()
        self.inner.on_decode(done, total)

    def on_epoch_start(self, epoch: int, epochs: int, steps: int) -> None:
        self._check()
        self.inner.on_epoch_start(epoch, epochs, steps)

    def on_step(self, step: int, steps: int, loss: float, images_per_s: float) -> None:
        self._check()
        self.inner.on_step(step, steps, loss, images_per_s)

    def __getattr__(self, name: str):
        return getattr(self.inner, name)


def _print_init(plan, console) -> None:
    """Where the weights come from, the head, the licence, and the training mode."""
    from rich.markup import escape

    from cnncli.warm_start import InitSource, describe

    if not plan.info.get("init"):
        return
    src = InitSource.from_dict(plan.info["init"])
    for line in describe(src, plan.dataset.classes):
        style = "yellow" if line.startswith("warning") else ""
        console.print(f"[{style}]{escape(line)}[/{style}]" if style else escape(line))
    t, d = plan.cfg.train, plan.cfg.data
    if t.freeze:
        mode = (
            f"--freeze: backbone frozen, features computed once, the head trains {t.epochs} epochs"
        )
        if plan.cfg.augment.preset != "none" or plan.cfg.augment.ops:
            mode += " (no augmentation: the features come from the plain images)"
    else:
        mode = (
            f"fine-tune: {t.head_epochs} epoch(s) of the head alone (h1, h2, ...), then "
            f"{t.epochs} of everything, backbone lr {t.backbone_lr or t.lr:g}, head lr {t.lr:g}"
            + (", batch norm frozen" if t.freeze_bn else "")
        )
    console.print(escape(mode))
    console.print(
        escape(
            f"input: {_input_text(d)}, {d.resize}"
            + (f" (crop_pct {d.crop_pct:g})" if d.resize == "crop" else "")
            + f", {d.interpolation}, "
            + (
                f"mean {plan.cfg.model.mean} std {plan.cfg.model.std}"
                if plan.cfg.model.mean
                else "x / 127.5 - 1"
            )
        )
    )


def _data_title(dataset) -> str:
    """The dataset table's title: where the images and the labels come from."""
    if dataset.label_source is None:
        title = f"data: {dataset.root} ({dataset.layout} layout)"
    else:
        title = f"data: {dataset.root} (labels from {Path(dataset.label_source['file']).name})"
    if dataset.multi_label:
        title += "; images per label (an image counts once for each of its labels)"
    return title


def _print_label_source(dataset, console, limit: int = 20) -> None:
    """The labels file's skipped rows (one line each, the first `limit`) and the mode."""
    from rich.markup import escape

    from cnncli.data.labels import skipped_rows

    source = dataset.label_source
    if source is not None:
        console.print(
            f"labels: {escape(source['file'])}: {source['used']} of {source['rows']} rows used"
        )
        skipped = skipped_rows(dataset)
        for line in skipped[:limit]:
            console.print(f"[yellow]skipped {escape(line)}[/yellow]", soft_wrap=True)
        if len(skipped) > limit:
            console.print(
                f"[yellow]... and {len(skipped) - limit} more skipped rows (all listed in "
                f"split.csv; `cnn doctor` shows them)[/yellow]"
            )
    if dataset.multi_label:
        images = [label for items in dataset.splits.values() for _, label in items]
        several = sum(len(label) > 1 for label in images)
        why = (
            f"{several} of {len(images)} images have more than one label"
            if several
            else "--multi-label"
        )
        console.print(
            f"[bold]multi-label mode[/bold] ({why}): sigmoid outputs, binary cross-entropy; "
            "the best epoch is the one with the highest val mAP"
        )


def _warn_dataset(plan, console) -> None:
    """Name unusual skips (links, loops, pipes) and identical files across splits or classes."""
    from rich.markup import escape

    from cnncli.doctor import quick_check

    routine = ("hidden", "not an image (file extension)")
    for path, reason in [i for i in plan.dataset.ignored if i[1] not in routine][:20]:
        console.print(
            f"[yellow]  ignored {escape(path)}: {escape(reason)}[/yellow]", soft_wrap=True
        )
    groups = quick_check(plan.dataset)
    for group in groups:
        console.print(f"[yellow]warning: {escape(group.describe())}[/yellow]")
    if groups:
        root = escape(str(plan.dataset.root))
        console.print(f"[yellow]`cnn doctor {root}` checks further[/yellow]")
