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
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cnncli.inference.bundle import Bundle
from cnncli.inference.exported import (
    FORMATS,
    INSTALL_HINT,
    LABELS_FILE,
    PREPROCESS_FILE,
    ExportError,
    Runner,
    open_onnx,
    open_stablehlo,
)

ONNX_OPSET = 17
ONNX_IR_VERSION = 8  # the IR that opset 17 shipped with; newer runtimes read it, older ones too
STABLEHLO_PLATFORMS = ("cpu", "cuda", "rocm", "tpu")
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


def labels_json(bundle: Bundle) -> list[str] | dict:
    """labels.json: the class names in output order; for a multi-label model an object with
    the names, multi_label true and each label's threshold (`probs >= thresholds`)."""
    if not bundle.multi_label:
        return list(bundle.classes)
    return {
        "classes": list(bundle.classes),
        "multi_label": True,
        "thresholds": list(bundle.thresholds or [0.5] * len(bundle.classes)),
    }


def preprocess_spec(bundle: Bundle) -> dict:
    """The input contract of both exported formats, written as preprocess.json."""
    (h, w), c = bundle.image_hw, bundle.channels
    return {
        **bundle.resize.spec(),
        "channels": c,
        "color": "RGB" if c == 3 else "L (ITU-R 601 luma)",
        "input": {
            "name": "images",
            "dtype": "uint8",
            "layout": "NHWC",
            "shape": ["batch", h, w, c],
        },
        "decode": bundle.resize.describe(),
        "normalize": "inside the model: "
        + (
            f"(x / 255 - mean) / std, mean {bundle.model.mean}, std {bundle.model.std}"
            if bundle.model.mean
            else "x / 127.5 - 1"
        )
        + " (do not normalise before)",
        "outputs": {"logits": ["batch", len(bundle.classes)], "probs": "softmax of logits"},
        "labels": f"{LABELS_FILE}: class names in output order",
    } | (_multi_label_outputs(bundle) if bundle.multi_label else {})


def _multi_label_outputs(bundle: Bundle) -> dict:
    return {
        "outputs": {
            "logits": ["batch", len(bundle.classes)],
            "probs": "sigmoid of logits: one independent probability per label",
        },
        "labels": f"{LABELS_FILE}: class names in output order and each label's threshold "
        "(a label is present when probs >= its threshold)",
    }


def onnx_bytes(bundle: Bundle) -> bytes:
    """The serialized, checked ONNX model for a bundle."""
    try:
        import onnx
    except ImportError:
        raise ExportError(f"--format onnx needs the onnx package ({INSTALL_HINT})") from None
    model = onnx_model(bundle)
    onnx.checker.check_model(model, full_check=True)
    return model.SerializeToString()


class _Graph:
    """Collects ONNX nodes and initializers; each op's output is named after the op."""

    def __init__(self) -> None:
        self.nodes: list = []
        self.weights: list = []

    def const(self, name: str, array) -> str:
        from onnx import numpy_helper

        self.weights.append(numpy_helper.from_array(np.asarray(array, np.float32), name))
        return name

    def op(self, op_type: str, inputs: list[str], name: str, **attrs) -> str:
        from onnx import helper

        self.nodes.append(helper.make_node(op_type, inputs, [name], name=name, **attrs))
        return name

    def conv(self, x: str, params: dict, layer: str, stride: int, padding, group: int = 1) -> str:
        """A conv; padding as layers.conv2d takes it, or ((top, bottom), (left, right))."""
        from cnncli.model.shapes import conv_padding

        kernel = params[f"{layer}/kernel"]  # HWIO -> ONNX's OIHW
        if isinstance(padding, tuple):
            (top, bottom), (left, right) = padding
        else:
            top, bottom = left, right = conv_padding(padding, kernel.shape[0])
        w = self.const(f"{layer}/kernel", kernel.transpose(3, 2, 0, 1))
        inputs = [x, w]
        if f"{layer}/bias" in params:  # convs followed by batch norm have none
            inputs.append(self.const(f"{layer}/bias", params[f"{layer}/bias"]))
        return self.op(
            "Conv",
            inputs,
            layer,
            strides=[stride, stride],
            pads=[top, left, bottom, right],
            group=group,
        )

    def dense(self, x: str, params: dict, layer: str) -> str:
        kernel = self.const(f"{layer}/kernel", params[f"{layer}/kernel"])  # (in, out), as Gemm's B
        return self.op(
            "Gemm", [x, kernel, self.const(f"{layer}/bias", params[f"{layer}/bias"])], layer
        )

    def batch_norm(self, x: str, bundle: Bundle, layer: str, eps: float | None = None) -> str:
        from cnncli.model.layers import BN_EPS

        p, s = bundle.params, bundle.stats
        inputs = [x] + [
            self.const(f"{layer}/{k}", (p if k in ("scale", "bias") else s)[f"{layer}/{k}"])
            for k in ("scale", "bias", "mean", "var")
        ]
        return self.op("BatchNormalization", inputs, layer, epsilon=BN_EPS if eps is None else eps)


def onnx_model(bundle: Bundle):
    """The network as an onnx.ModelProto, mirroring network.forward in inference mode."""
    from onnx import TensorProto, helper

    cfg, params = bundle.model, bundle.params
    g = _Graph()
    (h, w), c, k = bundle.image_hw, bundle.channels, len(bundle.classes)
    x = g.op("Cast", ["images"], "to_float", to=TensorProto.FLOAT)
    # network.normalize exactly: x * float32(2/255) - 1, or per channel x * scale - shift.
    if cfg.mean:
        scale = np.array([1.0 / (255.0 * v) for v in cfg.std], np.float32)
        shift = np.array([m / v for m, v in zip(cfg.mean, cfg.std, strict=True)], np.float32)
        x = g.op("Mul", [x, g.const("input_scale", scale)], "scale")
        x = g.op("Sub", [x, g.const("input_shift", shift)], "normalize")
    else:
        x = g.op("Mul", [x, g.const("two_over_255", np.float32(2.0 / 255.0))], "scale")
        x = g.op("Sub", [x, g.const("one", np.float32(1.0))], "normalize")
    x = g.op("Transpose", [x], "to_nchw", perm=[0, 3, 1, 2])
    x = _backbone_graph(g, bundle, x) if cfg.backbone else _conv_graph(g, bundle, x)
    if cfg.global_pool or cfg.backbone:
        x = g.op("GlobalAveragePool", [x], "global_pool")
    else:  # flatten in NHWC order, as the dense kernel was trained
        x = g.op("Transpose", [x], "to_nhwc", perm=[0, 2, 3, 1])
    x = g.op("Flatten", [x], "flatten", axis=1)
    for j in range(1, len(cfg.dense) + 1):
        x = g.op("Relu", [g.dense(x, params, f"dense{j}")], f"dense{j}_relu")
    g.dense(x, params, "logits")
    if bundle.multi_label:
        g.op("Sigmoid", ["logits"], "probs")
    else:
        g.op("Softmax", ["logits"], "probs", axis=-1)
    graph = helper.make_graph(
        g.nodes,
        "cnn",
        [helper.make_tensor_value_info("images", TensorProto.UINT8, ["batch", h, w, c])],
        [
            helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", k]),
            helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["batch", k]),
        ],
        initializer=g.weights,
    )
    model = helper.make_model(
        graph,
        producer_name="cnn",
        opset_imports=[helper.make_opsetid("", ONNX_OPSET)],
        doc_string=f"uint8 NHWC images (batch, {h}, {w}, {c}) -> logits, probs; see {PREPROCESS_FILE}",
    )
    model.ir_version = ONNX_IR_VERSION
    size = str(h) if h == w else f"{h},{w}"
    props = {"classes": json.dumps(bundle.classes), "image_size": size, "channels": str(c)}
    props["resize"] = bundle.resize.policy
    if bundle.multi_label:
        props["multi_label"] = "true"
        props["thresholds"] = json.dumps(labels_json(bundle)["thresholds"])
    helper.set_model_props(model, props)
    return model


def _conv_graph(g: _Graph, bundle: Bundle, x: str) -> str:
    """The conv blocks of network.trunk as ONNX nodes."""
    for i, block in enumerate(bundle.model.conv, start=1):
        shortcut = x
        x = g.conv(x, bundle.params, f"conv{i}", block.stride, block.padding)
        if block.batch_norm:
            x = g.batch_norm(x, bundle, f"bn{i}")
        x = g.op("Relu", [x], f"relu{i}")
        if block.residual:
            x = g.conv(x, bundle.params, f"conv{i}b", 1, "same")
            if block.batch_norm:
                x = g.batch_norm(x, bundle, f"bn{i}b")
            if f"proj{i}/kernel" in bundle.params:
                shortcut = g.conv(shortcut, bundle.params, f"proj{i}", block.stride, 0)
            x = g.op("Relu", [g.op("Add", [x, shortcut], f"add{i}")], f"relu{i}b")
        if block.pool > 1:
            stride = block.pool_stride or block.pool
            x = g.op(
                "MaxPool", [x], f"pool{i}", kernel_shape=[block.pool] * 2, strides=[stride] * 2
            )
    return x


def _lite_graph(g: _Graph, bundle: Bundle, x: str) -> str:
    """An EfficientNet-Lite trunk (cnncli/model/lite.py) as ONNX nodes: each conv with the
    TF 'SAME' padding of its (fixed) input size, depthwise convs as grouped Conv, ReLU6 as Clip."""
    from cnncli.model.lite_spec import BN_EPS, blocks, same_padding

    low, high = g.const("relu6/min", np.float32(0.0)), g.const("relu6/max", np.float32(6.0))
    h, w = bundle.image_hw

    def conv_bn(x, conv, bn, k, stride, c_in, c_out, act, hw):
        pads = (same_padding(hw[0], k, stride), same_padding(hw[1], k, stride))
        group = c_out if c_in == 1 else 1
        y = g.batch_norm(g.conv(x, bundle.params, conv, stride, pads, group), bundle, bn, BN_EPS)
        out = (-(-hw[0] // stride), -(-hw[1] // stride))
        return (g.op("Clip", [y, low, high], f"{bn}/relu6") if act else y), out

    x, (h, w) = conv_bn(x, "conv_stem", "bn1", 3, 2, 3, 32, True, (h, w))
    for block in blocks(bundle.model.backbone):
        shortcut, convs = x, block.convs()
        for i, (conv, bn, k, stride, c_in, c_out) in enumerate(convs):
            x, (h, w) = conv_bn(x, conv, bn, k, stride, c_in, c_out, i < len(convs) - 1, (h, w))
        if block.skip:
            x = g.op("Add", [x, shortcut], f"{block.prefix}/add")
    x, _ = conv_bn(x, "conv_head", "bn2", 1, 1, 0, 0, True, (h, w))
    return x


def _backbone_graph(g: _Graph, bundle: Bundle, x: str) -> str:
    """A ResNet trunk (cnncli/model/resnet.py) as ONNX nodes: conv + BN pairs, the stem's
    padded 3x3 max pool (ONNX's MaxPool never picks a pad), residual adds."""
    from cnncli.model.lite_spec import is_lite

    if is_lite(bundle.model.backbone):
        return _lite_graph(g, bundle, x)
    from cnncli.model.resnet_spec import (
        POOL_KERNEL,
        POOL_PADDING,
        POOL_STRIDE,
        arch_of,
        blocks,
        bn_name,
        stem,
    )

    def conv_bn(x: str, conv) -> str:
        y = g.conv(x, bundle.params, conv.name, conv.stride, conv.padding)
        return g.batch_norm(y, bundle, bn_name(conv))

    x = g.op("Relu", [conv_bn(x, stem(bundle.channels))], "stem/relu")
    x = g.op(
        "MaxPool",
        [x],
        "stem/pool",
        kernel_shape=[POOL_KERNEL] * 2,
        strides=[POOL_STRIDE] * 2,
        pads=[POOL_PADDING] * 4,
    )
    for block in blocks(arch_of(bundle.model.backbone)):
        shortcut = x if block.downsample is None else conv_bn(x, block.downsample)
        for i, conv in enumerate(block.convs):
            x = conv_bn(x, conv)
            if i < len(block.convs) - 1:
                x = g.op("Relu", [x], f"{conv.name}/relu")
        x = g.op("Add", [x, shortcut], f"{block.prefix}/add")
        x = g.op("Relu", [x], f"{block.prefix}/relu")
    return x


def stablehlo_bytes(bundle: Bundle) -> bytes:
    """A serialized jax.export artefact: uint8 (batch, S, S, C) -> (logits, probs), weights inside."""
    import jax
    import jax.numpy as jnp
    from jax import export as jax_export

    from cnncli.model import network

    cfg = bundle.model
    params = {k: jnp.asarray(v) for k, v in bundle.params.items()}
    stats = {k: jnp.asarray(v) for k, v in bundle.stats.items()}

    def infer(images_u8):
        logits, _ = network.forward(params, stats, cfg, network.normalize(images_u8, cfg))
        if bundle.multi_label:
            return logits, jax.nn.sigmoid(logits)
        return logits, jax.nn.softmax(logits, axis=-1)

    (h, w), c = bundle.image_hw, bundle.channels
    spec = jax.ShapeDtypeStruct(jax_export.symbolic_shape(f"batch, {h}, {w}, {c}"), jnp.uint8)
    exported = jax_export.export(jax.jit(infer), platforms=STABLEHLO_PLATFORMS)(spec)
    return bytes(exported.serialize())


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
