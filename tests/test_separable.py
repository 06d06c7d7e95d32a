"""The depthwise-separable convolutions (cnncli.model.separable): the depthwise forms
agree in values and both gradients; the pointwise conv's gradient equals autodiff."""

import jax
import jax.numpy as jnp
import numpy as np

from cnncli.model import separable as dw
from cnncli.model.lite import _pads

CASES = (
    # kernel, stride, (height, width), pads (None: TF 'SAME', uneven at stride 2)
    (3, 1, (14, 14), None),
    (5, 1, (9, 12), None),
    (5, 2, (15, 16), None),
    (3, 2, (16, 9), None),
    (3, 2, (7, 7), ((0, 2), (1, 0))),
    (5, 1, (6, 5), ((0, 0), (0, 0))),
)


def _inputs(rng, k, h, w, c=8):
    x = jnp.asarray(rng.normal(size=(2, h, w, c)), jnp.float32)
    kernel = jnp.asarray(rng.normal(size=(k, k, 1, c)), jnp.float32)
    return x, kernel


def test_shifted_and_grouped_agree():
    """The CPU form (shifted multiply-adds) and XLA's grouped conv give the same outputs."""
    rng = np.random.default_rng(0)
    for k, s, (h, w), pads in CASES:
        x, kernel = _inputs(rng, k, h, w)
        pads = pads or _pads(x, k, s)
        a = dw.shifted(x, kernel, s, pads)
        b = dw.grouped(x, kernel, s, pads)
        oh = (h + sum(pads[0]) - k) // s + 1
        ow = (w + sum(pads[1]) - k) // s + 1
        assert a.shape == b.shape == (2, oh, ow, 8)
        assert np.abs(np.asarray(a - b)).max() < 1e-4


def test_hand_written_gradient_matches_autodiff():
    """shifted_trainable's input and kernel gradients equal autodiff through XLA's grouped
    conv and through the plain shifted sum, for a loss that weights every output."""
    rng = np.random.default_rng(1)
    for k, s, (h, w), pads in CASES:
        x, kernel = _inputs(rng, k, h, w)
        pads = pads or _pads(x, k, s)
        weights = jnp.asarray(rng.normal(size=dw.shifted(x, kernel, s, pads).shape), jnp.float32)
        grads = {}
        for name, form in (
            ("hand", dw.shifted_trainable),
            ("grouped", dw.grouped),
            ("shifted", dw.shifted),
        ):

            def loss(x, k_, form=form, s=s, pads=pads, weights=weights):
                return jnp.sum(weights * form(x, k_, s, pads) ** 2)

            grads[name] = jax.jit(jax.grad(loss, (0, 1)))(x, kernel)
        for other in ("grouped", "shifted"):
            for u, v in zip(grads["hand"], grads[other], strict=True):
                assert u.shape == v.shape
                scale = 1 + np.abs(np.asarray(v)).max()
                assert np.abs(np.asarray(u - v)).max() < 1e-4 * scale, (k, s, h, w, pads, other)
        assert float(jnp.abs(grads["hand"][1]).sum()) > 0


def test_pointwise_gradient_matches_autodiff():
    """The 1x1 conv's hand-written gradient equals autodiff of the same product, whichever
    side is wider (expansion and projection)."""
    rng = np.random.default_rng(2)
    for c_in, c_out in ((4, 24), (24, 4), (8, 8)):
        x = jnp.asarray(rng.normal(size=(2, 5, 7, c_in)), jnp.float32)
        kernel = jnp.asarray(rng.normal(size=(1, 1, c_in, c_out)), jnp.float32)
        weights = jnp.asarray(rng.normal(size=(2, 5, 7, c_out)), jnp.float32)

        def loss(x, k, form, weights=weights):
            return jnp.sum(weights * jnp.tanh(form(x, k)))

        def plain(x, k):
            return jnp.einsum("bhwc,cd->bhwd", x, k[0, 0])

        hand = jax.grad(loss, (0, 1))(x, kernel, dw.pointwise)
        auto = jax.grad(loss, (0, 1))(x, kernel, plain)
        assert np.allclose(dw.pointwise(x, kernel), plain(x, kernel), atol=1e-5)
        for u, v in zip(hand, auto, strict=True):
            assert u.shape == v.shape
            assert np.abs(np.asarray(u - v)).max() < 1e-4 * (1 + np.abs(np.asarray(v)).max())
