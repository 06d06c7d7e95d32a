"""`cnn train DIR --folds K`: K stratified cross-validation runs, their spread and oof.csv."""

from __future__ import annotations

from rich.markup import escape

from cnncli.commands.common import fail


def run_folds(data_dir, given, out, k: int, labels, console, json_out: bool, resume=None) -> None:
    """Train one model per fold (RUN/fold1..k), then write oof.csv, folds.csv and cv.json.

    `given` is train's record of the user's flags; the recipe (unless --recipe fixed) is
    chosen once from the whole data set and used for every fold. With `resume` (a K-fold
    run folder) the unfinished folds continue from their checkpoints.
    """
    import json
    import shutil

    from rich.progress import Progress

    from cnncli.training.crossval import decode_all, write_results

    cv, recipe = _start(data_dir, given, out, k, labels, resume)
    _print_plan(console, cv, recipe, resume is not None)
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("decoding", total=len(cv.items))
        loaded = decode_all(cv, lambda done, total: progress.update(task, completed=done))
    results = [_train_fold(console, cv, fold, loaded) for fold in range(cv.k)]
    del loaded
    shutil.rmtree(cv.run_dir / "cache", ignore_errors=True)
    summary = write_results(cv, results)
    _print_summary(console, summary)
    if json_out:
        print(json.dumps(summary))


def _start(data_dir, given, out, k: int, labels, resume):
    """(CrossValidation, recipe info or None): a new K-fold run folder, or the one resumed."""
    from cnncli.training.crossval import plan_cross_validation, resume_cross_validation
    from cnncli.training.new_run import configure, with_init
    from cnncli.training.run import write_recipe
    from cnncli.training.tblog import tensorboard_missing

    if resume is not None:
        return resume_cross_validation(resume), None
    extra = None
    if (given.overrides or {}).get("train.init"):  # --init brings its own recipe
        cfg, dataset, src = with_init(data_dir, given, labels)
        recipe, extra = None, {"init": src.as_dict()}
    else:
        cfg, dataset, recipe = configure(data_dir, given, labels)
    if cfg.log.tensorboard and tensorboard_missing():  # before the run folder is made
        raise fail(tensorboard_missing())
    cv = plan_cross_validation(data_dir, cfg, out, k, labels, dataset=dataset, extra=extra)
    if recipe is not None:
        write_recipe(cv.run_dir, recipe)
    return cv, recipe


def _print_plan(console, cv, recipe, resuming: bool) -> None:
    """The run folder, how the images were dealt into folds, the recipe and the network."""
    from cnncli.commands.train_display import data_title, input_text
    from cnncli.reporting.report import layers_table, recipe_table

    sizes = sorted(len(p.dataset.splits["val"]) for p in cv.plans)
    how = "iteratively stratified by label" if cv.dataset.multi_label else "stratified by class"
    note = "  (resuming)" if resuming else ""
    console.print(f"run folder: [bold]{escape(str(cv.run_dir))}[/bold]{note}")
    console.print(
        f"{escape(data_title(cv.dataset))}: {len(cv.items)} images (train and val pooled) in "
        f"{cv.k} folds of {sizes[0]}-{sizes[-1]} images, {how}"
    )
    if recipe is not None:
        console.print(recipe_table(recipe["rows"], "recipe (chosen from the data; flags win)"))
    title = f"network for {input_text(cv.cfg.data)} input"
    console.print(layers_table(cv.plans[0].layers, title))


def _train_fold(console, cv, fold: int, loaded):
    """Train (or finish) one fold with the live table; its FoldResult with the OOF rows."""
    import shutil

    # The per-run piece of `cnn train`: the live table, Ctrl-C at a safe point.
    from cnncli.commands.train_display import run_with_live_table
    from cnncli.training.crossval import fold_probabilities, fold_result, seed_fold_cache

    plan = cv.plans[fold]
    seed_fold_cache(cv, fold, loaded)
    console.print(f"[bold]fold {fold + 1}/{cv.k}[/bold]: {escape(str(plan.run_dir))}")
    outcome = run_with_live_table(
        console,
        plan,
        f"[yellow]interrupted in fold {fold + 1}; finished epochs are checkpointed. "
        f"Resume with: cnn train --resume {escape(str(cv.run_dir))}[/yellow]",
    )
    if outcome.finished_before:
        console.print(f"fold {fold + 1} had finished ({len(outcome.history)} epochs)")
    for path, reason in outcome.skipped:
        console.print(f"[yellow]skipped {escape(path)}: {escape(reason)}[/yellow]")
    result = fold_result(cv, fold, outcome, fold_probabilities(plan))
    # Each fold's cache is a copy of the data set (cut from RUN/cache); K are not kept.
    shutil.rmtree(plan.run_dir / "cache", ignore_errors=True)
    return result


def _print_summary(console, summary: dict) -> None:
    """The folds table, then mean +- std (min, max) of val accuracy (and mAP) in one line."""
    from cnncli.reporting.report import folds_table

    console.print(folds_table(summary))
    acc = summary["val_acc"]
    line = (
        f"val acc {100 * acc['mean']:.1f}% +- {100 * acc['std']:.1f} (std over "
        f"{summary['k']} folds, min {100 * acc['min']:.1f}%, max {100 * acc['max']:.1f}%)"
    )
    if "val_map" in summary:
        m = summary["val_map"]
        line += (
            f"; val mAP {m['mean']:.4f} +- {m['std']:.4f} (min {m['min']:.4f}, max {m['max']:.4f})"
        )
    if "oof_accuracy" in summary:
        line += f"; out-of-fold accuracy {100 * summary['oof_accuracy']:.1f}%"
    console.print(line)
    console.print(
        f"wrote oof.csv ({summary['oof_images']} images), folds.csv and cv.json to "
        f"[bold]{escape(str(summary['run_dir']))}[/bold]"
    )
