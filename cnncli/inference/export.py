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

`--int8` quantizes the checked ONNX graph (quantize.py) and writes model.int8.onnx only
when its val accuracy is within --max-drop points of the float model's.

This module builds, checks and writes; the graphs are built in export_onnx and
export_stablehlo, checked in export_verify, quantized in quantize, and the sidecars'
contents come from export_sidecars.
"""

from __future__ import annotations

import json
from collections.abc import Callable
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
    INT8_ONNX_FILE,
    INT8_REPORT_FILE,
    LABELS_FILE,
    MODEL_FILES,
    PREPROCESS_FILE,
    ExportError,
    open_onnx,
    open_stablehlo,
)
from cnncli.inference.quantize import (
    Int8Check,
    calibration_images,
    compare_accuracy,
    quantize_onnx,
    refusal,
)


@dataclass
class ExportResult:
    """What `export_bundle` wrote and how it verified."""

    format: str
    model_path: Path
    files: list[Path]
    size_bytes: int
    verification: Verification
    int8: Int8Check | None = None  # --int8: the int8 model against the float one


def export_bundle(
    bundle: Bundle,
    fmt: str,
    out_dir: str | Path,
    check_images: list[str] | None = None,
    *,
    int8: bool = False,
    max_drop: float = 1.0,
    progress: Callable[[str], None] | None = None,
) -> ExportResult:
    """Build the exported model, verify it against the Flax model, then write it with its sidecars.

    int8 (ONNX only): quantize the verified float graph, score both on the run's val split
    and write model.int8.onnx only when accuracy drops by at most max_drop points.
    Nothing is written when a check fails (ExportError with the figures).
    """
    if fmt not in FORMATS:
        raise ExportError(f"unknown format {fmt!r} (choose {' or '.join(FORMATS)})")
    if int8 and fmt != "onnx":
        raise ExportError(f"--int8 quantizes ONNX models; use --format onnx, not {fmt}")
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
    if int8:
        return _export_int8(bundle, data, run, check, out_dir, max_drop, progress or _quiet)
    return ExportResult(fmt, *write_export(bundle, FORMATS[fmt], data, out_dir), len(data), check)


def _quiet(_: str) -> None:
    pass


def _export_int8(bundle, float_data, float_run, check, out_dir, max_drop, progress) -> ExportResult:
    """Quantize the checked float graph, score it against the float one, write if close."""
    shape = (*bundle.image_hw, bundle.channels)
    calibration = calibration_images(bundle)
    progress(f"quantizing: calibrating on {len(calibration)} of the run's training images")
    data = quantize_onnx(float_data, calibration)
    int8_run = open_onnx(data, "int8 ONNX model", shape, len(bundle.classes))
    progress("scoring the float and int8 models on the run's val split")
    score = compare_accuracy(bundle, float_run, int8_run, max_drop, len(calibration))
    score.float_bytes, score.int8_bytes = len(float_data), len(data)
    if not score.passed:
        raise refusal(score)
    paths = write_export(
        bundle, INT8_ONNX_FILE, data, out_dir, {INT8_REPORT_FILE: score.json_text()}
    )
    return ExportResult("onnx", *paths, len(data), check, score)


def write_export(
    bundle: Bundle,
    model_name: str,
    data: bytes,
    out_dir: str | Path,
    extra: dict[str, str] | None = None,
) -> tuple[Path, list[Path]]:
    """Write labels.json, preprocess.json and any extra text files, then the model file
    (each atomically)."""
    from cnncli.atomic import atomic_write_bytes, atomic_write_text

    out_dir = Path(out_dir)
    labels = json.dumps(labels_json(bundle), indent=2, ensure_ascii=False) + "\n"
    spec = json.dumps(preprocess_spec(bundle), indent=2, ensure_ascii=False) + "\n"
    _refuse_mismatched_sidecars(out_dir, model_name, labels, spec)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ExportError(
            f"{out_dir}: cannot create the output folder ({exc.strerror or exc})"
        ) from None
    atomic_write_text(out_dir / LABELS_FILE, labels)
    atomic_write_text(out_dir / PREPROCESS_FILE, spec)
    for name, text in (extra or {}).items():
        atomic_write_text(out_dir / name, text)
    model_path = out_dir / model_name
    # Last, so a model file never stands without the labels and spec it needs.
    atomic_write_bytes(model_path, data)
    files = [model_path, out_dir / LABELS_FILE, out_dir / PREPROCESS_FILE]
    return model_path, files + [out_dir / name for name in extra or {}]


def _refuse_mismatched_sidecars(out_dir: Path, model_name: str, labels: str, spec: str) -> None:
    """The model files of one folder share labels.json and preprocess.json: never re-pair
    another model's file there with different labels."""
    others = [out_dir / name for name in MODEL_FILES if name != model_name]
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
