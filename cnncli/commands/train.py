"""`cnn train`: parse flags into a RunConfig, plan the run, show progress."""

from __future__ import annotations

from pathlib import Path

from cnncli.commands import train_options as opt
from cnncli.commands.common import (
    ImageSizeOpt,
    LabelDelimiterOpt,
    LabelsOpt,
    MultiLabelOpt,
    QuietOpt,
    fail,
    handled_errors,
    image_size_option,
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
from cnncli.commands.train_display import (
    data_title,
    input_text,
    print_init,
    print_label_source,
    print_split_guard,
    run_with_live_table,
    warn_dataset,
)
from cnncli.training.new_run import Given, configure, int_list, plan_run
from cnncli.training.xla_env import configure_xla


def train(
    data_dir: opt.DataDirOpt = None,
    config: opt.ConfigOpt = None,
    out: opt.OutOpt = None,
    resume: opt.ResumeOpt = None,
    labels: LabelsOpt = None,
    label_delimiter: LabelDelimiterOpt = ";",
    multi_label: MultiLabelOpt = False,
    image_size: ImageSizeOpt = None,
    resize: opt.ResizeOpt = None,
    pad_color: opt.PadColorOpt = None,
    channels: opt.ChannelsOpt = None,
    filters: opt.FiltersOpt = None,
    kernel: opt.KernelOpt = None,
    stride: opt.StrideOpt = None,
    padding: opt.PaddingOpt = None,
    pool: opt.PoolOpt = None,
    batch_norm: opt.BatchNormOpt = None,
    global_pool: opt.GlobalPoolOpt = None,
    dense: opt.DenseOpt = None,
    dropout: opt.DropoutOpt = None,
    epochs: opt.EpochsOpt = None,
    batch_size: opt.BatchSizeOpt = None,
    optimizer: opt.OptimizerOpt = None,
    lr: opt.LrOpt = None,
    weight_decay: opt.WeightDecayOpt = None,
    momentum: opt.MomentumOpt = None,
    warmup_epochs: opt.WarmupEpochsOpt = None,
    schedule: opt.ScheduleOpt = None,
    label_smoothing: opt.LabelSmoothingOpt = None,
    augment: opt.AugmentOpt = None,
    val_fraction: opt.ValFractionOpt = None,
    split_guard: opt.SplitGuardOpt = None,
    seed: opt.SeedOpt = None,
    cache_memory: opt.CacheMemoryOpt = None,
    follow_symlinks: opt.FollowSymlinksOpt = None,
    model: opt.ModelOpt = None,
    patience: opt.PatienceOpt = None,
    time_limit: opt.TimeLimitOpt = None,
    class_weights: opt.ClassWeightsOpt = None,
    sampler: opt.SamplerOpt = None,
    devices: opt.DevicesOpt = None,
    shards: opt.ShardsOpt = None,
    large_batch: opt.LargeBatchOpt = None,
    precision: opt.PrecisionOpt = None,
    data_placement: opt.DataPlacementOpt = None,
    steps_per_dispatch: opt.StepsPerDispatchOpt = None,
    coordinator: opt.CoordinatorOpt = None,
    num_processes: opt.NumProcessesOpt = None,
    process_id: opt.ProcessIdOpt = None,
    recipe: opt.RecipeOpt = None,
    time_budget: opt.TimeBudgetOpt = None,
    folds: opt.FoldsOpt = None,
    tensorboard: opt.TensorboardOpt = False,
    init: opt.InitOpt = None,
    freeze: opt.FreezeOpt = None,
    head_epochs: opt.HeadEpochsOpt = None,
    backbone_lr: opt.BackboneLrOpt = None,
    freeze_bn: opt.FreezeBnOpt = None,
    tune_blocks: opt.TuneBlocksOpt = None,
    find_lr: opt.FindLrOpt = False,
    quiet: QuietOpt = False,
    json_out: opt.JsonOpt = False,
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


def _is_cross_validation(run_dir: Path) -> bool:
    from cnncli.training.crossval import is_cross_validation

    return is_cross_validation(run_dir)


def _find_lr(data_dir, given: Given, out, console, json_out: bool, labels=None) -> None:
    """The learning-rate range test: a table, lr_find.png and a suggestion."""
    import json

    from rich.table import Table

    from cnncli.training.lr_finder import find_lr
    from cnncli.training.run import plan_new_run

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
    from cnncli.training.run import write_summary

    console.print(
        f"run folder: [bold]{plan.run_dir}[/bold]" + ("  (resuming)" if plan.resume else "")
    )
    console.print(dataset_table(class_counts(plan.dataset), data_title(plan.dataset)))
    print_label_source(plan.dataset, console)
    if not plan.resume:
        print_split_guard(plan.dataset, console)
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
    from cnncli.training.session import run_summary, train_with_check

    def restarting(changes) -> None:
        shown = "; ".join(c["reason"] for c in changes)
        console.print(
            escape(f"restarting from scratch (attempt 2; attempt 1 kept in attempts/1): {shown}")
        )

    plan, outcome = train_with_check(
        plan, lambda p: run_with_live_table(console, p, interrupted), restarting, processes
    )
    for path, reason in outcome.skipped:
        console.print(f"[yellow]skipped {path}: {reason}[/yellow]", soft_wrap=True)
    if getattr(outcome, "stopped", ""):
        console.print(f"stopped early: {outcome.stopped}")
    if outcome.finished_before:
        console.print(
            f"run already finished ({len(outcome.history)} epochs); nothing to do. Model: {plan.run_dir / 'model'}"
        )
    summary = run_summary(plan, outcome)
    warning = summary.get("warning", "")
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
    elif not outcome.finished_before and not outcome.val_size:
        console.print(
            f"[yellow]no validation images[/yellow] (no accuracy to report); model/ holds "
            f"epoch {outcome.best_epoch}; {len(outcome.skipped)} file(s) skipped; model saved "
            f"to [bold]{plan.run_dir / 'model'}[/bold]"
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
