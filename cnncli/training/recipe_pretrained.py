"""Photo-like data -> start from the packaged ImageNet EfficientNet-Lite0, and how to train it.

A pure function of a DatasetStats (and whether an accelerator is present), like recipe.py:
every choice comes with its reason. Photos of a few hundred to tens of thousands of images
get the pretrained start, which needs no download (its weights ship in a dependency);
small grey images (digits, Fashion-MNIST-like) and multi-label data keep the from-scratch
recipe. The training mode follows what fits two CPU cores (docs/results.md):
- under FREEZE_BELOW training images: features computed once (image and mirror image),
  a linear head trains in seconds; fine-tuning blocks on so few images overfits;
- up to TUNE_UP_TO: the top TUNE_BLOCKS blocks fine-tune on cached activations;
- beyond that, or on an accelerator, the choices adapt (head only on a CPU: caching a
  larger set costs more than its time goal; everything on an accelerator).
"""

from __future__ import annotations

from cnncli.data.stats import DatasetStats
from cnncli.training.recipe import Choice, Recipe

BACKBONE = "efficientnet_lite0"
# Photos: the median shorter side at least this many pixels (smaller: icons, digits).
MIN_PHOTO_SIDE = 48
# Colour is not required above this side (X-rays, scans, micrographs are photos too).
MIN_GREY_SIDE = 64
FREEZE_BELOW = 1000
TUNE_UP_TO = 20000
TUNE_BLOCKS = 5
TUNE_EPOCHS = 5


def photo_like(s: DatasetStats) -> tuple[bool, str]:
    """Whether the data looks like photos that ImageNet features serve, and why (or why not)."""
    side = s.median_short_side
    if s.multi_label:
        return False, "multi-label data: the pretrained start is single-label for now"
    if not s.sampled or side == 0:
        return False, "no image header could be read"
    if s.train_images < 2 * max(len(s.classes), 1):
        return False, "too few training images"
    if side < MIN_PHOTO_SIDE or (s.grayscale and side < MIN_GREY_SIDE):
        kind = "grey" if s.grayscale else "colour"
        return False, f"small {kind} images ({side} px): the network from scratch fits them"
    kind = "grey images" if s.grayscale else "colour photos"
    return True, f"{kind} of {s.median_width}x{s.median_height} px (median)"


def pretrained_recipe(s: DatasetStats, accelerator: bool = False) -> Recipe | None:
    """The pretrained recipe for photo-like data, or None (the from-scratch recipe applies)."""
    ok, why = photo_like(s)
    if not ok:
        return None
    n = s.train_images
    choices = [
        Choice(
            "train.init",
            BACKBONE,
            f"{why}, {n:,} training images: ImageNet features (EfficientNet-Lite0, ships "
            "with cnn, nothing downloaded); --init none trains from scratch",
        )
    ]
    if accelerator:
        choices.append(Choice("train.tune_blocks", 0, "an accelerator: every block fine-tunes"))
    elif n < FREEZE_BELOW:
        choices.append(
            Choice(
                "train.freeze",
                True,
                f"under {FREEZE_BELOW:,} images: features computed once, a linear head "
                "trains in seconds (fine-tuning blocks overfits this few)",
            )
        )
    elif n <= TUNE_UP_TO:
        choices.append(
            Choice(
                "train.tune_blocks",
                TUNE_BLOCKS,
                f"{n:,} images on a CPU: the top {TUNE_BLOCKS} blocks fine-tune on cached "
                "activations of the rest",
            )
        )
        choices.append(
            Choice(
                "train.epochs",
                TUNE_EPOCHS,
                "a fine-tune converges in a few epochs (clothing photos, 3,068 images: "
                "val 87 -> 92 % over epochs 1-4)",
            )
        )
        return Recipe("pretrained", choices, note=f"pretrained start: {why}")
    else:
        choices.append(
            Choice(
                "train.freeze",
                True,
                f"over {TUNE_UP_TO:,} images on a CPU: one pass for the features, then the head",
            )
        )
    choices.append(Choice("train.label_smoothing", 0.1, "softer targets for the new head"))
    return Recipe("pretrained", choices, note=f"pretrained start: {why}")
