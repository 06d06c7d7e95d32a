"""`cnn train`'s options, declared once as Annotated aliases (the command's signature reads
one line per option; `cnn summary` reuses the network ones)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cnncli.commands.common import Opt

DataDirOpt = Annotated[
    Path | None,
    typer.Argument(
        help="Folder with <class>/ subfolders (or train/ and val/), or the folder the "
        "paths of --labels FILE are relative to.",
        show_default=False,
    ),
]
ConfigOpt = Annotated[
    Path | None,
    Opt("--config", help="TOML config (e.g. a run's config.toml); flags override it."),
]
OutOpt = Annotated[
    Path | None, Opt("--out", help="Run folder (default: runs/train, runs/train2, ...).")
]
ResumeOpt = Annotated[
    Path | None,
    Opt("--resume", help="Continue the run in this folder from its last checkpoint."),
]
ResizeOpt = Annotated[
    str | None,
    Opt(
        "--resize",
        help="How other shapes become the input size: crop (centre), pad (whole image, "
        "letterboxed) or squish (stretched) (default: crop).",
    ),
]
PadColorOpt = Annotated[
    str | None,
    Opt(
        "--pad-color",
        help="Fill of --resize pad: grey level, R,G,B or #rrggbb (default: 128,128,128).",
    ),
]
ChannelsOpt = Annotated[
    int | None, Opt("--channels", help="1 (grayscale) or 3 (RGB) (default: 3).")
]
FiltersOpt = Annotated[
    str | None,
    Opt("--filters", help="Filters per conv block, comma-separated (default: 32,64,128)."),
]
KernelOpt = Annotated[int | None, Opt("--kernel", help="Conv kernel size F (default: 3).")]
StrideOpt = Annotated[int | None, Opt("--stride", help="Conv stride S (default: 1).")]
PaddingOpt = Annotated[
    str | None,
    Opt("--padding", help="Conv padding P: same, valid or an integer (default: same)."),
]
PoolOpt = Annotated[
    int | None,
    Opt("--pool", help="Max-pool size (and stride) after each conv; 0 = none (default: 2)."),
]
BatchNormOpt = Annotated[
    bool | None,
    Opt("--batch-norm/--no-batch-norm", help="Batch norm after each conv (default: off)."),
]
GlobalPoolOpt = Annotated[
    bool | None,
    Opt(
        "--global-pool/--flatten",
        help="Global average pool instead of flatten (default: flatten).",
    ),
]
DenseOpt = Annotated[
    str | None,
    Opt(
        "--dense",
        help="Fully connected layer sizes, comma-separated; '' for none (default: 128).",
    ),
]
DropoutOpt = Annotated[
    float | None, Opt("--dropout", help="Dropout after each dense layer (default: 0.3).")
]
EpochsOpt = Annotated[int | None, Opt("--epochs", help="Epochs (default: 15).")]
BatchSizeOpt = Annotated[int | None, Opt("--batch-size", help="Batch size (default: 64).")]
OptimizerOpt = Annotated[str | None, Opt("--optimizer", help="adam, adamw or sgd (default: adam).")]
LrOpt = Annotated[float | None, Opt("--lr", help="Peak learning rate (default: 0.001).")]
WeightDecayOpt = Annotated[
    float | None, Opt("--weight-decay", help="Weight decay for adamw/sgd (default: 1e-4).")
]
MomentumOpt = Annotated[float | None, Opt("--momentum", help="SGD momentum (default: 0.9).")]
WarmupEpochsOpt = Annotated[
    float | None, Opt("--warmup-epochs", help="Linear warm-up length (default: 1).")
]
ScheduleOpt = Annotated[
    str | None, Opt("--schedule", help="cosine or constant after warm-up (default: cosine).")
]
LabelSmoothingOpt = Annotated[
    float | None, Opt("--label-smoothing", help="Label smoothing (default: 0).")
]
AugmentOpt = Annotated[
    str | None,
    Opt(
        "--augment",
        help="Preset (none, light, default, strong) or ops, e.g. flip,translate=0.1,zoom=0.2,rotate=15 (default: none).",
    ),
]
ValFractionOpt = Annotated[
    float | None,
    Opt(
        "--val-fraction",
        help="Validation share per class when there is no val/ folder (default: 0.2).",
    ),
]
SplitGuardOpt = Annotated[
    str | None,
    Opt(
        "--split-guard",
        help="Keep duplicates on one side of the split: near (identical and near-duplicate "
        "images, as `cnn doctor` finds them), exact (identical only) or off (default: near).",
    ),
]
SeedOpt = Annotated[
    int | None,
    Opt("--seed", help="Seed for the split, init, order, dropout and augmentation (default: 0)."),
]
CacheMemoryOpt = Annotated[
    int | None,
    Opt(
        "--cache-memory",
        help="MiB of decoded images kept in RAM; beyond it a memory-mapped file (default: 2048).",
    ),
]
FollowSymlinksOpt = Annotated[
    bool | None,
    Opt("--follow-symlinks", help="Follow symlinks that point outside the data folder."),
]
ModelOpt = Annotated[
    str | None,
    Opt(
        "--model",
        help="Architecture preset: tiny, small, small-bn, compact, medium or resnet "
        "(default: chosen by the recipe; small with --recipe fixed).",
    ),
]
PatienceOpt = Annotated[
    int | None,
    Opt(
        "--patience",
        help="Stop after this many epochs without a val accuracy gain (default: off).",
    ),
]
TimeLimitOpt = Annotated[
    float | None,
    Opt(
        "--time-limit",
        help="Stop at the epoch end before this many minutes pass (default: off).",
    ),
]
ClassWeightsOpt = Annotated[
    str | None,
    Opt("--class-weights", help="none, or auto: weight the loss by inverse class frequency."),
]
SamplerOpt = Annotated[
    str | None,
    Opt(
        "--sampler",
        help="shuffle (each image once per epoch) or balanced (classes equally often).",
    ),
]
DevicesOpt = Annotated[
    int | None,
    Opt(
        "--devices",
        help="Data-parallel over N devices (0 = all visible); on a CPU, N host devices (default: 1).",
    ),
]
ShardsOpt = Annotated[
    int | None,
    Opt(
        "--shards",
        help="Split the data order into N shards (default: one per process); one process with --shards N repeats an N-process run.",
    ),
]
LargeBatchOpt = Annotated[
    int | None,
    Opt(
        "--large-batch",
        help="Accelerator preset: scale the recipe to N images a step (lr x sqrt(N/batch) "
        "for adam/adamw, x N/batch for sgd; warm-up >= 2 epochs), e.g. 1024.",
    ),
]
PrecisionOpt = Annotated[
    str | None,
    Opt(
        "--precision",
        help="fp32, or bf16: bfloat16 activations and convolutions, float32 weights, "
        "optimizer state, batch-norm statistics and loss (default: fp32).",
    ),
]
DataPlacementOpt = Annotated[
    str | None,
    Opt(
        "--data-placement",
        help="auto, device (train split on the device, batches gathered there), chunked "
        "(streamed in chunks) or host (copied per batch) (default: auto).",
    ),
]
StepsPerDispatchOpt = Annotated[
    int | None,
    Opt(
        "--steps-per-dispatch",
        help="Train steps per call to the device (lax.scan); 0 = auto: 1 on a CPU, "
        "~100k images on a GPU/TPU (default: 0).",
    ),
]
CoordinatorOpt = Annotated[
    str | None,
    Opt(
        "--coordinator",
        envvar="CNN_COORDINATOR",
        help="Multi-host: HOST:PORT of process 0, or auto (SLURM, Open MPI, Cloud TPU...).",
    ),
]
NumProcessesOpt = Annotated[
    int | None,
    Opt("--num-processes", envvar="CNN_NUM_PROCESSES", help="Multi-host: processes in all."),
]
ProcessIdOpt = Annotated[
    int | None,
    Opt("--process-id", envvar="CNN_PROCESS_ID", help="Multi-host: this process, 0..N-1."),
]
RecipeOpt = Annotated[
    str | None,
    Opt(
        "--recipe",
        help="auto: choose input size, channels, model, augmentation, epochs... from the "
        "data (flags and --config win); fixed: the old fixed defaults (64x64 RGB, small "
        "CNN, 15 epochs, no augmentation) (default: auto).",
    ),
]
TimeBudgetOpt = Annotated[
    float | None,
    Opt(
        "--time-budget",
        help="Minutes to use: race 3-6 candidate recipes on the val split (successive "
        "halving), then finish training the best one within the budget.",
    ),
]
FoldsOpt = Annotated[
    int | None,
    Opt(
        "--folds",
        help="K-fold cross-validation: train K models, each validated on another 1/K "
        "(stratified); report the spread and write oof.csv.",
        show_default=False,
    ),
]
TensorboardOpt = Annotated[
    bool,
    Opt(
        "--tensorboard",
        help="Write TensorBoard event files to RUN/tb/ (pip install 'cnn[tensorboard]').",
    ),
]
InitOpt = Annotated[
    str | None,
    Opt(
        "--init",
        help="Start from weights: efficientnet_lite0 (ImageNet, ships with cnn: no "
        "download), a backbone from the Hub (resnet18, resnet18.tv_in1k, "
        "resnet50; downloaded once, needs cnn[pretrained]), a model.safetensors file or "
        "timm-layout folder (offline), or a cnn run folder (warm start, classes matched "
        "by name).",
    ),
]
FreezeOpt = Annotated[
    bool | None,
    Opt(
        "--freeze",
        help="With --init: keep the backbone frozen; its features are computed once and "
        "only the new head trains (seconds; best for a few images per class).",
    ),
]
HeadEpochsOpt = Annotated[
    int | None,
    Opt(
        "--head-epochs",
        help="With --init: epochs of the head alone (on cached features) before "
        "fine-tuning everything (default: 5 pretrained, 3 from a run).",
    ),
]
BackboneLrOpt = Annotated[
    float | None,
    Opt(
        "--backbone-lr",
        help="With --init: learning rate of the backbone while fine-tuning (default: lr / 10).",
    ),
]
FreezeBnOpt = Annotated[
    bool | None,
    Opt(
        "--freeze-bn",
        help="With --init: batch norm keeps its running statistics while fine-tuning "
        "(for small batches).",
    ),
]
TuneBlocksOpt = Annotated[
    int | None,
    Opt(
        "--tune-blocks",
        help="With an EfficientNet-Lite --init: fine-tune only the last N blocks (and the "
        "head) on cached activations of the blocks below, batch norm frozen; 0 = all.",
    ),
]
FindLrOpt = Annotated[
    bool,
    Opt(
        "--find-lr",
        help="Run a learning-rate range test instead of training; plots and suggests an lr.",
    ),
]
JsonOpt = Annotated[
    bool, Opt("--json", help="Print a JSON summary on stdout (progress goes to stderr).")
]
