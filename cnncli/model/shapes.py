"""Layer-by-layer shape arithmetic, (W - F + 2P) / S + 1, without importing jax."""

from __future__ import annotations

from cnncli.config import ConfigError, ConvBlock, ModelConfig, size_hw
from cnncli.model.conv_arithmetic import LayerRow, conv_out, conv_padding, formula

# An input size: N (N x N) or (height, width).
ImageSize = int | tuple[int, int] | list[int]


def _residual_rows(n: int, block: ConvBlock, h: int, w: int, c_in: int) -> list[LayerRow]:
    """The second conv, its batch norm and the shortcut of a residual block."""
    if block.padding != "same":
        raise ConfigError(f"layer conv{n}: a residual block needs padding 'same'")
    c = block.filters
    k = block.kernel
    rows = [
        LayerRow(
            f"conv{n}b",
            "conv",
            (h, w, c),
            k * k * c * c + (0 if block.batch_norm else c),
            h * w * k * k * c * c,
            formula(w, k, k - 1, 1, w),
        )
    ]
    if block.batch_norm:
        rows.append(LayerRow(f"bn{n}b", "bn", (h, w, c), 4 * c))
    if c_in != c or block.stride != 1:
        rows.append(
            LayerRow(f"proj{n}", "conv", (h, w, c), c_in * c + c, h * w * c_in * c, "1x1 shortcut")
        )
    rows.append(LayerRow(f"add{n}", "add", (h, w, c)))
    rows.append(LayerRow(f"relu{n}b", "relu", (h, w, c)))
    return rows


def _narrow(h: int, oh: int, w: int, ow: int) -> tuple[int, int]:
    """(input side, output side) of the side that got too small (height first)."""
    return (h, oh) if oh < 1 else (w, ow)


def layer_table(
    model: ModelConfig, image_size: ImageSize, channels: int, num_classes: int
) -> list[LayerRow]:
    """Shapes, parameter counts and MACs per layer; raises ConfigError naming a layer < 1 px.

    image_size is N (N x N) or (height, width).
    """
    h, w = size_hw(image_size)
    if model.backbone:
        from cnncli.model.family import layer_table as backbone_table

        return backbone_table(model.backbone, h, w, channels, num_classes)
    c = channels
    rows: list[LayerRow] = []
    for i, block in enumerate(model.conv):
        name = f"conv{i + 1}"
        before, after = conv_padding(block.padding, block.kernel)
        oh = conv_out(h, block.kernel, block.stride, before + after)
        ow = conv_out(w, block.kernel, block.stride, before + after)
        if oh < 1 or ow < 1:
            side, out = _narrow(h, oh, w, ow)
            raise ConfigError(
                f"layer {name}: output would be {oh}x{ow} from a {h}x{w} input "
                f"({formula(side, block.kernel, before + after, block.stride, out)}); "
                "use a larger --image-size, fewer layers, padding 'same' or a smaller stride/pool"
            )
        # No conv bias before batch norm: BN subtracts the mean, so it would learn nothing.
        bias = 0 if block.batch_norm else block.filters
        params = block.kernel * block.kernel * c * block.filters + bias
        macs = oh * ow * block.kernel * block.kernel * c * block.filters
        rows.append(
            LayerRow(
                name,
                "conv",
                (oh, ow, block.filters),
                params,
                macs,
                formula(w, block.kernel, before + after, block.stride, ow),
            )
        )
        c_in = c
        h, w, c = oh, ow, block.filters
        if block.batch_norm:
            rows.append(LayerRow(f"bn{i + 1}", "bn", (h, w, c), 4 * c))
        rows.append(LayerRow(f"relu{i + 1}", "relu", (h, w, c)))
        if block.residual:
            rows += _residual_rows(i + 1, block, h, w, c_in)
        if block.pool > 1:
            stride = block.pool_stride or block.pool
            oh = conv_out(h, block.pool, stride, 0)
            ow = conv_out(w, block.pool, stride, 0)
            if oh < 1 or ow < 1:
                side, out = _narrow(h, oh, w, ow)
                raise ConfigError(
                    f"layer pool{i + 1}: output would be {oh}x{ow} from a {h}x{w} input "
                    f"({formula(side, block.pool, 0, stride, out)}); "
                    "use a larger --image-size, fewer layers or no pooling in this block"
                )
            rows.append(
                LayerRow(
                    f"pool{i + 1}",
                    "pool",
                    (oh, ow, c),
                    0,
                    0,
                    formula(w, block.pool, 0, stride, ow),
                )
            )
            h, w = oh, ow
    if model.global_pool:
        features = c
        rows.append(LayerRow("gap", "gap", (features,)))
    else:
        features = h * w * c
        rows.append(LayerRow("flatten", "flatten", (features,)))
    for j, units in enumerate(model.dense):
        rows.append(
            LayerRow(f"dense{j + 1}", "dense", (units,), features * units + units, features * units)
        )
        if model.dropout > 0:
            rows.append(LayerRow(f"dropout{j + 1}", "dropout", (units,)))
        features = units
    rows.append(
        LayerRow(
            "logits",
            "logits",
            (num_classes,),
            features * num_classes + num_classes,
            features * num_classes,
        )
    )
    return rows


def flat_features(model: ModelConfig, image_size: ImageSize, channels: int) -> int:
    """Number of features entering the first dense layer."""
    rows = layer_table(model, image_size, channels, 2)
    return next(r.out_shape[0] for r in rows if r.kind in ("flatten", "gap"))


def param_shapes(
    cfg: ModelConfig,
    image_size: ImageSize,
    channels: int,
    num_classes: int,
    bias_before_bn: bool = False,
) -> dict[str, tuple[tuple[int, ...], str]]:
    """Name -> (shape, kind) for every array of the network; kind is 'param' or 'stat'.

    A conv followed by batch norm has no bias (BN's mean subtraction cancels it; its
    gradient is rounding noise, which Adam would turn into steps). bias_before_bn=True
    gives the layout of models saved before that change, which still load.
    """
    if cfg.backbone:
        from cnncli.model.family import param_shapes as backbone_shapes

        layer_table(cfg, image_size, channels, num_classes)  # an image too small is an error
        return backbone_shapes(cfg.backbone, channels, num_classes)
    shapes: dict[str, tuple[tuple[int, ...], str]] = {}
    c = channels
    for i, block in enumerate(cfg.conv, start=1):
        bias = bias_before_bn or not block.batch_norm
        shapes[f"conv{i}/kernel"] = ((block.kernel, block.kernel, c, block.filters), "param")
        if bias:
            shapes[f"conv{i}/bias"] = ((block.filters,), "param")
        bns = [f"bn{i}"]
        if block.residual:
            f = block.filters
            shapes[f"conv{i}b/kernel"] = ((block.kernel, block.kernel, f, f), "param")
            if bias:
                shapes[f"conv{i}b/bias"] = ((f,), "param")
            bns.append(f"bn{i}b")
            if c != f or block.stride != 1:
                shapes[f"proj{i}/kernel"] = ((1, 1, c, f), "param")
                shapes[f"proj{i}/bias"] = ((f,), "param")
        for bn in bns if block.batch_norm else []:
            shapes[f"{bn}/scale"] = ((block.filters,), "param")
            shapes[f"{bn}/bias"] = ((block.filters,), "param")
            shapes[f"{bn}/mean"] = ((block.filters,), "stat")
            shapes[f"{bn}/var"] = ((block.filters,), "stat")
        c = block.filters
    features = flat_features(cfg, image_size, channels)
    for j, units in enumerate(cfg.dense, start=1):
        shapes[f"dense{j}/kernel"] = ((features, units), "param")
        shapes[f"dense{j}/bias"] = ((units,), "param")
        features = units
    shapes["logits/kernel"] = ((features, num_classes), "param")
    shapes["logits/bias"] = ((num_classes,), "param")
    return shapes
