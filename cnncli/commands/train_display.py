"""What `cnn train` shows: data and label-source lines, --init's summary, the live table."""

from __future__ import annotations

from pathlib import Path

import typer

from cnncli.commands.common import fail


def input_text(data) -> str:
    """'64x64x3', plus the resize policy when it is not the centre crop."""
    height, width = data.input_hw
    text = f"{height}x{width}x{data.channels}"
    return text if data.resize == "crop" else f"{text} ({data.resize})"


def data_title(dataset) -> str:
    """The dataset table's title: where the images and the labels come from."""
    if dataset.label_source is None:
        title = f"data: {dataset.root} ({dataset.layout} layout)"
    else:
        title = f"data: {dataset.root} (labels from {Path(dataset.label_source['file']).name})"
    if dataset.multi_label:
        title += "; images per label (an image counts once for each of its labels)"
    return title


def print_label_source(dataset, console, limit: int = 20) -> None:
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


def print_split_guard(dataset, console) -> None:
    """One line when the split guard kept duplicate groups together (or fell back)."""
    from rich.markup import escape

    guard = getattr(dataset, "split_guard", None) or {}
    if guard.get("notice"):
        console.print(f"[yellow]split guard: {escape(guard['notice'])}[/yellow]")
    if guard.get("split") == "fraction" and guard.get("groups"):
        console.print(
            f"split guard ({guard['mode']}): {guard['groups']} group(s) of duplicates, "
            f"{guard['images']} images, kept on one side of the split "
            f"({guard.get('images_moved', 0)} moved; {guard.get('seconds', 0):.1f} s)"
        )
    elif guard.get("split") == "given" and guard.get("crossing"):
        console.print(
            f"[yellow]split guard: {guard['crossing']} image(s) have a duplicate on the other "
            "side of the given split (see cnn doctor)[/yellow]"
        )


def warn_dataset(plan, console) -> None:
    """Name unusual skips (links, loops, pipes) and identical files across splits or classes."""
    from rich.markup import escape

    from cnncli.quality.doctor import quick_check

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


def print_init(plan, console) -> None:
    """Where the weights come from, the head, the licence, and the training mode."""
    from rich.markup import escape

    from cnncli.training.warm_start import InitSource, describe

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
    elif t.tune_blocks:
        mode = (
            f"fine-tune the top {t.tune_blocks} blocks: activations below them cached once (the "
            f"image and its mirror), {t.head_epochs} epoch(s) of the head alone (h1, h2, ...), "
            f"then {t.epochs} of the top blocks + head, backbone lr {t.backbone_lr or t.lr:g}, "
            f"head lr {t.lr:g}, batch norm frozen"
        )
    else:
        mode = (
            f"fine-tune: {t.head_epochs} epoch(s) of the head alone (h1, h2, ...), then "
            f"{t.epochs} of everything, backbone lr {t.backbone_lr or t.lr:g}, head lr {t.lr:g}"
            + (", batch norm frozen" if t.freeze_bn else "")
        )
    console.print(escape(mode))
    console.print(
        escape(
            f"input: {input_text(d)}, {d.resize}"
            + (f" (crop_pct {d.crop_pct:g})" if d.resize == "crop" else "")
            + f", {d.interpolation}, "
            + (
                f"mean {plan.cfg.model.mean} std {plan.cfg.model.std}"
                if plan.cfg.model.mean
                else "x / 127.5 - 1"
            )
        )
    )


def run_with_live_table(console, plan, interrupted: str):
    """execute_run(plan) under the live training table and the Ctrl-C guard; the outcome.

    A diverged run is a one-line error (exit 1); Ctrl-C prints `interrupted` and exits 130.
    """
    from cnncli.reporting.report import TrainingDisplay
    from cnncli.training.epochs import TrainingDiverged
    from cnncli.training.execute import execute_run

    display = TrainingDisplay(console, multi_label=plan.dataset.multi_label)
    try:
        with display, StopOnCtrlC(display) as guarded:
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


class StopOnCtrlC:
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
