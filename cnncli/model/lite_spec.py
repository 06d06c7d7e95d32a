"""The EfficientNet-Lite family as data: blocks, TF 'SAME' padding, parameter shapes, layer table.

No jax here (`cnn summary` and argument checks use it); the forward pass is lite.py.
EfficientNet-Lite (Tan & Le; the TF Lite-friendly variant) is EfficientNet without
squeeze-excite, with ReLU6 everywhere and the stem (32) and head (1280) kept fixed when the
network is scaled. Names follow timm's `tf_efficientnet_lite*` module tree with '/' for '.':
`blocks.1.0.conv_dw.weight` in a timm file is `blocks/1/0/conv_dw/kernel` here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from cnncli.config import ConfigError

STEM_CHANNELS, HEAD_CHANNELS = 32, 1280
BN_EPS = 1e-3  # TensorFlow's default, which the ImageNet weights were trained with
# (repeats, kernel, stride, expansion, channels) of the seven stages of EfficientNet-B0.
STAGES = (
    (1, 3, 1, 1, 16),
    (2, 3, 2, 6, 24),
    (2, 5, 2, 6, 40),
    (3, 3, 2, 6, 80),
    (3, 5, 1, 6, 112),
    (4, 5, 2, 6, 192),
    (1, 3, 1, 6, 320),
)


@dataclass(frozen=True)
class LiteArch:
    """A member of the family: width and depth multipliers, native resolution, head dropout."""

    width: float
    depth: float
    resolution: int
    dropout: float


ARCHS: dict[str, LiteArch] = {
    "efficientnet_lite0": LiteArch(1.0, 1.0, 224, 0.2),
    "efficientnet_lite1": LiteArch(1.0, 1.1, 240, 0.2),
    "efficientnet_lite2": LiteArch(1.1, 1.2, 260, 0.3),
}


@dataclass(frozen=True)
class LiteBlock:
    """One block: depthwise-separable (expansion 1) or inverted residual (1x1 expand,
    k x k depthwise, 1x1 project), each conv followed by batch norm."""

    prefix: str  # blocks/{stage}/{index}
    number: int  # position in the whole network (the weights package's _blocks.N)
    kernel: int
    stride: int
    c_in: int
    c_mid: int  # channels of the depthwise conv (c_in * expansion)
    c_out: int

    @property
    def expands(self) -> bool:
        return self.c_mid != self.c_in

    @property
    def skip(self) -> bool:
        """A residual connection: only where the block keeps the shape."""
        return self.stride == 1 and self.c_in == self.c_out

    def convs(self) -> list[tuple[str, str, int, int, int, int]]:
        """(conv name, its BN name, kernel, stride, c_in, c_out) in forward order; a depthwise
        conv's c_in is 1 (one filter per channel, HWIO kernel (k, k, 1, C))."""
        p = self.prefix
        if not self.expands:
            return [
                (f"{p}/conv_dw", f"{p}/bn1", self.kernel, self.stride, 1, self.c_mid),
                (f"{p}/conv_pw", f"{p}/bn2", 1, 1, self.c_mid, self.c_out),
            ]
        return [
            (f"{p}/conv_pw", f"{p}/bn1", 1, 1, self.c_in, self.c_mid),
            (f"{p}/conv_dw", f"{p}/bn2", self.kernel, self.stride, 1, self.c_mid),
            (f"{p}/conv_pwl", f"{p}/bn3", 1, 1, self.c_mid, self.c_out),
        ]


def is_lite(name: str) -> bool:
    """Whether a backbone name is an EfficientNet-Lite."""
    return name in ARCHS


def arch_of(name: str) -> LiteArch:
    """The LiteArch of a backbone name, or a ConfigError listing the known ones."""
    if name not in ARCHS:
        raise ConfigError(f"unknown backbone {name!r} (choose from {', '.join(ARCHS)})")
    return ARCHS[name]


def round_channels(channels: int, width: float) -> int:
    """timm's round_channels: channels x width to a multiple of 8, never under 90 % of it."""
    if width == 1.0:
        return channels
    value = channels * width
    rounded = max(8, int(value + 4) // 8 * 8)
    return rounded + 8 if rounded < 0.9 * value else rounded


def stage_repeats(arch: LiteArch) -> list[int]:
    """Blocks per stage: depth x repeats rounded up, the first and last stage kept at 1."""
    last = len(STAGES) - 1
    return [
        r if i in (0, last) else max(1, math.ceil(r * arch.depth))
        for i, (r, *_rest) in enumerate(STAGES)
    ]


def blocks(name: str) -> list[LiteBlock]:
    """Every block in order, with its kernel, stride and channels."""
    arch = arch_of(name)
    out: list[LiteBlock] = []
    c_in = STEM_CHANNELS
    for stage, ((_, kernel, stride, expansion, chs), repeats) in enumerate(
        zip(STAGES, stage_repeats(arch), strict=True)
    ):
        c_out = round_channels(chs, arch.width)
        for index in range(repeats):
            s = stride if index == 0 else 1
            out.append(
                LiteBlock(
                    f"blocks/{stage}/{index}", len(out), kernel, s, c_in, c_in * expansion, c_out
                )
            )
            c_in = c_out
    return out


def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow's 'SAME' padding (before, after) of one side: output ceil(size / stride),
    the odd pixel after (so a stride-2 conv on an even side pads (0, 1) for a 3x3 kernel)."""
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def param_shapes(
    name: str, channels: int, num_classes: int
) -> dict[str, tuple[tuple[int, ...], str]]:
    """Name -> (shape, 'param' | 'stat') for every array of the network and its linear head.

    Convs have no bias (batch norm follows each); kernels are HWIO, a depthwise one (k, k, 1, C).
    """
    shapes: dict[str, tuple[tuple[int, ...], str]] = {}

    def conv_bn(conv: str, bn: str, k: int, c_in: int, c_out: int) -> None:
        shapes[f"{conv}/kernel"] = ((k, k, c_in, c_out), "param")
        for leaf, kind in (
            ("scale", "param"),
            ("bias", "param"),
            ("mean", "stat"),
            ("var", "stat"),
        ):
            shapes[f"{bn}/{leaf}"] = ((c_out,), kind)

    conv_bn("conv_stem", "bn1", 3, channels, STEM_CHANNELS)
    last = STEM_CHANNELS
    for block in blocks(name):
        for conv, bn, k, _stride, c_in, c_out in block.convs():
            conv_bn(conv, bn, k, c_in, c_out)
        last = block.c_out
    conv_bn("conv_head", "bn2", 1, last, HEAD_CHANNELS)
    shapes["logits/kernel"] = ((HEAD_CHANNELS, num_classes), "param")
    shapes["logits/bias"] = ((num_classes,), "param")
    return shapes


def _formula(size: int, k: int, pad: tuple[int, int], s: int, out: int) -> str:
    """(W - F + P_before + P_after) / S + 1, the TF 'SAME' padding shown as it is (uneven)."""
    return f"({size} - {k} + {pad[0]}+{pad[1]}) / {s} + 1 = {out}"


def layer_table(name: str, height: int, width: int, channels: int, num_classes: int):
    """Shapes, parameters and MACs per layer with (W - F + 2P)/S + 1 on every conv (2P written
    as the two sides of TF 'SAME' padding); raises ConfigError naming a layer under 1 pixel."""
    from cnncli.model.conv_arithmetic import LayerRow

    if height < 32 or width < 32:
        raise ConfigError(f"{name} needs --image-size of at least 32, got {height}x{width}")
    rows: list[LayerRow] = []
    h, w = height, width

    def conv_row(conv, k, s, c_in, c_out, depthwise, h, w, in_shape=None):
        ph, pw = same_padding(h, k, s), same_padding(w, k, s)
        oh, ow = (h - k + sum(ph)) // s + 1, (w - k + sum(pw)) // s + 1
        weights = k * k * c_out if depthwise else k * k * c_in * c_out
        text = _formula(w, k, pw, s, ow)
        if h != w:
            text = f"H {_formula(h, k, ph, s, oh)}; W {text}"
        kind = "dwconv" if depthwise else "conv"
        rows.append(
            LayerRow(
                conv.replace("/", "."),
                kind,
                (oh, ow, c_out),
                weights,
                oh * ow * weights,
                text,
                in_shape,
            )
        )
        return oh, ow

    def bn_act(bn, shape, act=True):
        rows.append(LayerRow(bn.replace("/", "."), "bn", shape, 4 * shape[-1]))
        if act:
            rows.append(LayerRow(f"{bn.replace('/', '.')}.relu6", "relu", shape))

    h, w = conv_row("conv_stem", 3, 2, channels, STEM_CHANNELS, False, h, w)
    bn_act("bn1", (h, w, STEM_CHANNELS))
    for block in blocks(name):
        convs = block.convs()
        for i, (conv, bn, k, s, c_in, c_out) in enumerate(convs):
            h, w = conv_row(conv, k, s, c_in, c_out, c_in == 1, h, w)
            bn_act(bn, (h, w, c_out), act=i < len(convs) - 1)
        if block.skip:
            rows.append(
                LayerRow(f"{block.prefix.replace('/', '.')}.add", "add", (h, w, block.c_out))
            )
    h, w = conv_row("conv_head", 1, 1, blocks(name)[-1].c_out, HEAD_CHANNELS, False, h, w)
    bn_act("bn2", (h, w, HEAD_CHANNELS))
    rows.append(LayerRow("gap", "gap", (HEAD_CHANNELS,)))
    rows.append(
        LayerRow(
            "logits",
            "logits",
            (num_classes,),
            HEAD_CHANNELS * num_classes + num_classes,
            HEAD_CHANNELS * num_classes,
        )
    )
    return rows
