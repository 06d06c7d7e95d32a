"""The ResNet family as data: stages, blocks, parameter names and shapes, the layer table.

No jax here (`cnn summary` and argument checks use it); the forward pass is resnet.py.
Names follow timm's / torchvision's module tree with '/' for '.', so `layer1.0.conv1.weight`
in a timm file is `layer1/0/conv1/kernel` here (weights.py maps one to the other).
"""

from __future__ import annotations

from dataclasses import dataclass

from cnncli.config import ConfigError

# Stage widths of every ResNet; a Bottleneck block's output is 4x its width.
WIDTHS = (64, 128, 256, 512)
BOTTLENECK_EXPANSION = 4
STEM_KERNEL, STEM_STRIDE, STEM_PADDING = 7, 2, 3
POOL_KERNEL, POOL_STRIDE, POOL_PADDING = 3, 2, 1


@dataclass(frozen=True)
class Arch:
    """A ResNet depth: the block type and how many blocks each of the four stages holds."""

    block: str  # "basic" (two 3x3 convs) | "bottleneck" (1x1, 3x3, 1x1)
    depths: tuple[int, int, int, int]

    @property
    def features(self) -> int:
        """Channels of the last stage (what the classifier sees after global pooling)."""
        return WIDTHS[-1] * (BOTTLENECK_EXPANSION if self.block == "bottleneck" else 1)


ARCHS: dict[str, Arch] = {
    "resnet18": Arch("basic", (2, 2, 2, 2)),
    "resnet34": Arch("basic", (3, 4, 6, 3)),
    "resnet50": Arch("bottleneck", (3, 4, 6, 3)),
    "resnet101": Arch("bottleneck", (3, 4, 23, 3)),
    "resnet152": Arch("bottleneck", (3, 8, 36, 3)),
}


@dataclass(frozen=True)
class Conv:
    """One convolution: its name (without /kernel), kernel F, stride S, padding P, channels."""

    name: str
    kernel: int
    stride: int
    padding: int
    c_in: int
    c_out: int


@dataclass(frozen=True)
class Block:
    """One residual block: its convs (each followed by batch norm) and the optional shortcut."""

    prefix: str  # layer{stage}/{index}
    convs: tuple[Conv, ...]
    downsample: Conv | None  # 1x1 conv (+ BN) on the shortcut when shape changes


def arch_of(name: str) -> Arch:
    """The Arch of a backbone name, or a ConfigError listing the known ones."""
    if name not in ARCHS:
        raise ConfigError(f"unknown backbone {name!r} (choose from {', '.join(ARCHS)})")
    return ARCHS[name]


def blocks(arch: Arch) -> list[Block]:
    """Every residual block in order, with its convs' strides, paddings and channels.

    The stride of a stage's first block sits on its 3x3 conv (ResNet v1.5 / 'ResNet-B', as
    in torchvision and timm), and a block whose shape changes gets a 1x1 conv + BN shortcut.
    """
    out: list[Block] = []
    c_in = WIDTHS[0]
    for stage, (depth, width) in enumerate(zip(arch.depths, WIDTHS, strict=True), start=1):
        for index in range(depth):
            stride = 2 if stage > 1 and index == 0 else 1
            p = f"layer{stage}/{index}"
            if arch.block == "basic":
                c_out = width
                convs = (
                    Conv(f"{p}/conv1", 3, stride, 1, c_in, width),
                    Conv(f"{p}/conv2", 3, 1, 1, width, width),
                )
            else:
                c_out = width * BOTTLENECK_EXPANSION
                convs = (
                    Conv(f"{p}/conv1", 1, 1, 0, c_in, width),
                    Conv(f"{p}/conv2", 3, stride, 1, width, width),
                    Conv(f"{p}/conv3", 1, 1, 0, width, c_out),
                )
            shortcut = None
            if stride != 1 or c_in != c_out:
                shortcut = Conv(f"{p}/downsample", 1, stride, 0, c_in, c_out)
            out.append(Block(p, convs, shortcut))
            c_in = c_out
    return out


def bn_name(conv: Conv) -> str:
    """The batch norm after a conv: conv1 -> bn1, layerN/i/convK -> bnK, downsample -> downsample_bn."""
    head, _, last = conv.name.rpartition("/")
    norm = "downsample_bn" if last == "downsample" else last.replace("conv", "bn")
    return f"{head}/{norm}" if head else norm


def stem(channels: int) -> Conv:
    """The 7x7 stride-2 stem convolution."""
    return Conv("conv1", STEM_KERNEL, STEM_STRIDE, STEM_PADDING, channels, WIDTHS[0])


def all_convs(arch: Arch, channels: int) -> list[Conv]:
    """Stem, then each block's convs and shortcut, in forward order."""
    convs = [stem(channels)]
    for block in blocks(arch):
        convs += [*block.convs, *([block.downsample] if block.downsample else [])]
    return convs


def param_shapes(
    name: str, channels: int, num_classes: int
) -> dict[str, tuple[tuple[int, ...], str]]:
    """Name -> (shape, 'param' | 'stat') for every array of the backbone and its linear head.

    Convs have no bias (batch norm follows each); kernels are HWIO.
    """
    arch = arch_of(name)
    shapes: dict[str, tuple[tuple[int, ...], str]] = {}
    for conv in all_convs(arch, channels):
        shapes[f"{conv.name}/kernel"] = ((conv.kernel, conv.kernel, conv.c_in, conv.c_out), "param")
        bn = bn_name(conv)
        shapes[f"{bn}/scale"] = ((conv.c_out,), "param")
        shapes[f"{bn}/bias"] = ((conv.c_out,), "param")
        shapes[f"{bn}/mean"] = ((conv.c_out,), "stat")
        shapes[f"{bn}/var"] = ((conv.c_out,), "stat")
    shapes["logits/kernel"] = ((arch.features, num_classes), "param")
    shapes["logits/bias"] = ((num_classes,), "param")
    return shapes


def layer_table(name: str, height: int, width: int, channels: int, num_classes: int):
    """Shapes, parameters and MACs per layer, the (W - F + 2P)/S + 1 arithmetic on each conv
    and the stem's pool; raises ConfigError naming the first layer under 1 pixel."""
    from cnncli.model.conv_arithmetic import LayerRow, conv_out, formula

    arch = arch_of(name)
    rows: list[LayerRow] = []
    h, w = height, width

    def conv_row(conv: Conv, h: int, w: int, display: str, in_shape=None) -> tuple[int, int]:
        oh = conv_out(h, conv.kernel, conv.stride, 2 * conv.padding)
        ow = conv_out(w, conv.kernel, conv.stride, 2 * conv.padding)
        text = formula(w, conv.kernel, 2 * conv.padding, conv.stride, ow)
        if oh < 1 or ow < 1:
            raise ConfigError(
                f"layer {display}: output would be {oh}x{ow} from a {h}x{w} input ({text}); "
                f"{name} needs --image-size of at least 32"
            )
        k2 = conv.kernel * conv.kernel
        rows.append(
            LayerRow(
                display,
                "conv",
                (oh, ow, conv.c_out),
                k2 * conv.c_in * conv.c_out,
                oh * ow * k2 * conv.c_in * conv.c_out,
                text,
                in_shape,
            )
        )
        bn = bn_name(conv).replace("/", ".")
        rows.append(LayerRow(bn, "bn", (oh, ow, conv.c_out), 4 * conv.c_out))
        return oh, ow

    h, w = conv_row(stem(channels), h, w, "conv1")
    rows.append(LayerRow("relu", "relu", (h, w, WIDTHS[0])))
    oh = conv_out(h, POOL_KERNEL, POOL_STRIDE, 2 * POOL_PADDING)
    ow = conv_out(w, POOL_KERNEL, POOL_STRIDE, 2 * POOL_PADDING)
    pool_text = formula(w, POOL_KERNEL, 2 * POOL_PADDING, POOL_STRIDE, ow)
    rows.append(LayerRow("maxpool", "pool", (oh, ow, WIDTHS[0]), 0, 0, pool_text))
    h, w = oh, ow
    for block in blocks(arch):
        shown = block.prefix.replace("/", ".")
        block_in = (h, w, block.convs[0].c_in)
        bh, bw = h, w
        for i, conv in enumerate(block.convs):
            bh, bw = conv_row(conv, bh, bw, conv.name.replace("/", "."))
            if i < len(block.convs) - 1:
                rows.append(LayerRow(f"{shown}.relu{i + 1}", "relu", (bh, bw, conv.c_out)))
        c = block.convs[-1].c_out
        if block.downsample is not None:
            conv_row(block.downsample, h, w, f"{shown}.downsample", block_in)
        rows.append(LayerRow(f"{shown}.add", "add", (bh, bw, c)))
        rows.append(LayerRow(f"{shown}.relu", "relu", (bh, bw, c)))
        h, w = bh, bw
    rows.append(LayerRow("gap", "gap", (arch.features,)))
    rows.append(
        LayerRow(
            "logits",
            "logits",
            (num_classes,),
            arch.features * num_classes + num_classes,
            arch.features * num_classes,
        )
    )
    return rows
