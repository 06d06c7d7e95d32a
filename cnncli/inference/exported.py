"""Exported models (ONNX, StableHLO) loaded for prediction, with neither flax nor the model code.

An export folder holds model.onnx, model.stablehlo and/or model.int8.onnx (quantized, with
its accuracy check in model.int8.json) plus labels.json (class names in output order; for a
multi-label model an object with the names and per-label thresholds, and probs are sigmoid
probabilities) and preprocess.json (input size, channels, resize policy, decode rules). All
model files take uint8 NHWC images of shape (batch, H, W, C) with any batch size, normalise inside,
and return (logits, probs). onnxruntime is imported only for .onnx files, jax only for
.stablehlo files.
"""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cnncli.data.decode import Resize, as_resize, resize_from_spec
from cnncli.inference.bundle import META_FILE, Bundle, BundleError, load_bundle

ONNX_FILE = "model.onnx"
STABLEHLO_FILE = "model.stablehlo"
LABELS_FILE = "labels.json"
PREPROCESS_FILE = "preprocess.json"
FORMATS = {"onnx": ONNX_FILE, "stablehlo": STABLEHLO_FILE}
INT8_ONNX_FILE = "model.int8.onnx"  # `cnn export --int8`: runs like model.onnx
INT8_REPORT_FILE = "model.int8.json"  # its accuracy against the float model, and settings
MODEL_FILES = (ONNX_FILE, STABLEHLO_FILE, INT8_ONNX_FILE)  # all share the folder's sidecars
INSTALL_HINT = "pip install 'cnn[export]'"

# (uint8 NHWC batch) -> (logits, probs), both float32 (batch, classes).
Runner = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]


class ExportError(BundleError):
    """An exported model cannot be written, read or run; the message names the file and the fix."""


@dataclass
class ExportedModel:
    """An exported model with its labels and input spec; quacks like a Bundle for predict."""

    path: Path
    format: str  # "onnx" or "stablehlo"
    classes: list[str]
    resize: Resize  # input size and resize policy, as Bundle.resize
    channels: int
    run: Runner
    multi_label: bool = False
    thresholds: list[float] | None = None

    def __post_init__(self) -> None:
        self.resize = as_resize(self.resize)

    @property
    def image_hw(self) -> tuple[int, int]:
        """(height, width) of the model's input."""
        return self.resize.hw

    def classifier(self, batch_size: int, tta: bool = False) -> Callable[[np.ndarray], np.ndarray]:
        """uint8 batch -> class probabilities, like predict.make_classifier (optionally + flip)."""

        def classify(batch: np.ndarray) -> np.ndarray:
            n = len(batch)
            if self.format == "stablehlo" and n < batch_size:
                # One compiled shape: pad to batch_size, drop the padded rows.
                pad = np.zeros((batch_size - n, *batch.shape[1:]), np.uint8)
                batch = np.concatenate([batch, pad])
            probs = self.run(batch)[1]
            if tta:
                probs = 0.5 * (probs + self.run(np.ascontiguousarray(batch[:, :, ::-1, :]))[1])
            return np.asarray(probs)[:n]

        return classify


def load_model(path: str | Path) -> Bundle | ExportedModel:
    """What `cnn predict --model` accepts: a run or model/ folder, a .onnx (model.int8.onnx
    too) or .stablehlo file, or an export folder (model.onnx first, model.stablehlo when
    onnxruntime is missing, model.int8.onnx when it is the only model there)."""
    path = Path(path)
    if path.is_file():
        for fmt, name in FORMATS.items():
            if path.suffix == Path(name).suffix:
                return load_exported(path, fmt)
        raise BundleError(
            f"{path}: not a model file (expected .onnx or .stablehlo, or a run or model/ folder)"
        )
    if (
        path.is_dir()
        and not (path / META_FILE).is_file()
        and not (path / "model" / META_FILE).is_file()
    ):
        found = [fmt for fmt, name in FORMATS.items() if (path / name).is_file()]
        if len(found) == 2 and importlib.util.find_spec("onnxruntime") is None:
            found.remove("onnx")
        if found:
            return load_exported(path / FORMATS[found[0]], found[0])
        if (path / INT8_ONNX_FILE).is_file():
            return load_exported(path / INT8_ONNX_FILE, "onnx")
    return load_bundle(path)


def read_sidecars(folder: Path) -> tuple[list[str], Resize, int]:
    """(classes, resize, channels) from labels.json and preprocess.json in folder.

    A preprocess.json from before resize policies means a square centre crop.
    """
    labels_path, pre_path = folder / LABELS_FILE, folder / PREPROCESS_FILE
    try:
        classes = json.loads(labels_path.read_text(encoding="utf-8"))
        pre = json.loads(pre_path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ExportError(
            f"{exc.filename}: missing; an exported model needs {LABELS_FILE} and "
            f"{PREPROCESS_FILE} next to it (re-run cnn export)"
        ) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ExportError(
            f"{folder}: unreadable {LABELS_FILE} or {PREPROCESS_FILE} ({exc})"
        ) from None
    if isinstance(classes, dict):  # a multi-label model's labels.json (see read_label_mode)
        classes = classes.get("classes")
    if (
        not isinstance(classes, list)
        or len(classes) < 2
        or not all(isinstance(c, str) for c in classes)
    ):
        raise ExportError(f"{labels_path}: expected a JSON list of at least 2 class names")
    try:
        channels = int(pre["channels"])
        resize = resize_from_spec(pre, str(pre_path))
    except (KeyError, TypeError, ValueError, AttributeError):
        raise ExportError(
            f"{pre_path}: needs 'image_size' (N or [H, W], each >= 1), integer 'channels' "
            "and a known 'resize'"
        ) from None
    if channels not in (1, 3):
        raise ExportError(f"{pre_path}: image_size must be >= 1 and channels 1 or 3")
    return classes, resize, channels


def read_label_mode(folder: Path, num_classes: int) -> tuple[bool, list[float] | None]:
    """(multi_label, thresholds) from labels.json: a plain list is a single-label model."""
    labels_path = folder / LABELS_FILE
    spec = json.loads(labels_path.read_text(encoding="utf-8"))
    if not isinstance(spec, dict):
        return False, None
    thresholds = spec.get("thresholds")
    ok = (
        spec.get("multi_label") is True
        and isinstance(thresholds, list)
        and len(thresholds) == num_classes
        and all(
            isinstance(t, (int, float)) and not isinstance(t, bool) and 0 <= t <= 1
            for t in thresholds
        )
    )
    if not ok:
        raise ExportError(
            f"{labels_path}: a labels object needs multi_label true and {num_classes} "
            "thresholds in [0, 1]"
        )
    return True, [float(t) for t in thresholds]


def load_exported(path: str | Path, fmt: str) -> ExportedModel:
    """Open an exported model file and its sidecars, checking input shape and class count."""
    path = Path(path)
    classes, resize, channels = read_sidecars(path.parent)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ExportError(f"{path}: cannot read ({exc.strerror or exc})") from None
    opener = open_onnx if fmt == "onnx" else open_stablehlo
    run = opener(data, str(path), (*resize.hw, channels), len(classes))
    multi_label, thresholds = read_label_mode(path.parent, len(classes))
    return ExportedModel(path, fmt, classes, resize, channels, run, multi_label, thresholds)


def open_onnx(
    data: bytes, name: str, image_shape: tuple[int, int, int], num_classes: int
) -> Runner:
    """An onnxruntime session over the model bytes, as a Runner."""
    try:
        import onnxruntime as ort
    except ImportError:
        raise ExportError(
            f"{name}: running ONNX models needs onnxruntime ({INSTALL_HINT})"
        ) from None
    options = ort.SessionOptions()
    options.log_severity_level = 3  # errors only: no optimizer chatter on stderr
    try:
        session = ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own exception types for bad files
        raise ExportError(f"{name}: not a loadable ONNX model ({exc})") from None
    inputs = session.get_inputs()
    if len(inputs) != 1 or list(inputs[0].shape[1:]) != list(image_shape):
        got = [list(i.shape) for i in inputs]
        raise ExportError(
            f"{name}: model input {got} does not match preprocess.json {list(image_shape)}"
        )
    outputs = [o.name for o in session.get_outputs()]
    if outputs[:2] != ["logits", "probs"] or session.get_outputs()[0].shape[-1] != num_classes:
        raise ExportError(f"{name}: expected outputs logits and probs over {num_classes} classes")
    input_name = inputs[0].name

    def run(batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        logits, probs = session.run(
            outputs[:2], {input_name: np.ascontiguousarray(batch, np.uint8)}
        )
        return logits, probs

    return run


def open_stablehlo(
    data: bytes, name: str, image_shape: tuple[int, int, int], num_classes: int
) -> Runner:
    """A deserialized jax.export artefact, jitted on this machine's platform, as a Runner."""
    import jax
    from jax import export as jax_export

    try:
        exported = jax_export.deserialize(bytearray(data))
    except Exception as exc:  # the flatbuffer reader raises assorted errors on bad bytes
        raise ExportError(
            f"{name}: not a jax.export artefact ({type(exc).__name__}: {exc})"
        ) from None
    platform = jax.default_backend()  # "gpu" covers jax.export's "cuda" and "rocm"
    names = ("cuda", "rocm") if platform == "gpu" else (platform,)
    if not set(names) & set(exported.platforms):
        raise ExportError(
            f"{name}: exported for {', '.join(exported.platforms)}, but this machine runs {platform}"
        )
    (aval,) = exported.in_avals
    if tuple(aval.shape[1:]) != image_shape or aval.dtype != np.uint8:
        raise ExportError(
            f"{name}: model input {aval.str_short()} does not match preprocess.json {list(image_shape)}"
        )
    if len(exported.out_avals) != 2 or exported.out_avals[0].shape[-1] != num_classes:
        raise ExportError(f"{name}: expected outputs logits and probs over {num_classes} classes")
    call = jax.jit(exported.call)

    def run(batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        logits, probs = call(np.ascontiguousarray(batch, np.uint8))
        return np.asarray(logits), np.asarray(probs)

    return run
