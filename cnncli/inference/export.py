"""`cnn export`: a trained bundle as ONNX or StableHLO, verified against the Flax model before writing.

ONNX graphs are written directly with the `onnx` helper API from the flat weights and the
model config (Conv, BatchNormalization, Relu, Add, MaxPool, GlobalAveragePool, Flatten,
Gemm, Softmax at opset 17): the network is small and fixed, so a hand-built graph is easy
to read, needs no converter, and runs on any onnxruntime since 1.13. StableHLO artefacts are
`jax.export` of the pure forward pass with the weights as constants. Both take uint8 NHWC
images with a dynamic batch dimension and normalise inside (x / 127.5 - 1), and both
return (logits, probs). Dropout is absent and batch norm uses its running statistics.
Multi-label models return sigmoid probabilities, and labels.json carries each label's
decision threshold.

This module builds, checks and writes; the graphs are built in export_onnx and
export_stablehlo, checked in export_verify, and the sidecars' contents come from
export_sidecars.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from cnncli.inference.bundle import Bundle
from cnncli.inference.export_onnx import onnx_bytes
from cnncli.inference.export_sidecars import labels_json, preprocess_spec
from cnncli.inference.export_stablehlo import stablehlo_bytes
from cnncli.inference.export_verify import (
    Verification,
    VerificationError,
    gather_check_images,
    verify,
)
from cnncli.inference.exported import (
    FORMATS,
    LABELS_FILE,
    PREPROCESS_FILE,
    ExportError,
    open_onnx,
    open_stablehlo,
)


@dataclass
class ExportResult:
    """What `export_bundle` wrote and how it verified."""

    format: str
    model_path: Path
    files: list[Path]
    size_bytes: int
    verification: Verification


def export_bundle(
    bundle: Bundle, fmt: str, out_dir: str | Path, check_images: list[str] | None = None
) -> ExportResult:
    """Build the exported model, verify it against the Flax model, then write it with its sidecars.

    Nothing is written when the check fails (ExportError with the figures).
    """
    if fmt not in FORMATS:
        raise ExportError(f"unknown format {fmt!r} (choose {' or '.join(FORMATS)})")
    images, real, source = gather_check_images(bundle, check_images)
    shape = (*bundle.image_hw, bundle.channels)
    if fmt == "onnx":
        data = onnx_bytes(bundle)
        run = open_onnx(data, "exported ONNX model", shape, len(bundle.classes))
    else:
        data = stablehlo_bytes(bundle)
        run = open_stablehlo(data, "exported StableHLO model", shape, len(bundle.classes))
    check = verify(bundle, run, images, real, source)
    if not check.passed:
        raise VerificationError(
            f"{fmt} export failed verification, nothing written: max |logit diff| "
            f"{check.max_abs_diff:.3g} (limit {check.limit:g}), same top class on "
            f"{check.argmax_agree}/{check.images} images"
        )
    return ExportResult(fmt, *write_export(bundle, fmt, data, out_dir), len(data), check)


def write_export(
    bundle: Bundle, fmt: str, data: bytes, out_dir: str | Path
) -> tuple[Path, list[Path]]:
    """Write labels.json and preprocess.json, then the model file (each atomically)."""
    from cnncli.atomic import atomic_write_bytes, atomic_write_text

    out_dir = Path(out_dir)
    labels = json.dumps(labels_json(bundle), indent=2, ensure_ascii=False) + "\n"
    spec = json.dumps(preprocess_spec(bundle), indent=2, ensure_ascii=False) + "\n"
    _refuse_mismatched_sidecars(out_dir, fmt, labels, spec)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ExportError(
            f"{out_dir}: cannot create the output folder ({exc.strerror or exc})"
        ) from None
    atomic_write_text(out_dir / LABELS_FILE, labels)
    atomic_write_text(out_dir / PREPROCESS_FILE, spec)
    model_path = out_dir / FORMATS[fmt]
    # Last, so a model file never stands without the labels and spec it needs.
    atomic_write_bytes(model_path, data)
    return model_path, [model_path, out_dir / LABELS_FILE, out_dir / PREPROCESS_FILE]


def _refuse_mismatched_sidecars(out_dir: Path, fmt: str, labels: str, spec: str) -> None:
    """The two formats share labels.json and preprocess.json: never re-pair another
    model's file there with different labels."""
    others = [out_dir / name for f, name in FORMATS.items() if f != fmt]
    for other in (p for p in others if p.is_file()):
        for path, text in ((out_dir / LABELS_FILE, labels), (out_dir / PREPROCESS_FILE, spec)):
            try:
                same = path.read_text(encoding="utf-8") == text
            except (OSError, UnicodeDecodeError):
                same = False
            if not same:
                raise ExportError(
                    f"{out_dir}: holds {other.name} of a model with other labels or input "
                    f"({path.name} differs); pass another --out or delete {other.name}"
                )
