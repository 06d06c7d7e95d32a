"""Shape arithmetic: the table agrees with (W - F + 2P)/S + 1 and with the real network."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import pytest

from cnncli.config import ConfigError, ConvBlock, ModelConfig
from cnncli.model import layers, network
from cnncli.model.conv_arithmetic import conv_out
from cnncli.model.flax_module import init_weights
from cnncli.model.shapes import layer_table, param_shapes


@pytest.mark.parametrize(
    "block, size",
    [
        (ConvBlock(4, kernel=3, stride=1, padding="same", pool=0), 17),
        (ConvBlock(4, kernel=3, stride=2, padding="same", pool=0), 17),
        (ConvBlock(4, kernel=5, stride=1, padding="valid", pool=0), 17),
        (ConvBlock(4, kernel=5, stride=2, padding=1, pool=0), 17),
        (ConvBlock(4, kernel=3, stride=3, padding=2, pool=2), 20),
        (ConvBlock(4, kernel=3, stride=1, padding="same", pool=3, pool_stride=2), 15),
        (ConvBlock(4, kernel=1, stride=1, padding=0, pool=2), 9),
    ],
)
def test_table_matches_formula_and_network(block: ConvBlock, size: int) -> None:
    cfg = ModelConfig(conv=[block], dense=[], dropout=0.0)
    rows = layer_table(cfg, size, 3, 5)
    conv = rows[0]
    pad = {"same": block.kernel - 1, "valid": 0}.get(
        block.padding, 2 * int(block.padding) if not isinstance(block.padding, str) else 0
    )
    expected = (size - block.kernel + pad) // block.stride + 1
    assert conv.out_shape == (expected, expected, 4)
    assert conv_out(size, block.kernel, block.stride, pad) == expected
    params, stats = init_weights(cfg, image_size=size, channels=3, num_classes=5, seed=0)
    _, _, feats = network.forward(
        params, stats, cfg, jnp.zeros((2, size, size, 3)), return_features=True
    )
    assert feats[0].shape[1:] == conv.out_shape
    flat = next(r for r in rows if r.kind == "flatten")
    assert params["logits/kernel"].shape == (flat.out_shape[0], 5)


def test_same_padding_with_stride_matches_xla_same() -> None:
    x = jax.random.normal(jax.random.key(0), (1, 17, 17, 2))
    k = jax.random.normal(jax.random.key(1), (3, 3, 2, 4))
    ours = layers.conv2d(x, k, jnp.zeros(4), 2, "same")
    xla = jax.lax.conv_general_dilated(
        x, k, (2, 2), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")
    )
    assert ours.shape == xla.shape == (1, 9, 9, 4)


@pytest.mark.parametrize(
    ("kernel", "c_in", "stride", "padding", "size"),
    [
        (3, 3, 1, "same", 17),
        (3, 1, 2, "same", 16),
        (5, 1, 2, "valid", 19),
        (2, 3, 3, 1, 11),
        (4, 1, 1, "same", 9),
    ],
)
def test_direct_conv_equals_xla_conv_values_and_gradients(
    kernel, c_in, stride, padding, size
) -> None:
    """Convs with few taps run as multiply-adds on the CPU; values and both gradients must
    equal XLA's convolution's for odd sizes, strides, even kernels and every padding kind."""
    assert kernel * kernel * c_in <= layers.DIRECT_CONV_MAX_TAPS
    x = jax.random.normal(jax.random.key(0), (2, size, size, c_in))
    k = jax.random.normal(jax.random.key(1), (kernel, kernel, c_in, 8))
    before, after = layers.conv_padding(padding, kernel)
    pads = ((before, after), (before, after))
    g = jax.random.normal(jax.random.key(2), layers._xla_conv(x, k, stride, pads).shape)

    def loss(conv, a, b):
        return jnp.vdot(conv(a, b), g)

    ours = lambda a, b: layers.conv2d(a, b, None, stride, padding)  # noqa: E731
    xla = lambda a, b: layers._xla_conv(a, b, stride, pads)  # noqa: E731
    if jax.default_backend() == "cpu":  # the direct path is what the CPU runs
        assert " convolution(" not in jax.jit(ours).lower(x, k).compile().as_text()
    assert jnp.allclose(ours(x, k), xla(x, k), atol=1e-4), float(
        jnp.abs(ours(x, k) - xla(x, k)).max()
    )
    for mine, theirs in zip(
        jax.grad(loss, (1, 2))(ours, x, k), jax.grad(loss, (1, 2))(xla, x, k), strict=True
    ):
        assert jnp.allclose(mine, theirs, atol=1e-4)
    wide = jax.random.normal(jax.random.key(3), (1, 8, 8, layers.DIRECT_CONV_MAX_TAPS))
    wide_k = jnp.ones((1, 1, layers.DIRECT_CONV_MAX_TAPS + 1, 4))
    wide = jnp.concatenate([wide, wide[..., :1]], axis=-1)
    wide_conv = jax.jit(layers.conv2d, static_argnums=(2, 3, 4)).lower(wide, wide_k, None, 1, 0)
    assert " convolution(" in wide_conv.compile().as_text()


def test_reshape_pool_equals_reduce_window_including_odd_sizes() -> None:
    x = jax.random.normal(jax.random.key(0), (2, 9, 7, 3))
    fast = layers.max_pool(x, 2, 2)
    ref = jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, 2, 2, 1), (1, 2, 2, 1), "VALID")
    assert fast.shape == (2, 4, 3, 3)
    assert jnp.array_equal(fast, ref)


@pytest.mark.parametrize(("size", "shape"), [(2, (2, 9, 7, 3)), (3, (1, 10, 12, 2))])
def test_pool_gradient_equals_jax_autodiff_including_ties_and_odd_sizes(size, shape) -> None:
    """The hand-written pool backward must equal jax's gradient of reshape + max, which
    splits a window's gradient evenly between tied maxima (common after ReLU); per window
    it sums to what reduce_window's backward (all to one of the ties) gives."""
    b, h, w, c = shape
    oh, ow = h // size, w // size
    x = jax.random.normal(jax.random.key(1), shape)
    x = jnp.round(jax.nn.relu(x) * 2) / 2  # many exact ties, zeros included
    g = jax.random.normal(jax.random.key(2), (b, oh, ow, c))

    def windows(v):
        return v[:, : oh * size, : ow * size, :].reshape(b, oh, size, ow, size, c)

    def ours(v):
        return jnp.vdot(layers.max_pool(v, size, size), g)

    def plain(v):
        return jnp.vdot(windows(v).max((2, 4)), g)

    def chooser(v):
        win = (1, size, size, 1)
        return jnp.vdot(jax.lax.reduce_window(v, -jnp.inf, jax.lax.max, win, win, "VALID"), g)

    mine, theirs, chosen = jax.grad(ours)(x), jax.grad(plain)(x), jax.grad(chooser)(x)
    assert mine.shape == x.shape
    assert jnp.allclose(mine, theirs, atol=1e-6), float(jnp.abs(mine - theirs).max())
    assert not jnp.array_equal(mine, chosen)  # ties present: the split is exercised
    assert jnp.allclose(windows(mine).sum((2, 4)), windows(chosen).sum((2, 4)), atol=1e-5)
    assert jnp.allclose(windows(mine).sum((2, 4)), g, atol=1e-5)


def test_too_small_image_names_the_layer() -> None:
    cfg = ModelConfig(conv=[ConvBlock(8), ConvBlock(16), ConvBlock(32), ConvBlock(64)])
    with pytest.raises(ConfigError, match=r"layer pool4: output would be 0x0"):
        layer_table(cfg, 8, 3, 2)
    with pytest.raises(ConfigError, match=r"layer conv1"):
        layer_table(ModelConfig(conv=[ConvBlock(8, kernel=7, padding="valid")]), 5, 3, 2)


def test_param_counts_match_shapes() -> None:
    cfg = ModelConfig(conv=[ConvBlock(8, batch_norm=True), ConvBlock(16)], dense=[32])
    rows = layer_table(cfg, 32, 3, 4)
    shapes = param_shapes(cfg, 32, 3, 4)
    n_params = sum(int(jnp.prod(jnp.array(s))) for s, kind in shapes.values())
    assert sum(r.params for r in rows) == n_params
    assert rows[0].params == 3 * 3 * 3 * 8  # no conv bias before batch norm
    conv2 = next(r for r in rows if r.name == "conv2")
    assert conv2.params == 3 * 3 * 8 * 16 + 16
    assert "conv1/bias" not in shapes and "conv2/bias" in shapes
