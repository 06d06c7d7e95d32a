"""`cnn train`: parse flags into a RunConfig, plan the run, show progress."""

from __future__ import annotations

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
    user_errors,
    write_run_report,
)
from cnncli.commands.train_cluster import (
    join_cluster,
    leave_cluster_on_error,
    plan_across_processes,
    request_host_devices,
)
from cnncli.commands.train_config import Given, configure, plan_run
from cnncli.commands.train_display import (
    data_title,
    input_text,
    print_init,
    print_label_source,
    run_with_live_table,
    warn_dataset,
)
from cnncli.training.xla_env import configure_xla


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
    split_guard: Annotated[
        str | None,
        Opt(
            "--split-guard",
            help="Keep duplicates on one side of the split: near (identical and near-duplicate "
            "images, as `cnn doctor` finds them), exact (identical only) or off (default: near).",
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
            help="Start from weights: efficientnet_lite0 (ImageNet, ships with cnn: no "
            "download), a backbone from the Hub (resnet18, resnet18.tv_in1k, "
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
    tune_blocks: Annotated[
        int | None,
        Opt(
            "--tune-blocks",
            help="With an EfficientNet-Lite --init: fine-tune only the last N blocks (and the "
            "head) on cached activations of the blocks below, batch norm frozen; 0 = all.",
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
    with leave_cluster_on_error(), handled_errors():
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
        from cnncli.reporting.report import make_console
        from cnncli.training.distributed import resolve_cluster

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
                "data.split_guard": split_guard,
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
                "train.tune_blocks": tune_blocks,
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
        rank, processes = join_cluster(cluster)
        console = make_console(to_stderr=json_out, quiet=quiet or rank > 0)
        given = Given(config, model, augment, overrides, conv, processes, recipe or "auto")
        if folds is not None or (resume is not None and _is_cross_validation(resume)):
            from cnncli.commands.train_folds import run_folds

            run_folds(data_dir, given, out, folds, label_source, console, json_out, resume)
            return
        if find_lr:
            _find_lr(data_dir, given, out, console, json_out, label_source)
            return

        def make_plan():
            return plan_run(data_dir, given, out, resume, label_source)

        plan = make_plan() if cluster is None else plan_across_processes(make_plan, rank)
        request_host_devices(plan.cfg.train.devices)
        if time_budget is not None:
            from cnncli.commands.train_budget import race_recipes

            plan = race_recipes(plan, given, time_budget, console)
        try:
            _run_training(plan, console, json_out, quiet, rank, processes)
        except user_errors():  # e.g. weights that fail to load: no half-made run stays
            if not plan.resume and rank == 0:
                from cnncli.training.run import discard_unstarted

                discard_unstarted(plan.run_dir)
            raise


def _stepped_down(plan):
    """(config, changes) of the restart the learning check may ask for: runs of the
    automatic from-scratch recipe only (not a resume, a --time-budget race, --init or
    multi-label data), and only when some regularisation is left to step down."""
    from cnncli.training.recipe import step_down

    recipe = plan.recipe
    if recipe is None or "race" in recipe or plan.resume or plan.dataset.multi_label:
        return None
    if plan.cfg.train.init or plan.info.get("init"):
        return None
    cfg, changes = step_down(plan.cfg, set(recipe.get("explicit", [])))
    return (cfg, changes) if changes else None


def _prediction_warning(plan, outcome) -> str:
    """The end-of-run warning for a model whose val predictions fall on one class or whose
    val accuracy is near the largest class's share ('' when there is nothing to say)."""
    from cnncli.data.scan import class_counts
    from cnncli.reporting.reportdata import prediction_warning

    if outcome.finished_before or plan.dataset.multi_label or not outcome.val_predicted:
        return ""
    counts = class_counts(plan.dataset)
    true = [counts[c].get("val", 0) for c in plan.dataset.classes]
    return prediction_warning(
        outcome.val_predicted, true, plan.dataset.classes, outcome.best_val_acc, "validation"
    )


def _is_cross_validation(run_dir: Path) -> bool:
    from cnncli.training.crossval import is_cross_validation

    return is_cross_validation(run_dir)


def _find_lr(data_dir, given: Given, out, console, json_out: bool, labels=None) -> None:
    """The learning-rate range test: a table, lr_find.png and a suggestion."""
    import json

    from rich.table import Table

    from cnncli.training.run import find_lr, plan_new_run

    cfg, dataset, _ = configure(data_dir, given, labels)
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


def _run_training(
    plan, console, json_out: bool, quiet: bool, rank: int = 0, processes: int = 1
) -> None:
    import json

    from rich.markup import escape

    from cnncli.data.scan import class_counts
    from cnncli.reporting.report import dataset_table, layers_table
    from cnncli.training.run import read_attempts, write_summary

    console.print(
        f"run folder: [bold]{plan.run_dir}[/bold]" + ("  (resuming)" if plan.resume else "")
    )
    console.print(dataset_table(class_counts(plan.dataset), data_title(plan.dataset)))
    print_label_source(plan.dataset, console)
    if plan.dataset.ignored:
        console.print(
            f"[yellow]ignored {len(plan.dataset.ignored)} non-image or unreachable file(s)[/yellow]"
        )
    if rank == 0:
        warn_dataset(plan, console)
    if plan.recipe is not None and "race" not in plan.recipe:
        from cnncli.reporting.report import recipe_table

        console.print(recipe_table(plan.recipe["rows"], "recipe (chosen from the data; flags win)"))
    print_init(plan, console)
    if plan.cfg.model.backbone:  # one row per block; `cnn summary` shows every layer
        from cnncli.reporting.report import block_rows

        title = f"network for {input_text(plan.cfg.data)} input, one row per block"
        console.print(layers_table(block_rows(plan.layers), title))
    else:
        console.print(layers_table(plan.layers, f"network for {input_text(plan.cfg.data)} input"))

    interrupted = (
        "[yellow]interrupted; finished epochs are checkpointed. Resume with: "
        f"cnn train --resume {plan.run_dir}[/yellow]"
    )
    restart = _stepped_down(plan) if processes == 1 else None
    plan.stop_when_not_learning = restart is not None
    outcome = run_with_live_table(console, plan, interrupted)
    if restart is not None and outcome.stopped.startswith("not learning"):
        from cnncli.training.run import restart_from_scratch

        cfg, changes = restart
        plan = restart_from_scratch(plan, outcome, cfg, changes)
        shown = "; ".join(c["reason"] for c in changes)
        console.print(
            escape(f"restarting from scratch (attempt 2; attempt 1 kept in attempts/1): {shown}")
        )
        outcome = run_with_live_table(console, plan, interrupted)
    for path, reason in outcome.skipped:
        console.print(f"[yellow]skipped {path}: {reason}[/yellow]", soft_wrap=True)
    if getattr(outcome, "stopped", ""):
        console.print(f"stopped early: {outcome.stopped}")
    attempts = read_attempts(plan.run_dir)
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
    if not outcome.finished_before and not plan.dataset.multi_label:
        summary["learning_check"] = "fired" if outcome.not_learning else "passed"
    if outcome.not_learning:
        summary["not_learning"] = outcome.not_learning
    if attempts:
        summary["attempts"] = attempts
    warning = _prediction_warning(plan, outcome)
    if warning:
        summary["warning"] = warning
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
    if warning:
        console.print(f"[bold yellow]warning:[/bold yellow] {escape(warning)}")
    if report is not None:
        console.print(f"report: [bold]{report}[/bold]")
    if json_out:
        print(json.dumps(summary))
