"""int8 ONNX: onnxruntime's post-training static quantization of the float graph (QDQ,
per-channel int8 weights, uint8 activations), calibrated on the run's training images and
scored against the float model on its val split before anything is written."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from itertools import islice
from pathlib import Path

import numpy as np

from cnncli.inference.bundle import Bundle
from cnncli.inference.export_verify import VerificationError
from cnncli.inference.exported import INSTALL_HINT, ExportError, Runner

CALIBRATION_IMAGES = 128  # training images the activation ranges are measured on
# Pixels per calibration batch: bounds the activations held at once. (The MinMax calibrator
# reduces each tensor to its min and max inside the graph, so batches add up cheaply.)
CALIBRATION_PIXELS = 2_000_000
SCORE_BATCH = 32
# The final Gemm and the softmax (or sigmoid) stay float: they are tiny, and quantizing the
# graph's outputs would round probabilities to steps of 1/255.
FLOAT_NODES = ["logits", "probs"]
SETTINGS = {
    "format": "QDQ",
    "weights": "int8, per channel",
    "activations": "uint8",
    "calibration": "MinMax",
    "float_nodes": FLOAT_NODES,
}


class QuantizationRefused(VerificationError):
    """The int8 model loses more accuracy than --max-drop allows; nothing was written."""


@dataclass
class Int8Check:
    """How the int8 model scored against the float model on the run's val split."""

    metric: str  # "top-1 accuracy", or for multi-label models "label accuracy"
    images: int
    float_accuracy: float  # 0..1
    int8_accuracy: float
    agree: int  # images where both models give the same top-1 (or the same label set)
    calibration_images: int
    max_drop: float  # points
    float_bytes: int = 0
    int8_bytes: int = 0

    @property
    def drop(self) -> float:
        """Accuracy lost by quantization, in percentage points (negative: int8 did better)."""
        return 100.0 * (self.float_accuracy - self.int8_accuracy)

    @property
    def passed(self) -> bool:
        return self.drop <= self.max_drop

    def summary(self) -> str:
        """One line with the figures."""
        return (
            f"val {self.metric} {100 * self.float_accuracy:.2f}% float vs "
            f"{100 * self.int8_accuracy:.2f}% int8 (drop {self.drop:.2f} points, "
            f"--max-drop {self.max_drop:g}) on {self.images} images; same answer on "
            f"{self.agree}/{self.images}"
        )

    def record(self) -> dict:
        """What model.int8.json and `cnn export --json` store."""
        import onnxruntime

        return {
            **asdict(self),
            "drop_points": self.drop,
            "passed": self.passed,
            "quantization": SETTINGS,
            "onnxruntime": onnxruntime.__version__,
        }

    def json_text(self) -> str:
        return json.dumps(self.record(), indent=2) + "\n"


def run_split(bundle: Bundle, split: str) -> tuple[Path, list[tuple[str, object]]]:
    """(data root, [(relative path, model label)]) of one split of the run holding the
    bundle (RUN/split.csv + run.json's data_dir); ExportError when unreachable or empty."""
    from cnncli.data.scan import DatasetError, as_multi_label, read_manifest
    from cnncli.run_files import MANIFEST_FILE, RUN_FILE

    run_dir = bundle.path.parent
    try:
        info = json.loads((run_dir / RUN_FILE).read_text(encoding="utf-8"))
        dataset = read_manifest(run_dir / MANIFEST_FILE, info["data_dir"])
    except (OSError, ValueError, KeyError, TypeError, DatasetError) as exc:
        raise ExportError(
            f"{run_dir}: --int8 calibrates on the run's training images and scores on its val "
            f"split, but its {MANIFEST_FILE} or data folder cannot be read ({exc}); export "
            "from the run folder with its data in place"
        ) from None
    index = {name: bundle.classes.index(name) for name in dataset.classes if name in bundle.classes}
    if bundle.multi_label:
        dataset = as_multi_label(dataset)
        items = [
            (p, tuple(sorted(index[dataset.classes[i]] for i in t)))
            for p, t in dataset.splits.get(split, [])
        ]
    else:
        items = [(p, index[dataset.classes[i]]) for p, i in dataset.splits.get(split, [])]
    if not items:
        raise ExportError(f"{run_dir}: the run has no {split} split; --int8 needs one")
    return Path(dataset.root), items


def calibration_images(bundle: Bundle, count: int = CALIBRATION_IMAGES) -> np.ndarray:
    """Up to `count` decoded training images of the run, spread evenly over the classes
    (seeded), as uint8 (N, H, W, C)."""
    root, items = run_split(bundle, "train")
    rng = np.random.default_rng(0)
    by_class: dict[str, list[str]] = {}
    for rel, label in items:
        by_class.setdefault(str(label), []).append(str(root / rel))
    columns = [list(rng.permutation(by_class[k])) for k in sorted(by_class)]
    picked = [c[i] for i in range(max(map(len, columns))) for c in columns if i < len(c)]
    # A few spares for files that fail to decode; pool.map decodes all it is given.
    images = [image for _, image in islice(_decoded(bundle, picked[: count + 16]), count)]
    if not images:
        raise ExportError(f"{root}: none of the run's training images could be decoded")
    return np.stack(images)


def quantize_onnx(float_model: bytes, calibration: np.ndarray) -> bytes:
    """The float ONNX model quantized (QDQ, per-channel int8 weights, uint8 activations)."""
    try:
        from onnxruntime.quantization import (
            CalibrationDataReader,
            QuantFormat,
            QuantType,
            quantize_static,
        )
        from onnxruntime.quantization.shape_inference import quant_pre_process
    except ImportError:
        raise ExportError(
            f"--int8 needs onnxruntime's quantization tools ({INSTALL_HINT})"
        ) from None

    per_image = int(np.prod(calibration.shape[1:3]))
    batch = max(1, min(32, CALIBRATION_PIXELS // max(1, per_image)))

    class Batches(CalibrationDataReader):
        def __init__(self) -> None:
            self.left = iter(range(0, len(calibration), batch))

        def get_next(self):
            start = next(self.left, None)
            return None if start is None else {"images": calibration[start : start + batch]}

    with tempfile.TemporaryDirectory(prefix="cnn-int8-") as tmp:
        raw, ready, out = (Path(tmp) / name for name in ("float.onnx", "pre.onnx", "int8.onnx"))
        raw.write_bytes(float_model)
        # Folds each batch norm into its conv (ORT's basic optimizations) so the quantized
        # convs carry the folded weights; symbolic shape inference (needs sympy) is skipped.
        quant_pre_process(raw, ready, skip_symbolic_shape=True)
        quantize_static(
            ready,
            out,
            Batches(),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            nodes_to_exclude=FLOAT_NODES,
        )
        return out.read_bytes()


def compare_accuracy(
    bundle: Bundle,
    float_run: Runner,
    int8_run: Runner,
    max_drop: float,
    calibrated_on: int,
    progress: Callable[[int, int], None] | None = None,
) -> Int8Check:
    """Score both models on the run's val split (images that fail to decode are left out)."""
    root, items = run_split(bundle, "val")
    label_of = {str(root / rel): label for rel, label in items}
    thresholds = np.asarray(bundle.thresholds or [0.5] * len(bundle.classes))
    right = {"float": 0, "int8": 0}
    agree = seen = 0
    paths = list(label_of)
    for start in range(0, len(paths), SCORE_BATCH):
        decoded = list(_decoded(bundle, paths[start : start + SCORE_BATCH]))
        if progress:
            progress(min(start + SCORE_BATCH, len(paths)), len(paths))
        if not decoded:
            continue
        batch = np.stack([image for _, image in decoded])
        answers = {}
        for name, run in (("float", float_run), ("int8", int8_run)):
            probs = run(batch)[1]
            if bundle.multi_label:
                answers[name] = probs >= thresholds
                targets = _multi_hot([label_of[p] for p, _ in decoded], len(bundle.classes))
                right[name] += int((answers[name] == targets).all(axis=1).sum())
            else:
                answers[name] = np.argmax(probs, axis=1)
                targets = np.array([label_of[p] for p, _ in decoded])
                right[name] += int((answers[name] == targets).sum())
        same = answers["float"] == answers["int8"]
        agree += int(same.all(axis=1).sum() if same.ndim == 2 else same.sum())
        seen += len(decoded)
    if not seen:
        raise ExportError(f"{root}: none of the run's val images could be decoded")
    return Int8Check(
        metric="exact-set accuracy" if bundle.multi_label else "top-1 accuracy",
        images=seen,
        float_accuracy=right["float"] / seen,
        int8_accuracy=right["int8"] / seen,
        agree=agree,
        calibration_images=calibrated_on,
        max_drop=max_drop,
    )


def refusal(check: Int8Check) -> QuantizationRefused:
    """The one-line error for an int8 model that lost too much accuracy."""
    return QuantizationRefused(f"int8 export refused, nothing written: {check.summary()}")


def _multi_hot(labels: list, classes: int) -> np.ndarray:
    out = np.zeros((len(labels), classes), bool)
    for row, label in enumerate(labels):
        out[row, list(label)] = True
    return out


def _decoded(bundle: Bundle, paths: list[str]) -> Iterator[tuple[str, np.ndarray]]:
    """(path, uint8 image) for each path that decodes, two at a time in threads (Pillow
    releases the GIL), in order; undecodable files are skipped."""
    from concurrent.futures import ThreadPoolExecutor

    from cnncli.data.decode import DecodeError, decode_image

    def decode(path: str) -> np.ndarray | None:
        try:
            return decode_image(path, bundle.resize, bundle.channels)
        except DecodeError:
            return None

    with ThreadPoolExecutor(2, thread_name_prefix="cnn-int8-decode") as pool:
        for path, image in zip(paths, pool.map(decode, paths), strict=True):
            if image is not None:
                yield path, image
