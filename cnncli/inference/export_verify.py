"""Checking an export before it is written: its logits against the Flax model's on real
(the run's val split or --check-images) and seeded noise images, as a batch and one by one."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cnncli.inference.bundle import Bundle
from cnncli.inference.exported import ExportError, Runner

MAX_ABS_DIFF = 1e-4  # largest logit difference from the Flax model an export may show
CHECK_FROM_RUN = 8  # validation images used for the check when the run's data is reachable
CHECK_SYNTHETIC = 2  # seeded noise images always added (full 0..255 range)
CHECK_MAX = 64


class VerificationError(ExportError):
    """The exported model disagrees with the Flax model; nothing was written."""


@dataclass
class Verification:
    """How the exported model compared with the Flax model on the check images."""

    images: int
    real_images: int
    source: str
    max_abs_diff: float
    argmax_agree: int
    ties: int  # images whose top-two Flax logits are closer than the limit (no argmax order)
    batch_sizes: tuple[int, ...]
    limit: float = MAX_ABS_DIFF

    @property
    def passed(self) -> bool:
        """Within the logit limit, and the same top class wherever it is well defined."""
        return self.max_abs_diff < self.limit and self.argmax_agree + self.ties >= self.images


def gather_check_images(bundle: Bundle, paths: list[str] | None) -> tuple[np.ndarray, int, str]:
    """(uint8 images, how many are real, where from): given paths, else the run's validation
    split when reachable; plus seeded noise images, so the check never runs on nothing."""
    from cnncli.data.decode import DecodeError, decode_image

    if paths:
        from cnncli.inference.predict import collect_inputs

        candidates, _ = collect_inputs(paths)
        if not candidates:
            raise ExportError(f"--check-images {' '.join(paths)}: no image files found")
        source = "--check-images"
    else:
        candidates, source = _run_images(bundle), "the run's val split"
    limit = CHECK_MAX if paths else CHECK_FROM_RUN
    arrays = []
    for path in candidates:
        if len(arrays) == limit:
            break
        try:
            arrays.append(decode_image(path, bundle.resize, bundle.channels))
        except DecodeError:
            continue
    if paths and not arrays:
        raise ExportError(f"--check-images {' '.join(paths)}: none of the files could be decoded")
    real = len(arrays)
    rng = np.random.default_rng(0)
    shape = (CHECK_SYNTHETIC, *bundle.image_hw, bundle.channels)
    arrays += list(rng.integers(0, 256, shape, dtype=np.uint8))
    return np.stack(arrays), real, source


def _run_images(bundle: Bundle) -> list[str]:
    """Validation images of the run that holds this bundle, one class after another."""
    from cnncli.data.scan import DatasetError, read_manifest
    from cnncli.run_files import MANIFEST_FILE, RUN_FILE

    run_dir = bundle.path.parent
    try:
        info = json.loads((run_dir / RUN_FILE).read_text(encoding="utf-8"))
        dataset = read_manifest(run_dir / MANIFEST_FILE, info["data_dir"])
    except (OSError, ValueError, KeyError, TypeError, DatasetError):
        return []
    items = dataset.splits.get("val") or dataset.splits.get("train") or []
    by_class: dict[int, list[str]] = {}
    for rel, label in items:
        by_class.setdefault(label, []).append(str(Path(dataset.root) / rel))
    # Round-robin over classes, so a few images still cover every class.
    columns = [by_class[k] for k in sorted(by_class)]
    return [
        col[i] for i in range(max(map(len, columns), default=0)) for col in columns if i < len(col)
    ]


def flax_logits(bundle: Bundle, images: np.ndarray) -> np.ndarray:
    """Logits of the Flax nnx model restored from the bundle, in inference mode."""
    import jax.numpy as jnp
    from flax import nnx

    from cnncli.model.flax_module import CNN
    from cnncli.model.network import normalize

    def build():
        return CNN(
            bundle.model,
            image_size=bundle.image_hw,
            channels=bundle.channels,
            num_classes=len(bundle.classes),
            rngs=nnx.Rngs(0),
        )

    graphdef, state = nnx.split(nnx.eval_shape(build))
    nnx.replace_by_pure_dict(
        state,
        {
            "params": {k: jnp.asarray(v) for k, v in bundle.params.items()},
            "stats": {k: jnp.asarray(v) for k, v in bundle.stats.items()},
        },
    )
    model = nnx.merge(graphdef, state)
    return np.asarray(model(normalize(jnp.asarray(images), bundle.model), train=False))


def verify(bundle: Bundle, run: Runner, images: np.ndarray, real: int, source: str) -> Verification:
    """Compare exported and Flax logits on images, as one batch and as a batch of one."""
    reference = flax_logits(bundle, images)
    whole = run(images)[0]
    single = run(images[:1])[0]
    diff = max(float(np.abs(whole - reference).max()), float(np.abs(single - reference[:1]).max()))
    top2 = np.sort(reference, axis=1)[:, -2:]
    tied = (top2[:, 1] - top2[:, 0]) < MAX_ABS_DIFF
    agree = np.argmax(whole, axis=1) == np.argmax(reference, axis=1)
    return Verification(
        images=len(images),
        real_images=real,
        source=source,
        max_abs_diff=diff,
        argmax_agree=int(agree.sum()),
        ties=int((tied & ~agree).sum()),
        batch_sizes=(len(images), 1),
    )
