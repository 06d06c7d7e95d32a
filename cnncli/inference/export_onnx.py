"""A bundle's network as a hand-built ONNX graph (opset 17), mirroring network.forward in
inference mode: the configurable CNN, ResNet and EfficientNet-Lite trunks."""

from __future__ import annotations

import json

import numpy as np

from cnncli.inference.bundle import Bundle
from cnncli.inference.export_sidecars import labels_json
from cnncli.inference.exported import INSTALL_HINT, PREPROCESS_FILE, ExportError

ONNX_OPSET = 17
ONNX_IR_VERSION = 8  # the IR that opset 17 shipped with; newer runtimes read it, older ones too


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
        from cnncli.model.conv_arithmetic import conv_padding

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
