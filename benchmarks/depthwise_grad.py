"""Depthwise convolution gradients on the CPU, per EfficientNet-Lite0 layer shape, batch 32:
autodiff of the shifted multiply-adds (what cnn trained with before) against the
hand-written gradient cnn trains with now (cnncli.model.separable.shifted_trainable).

Prints ms per forward + both gradients for each, their ratio, and the largest relative
difference of the two gradients. Both sides run in this process, alternating per round;
medians over the rounds. docs/performance.md ("EfficientNet-Lite0") records the result.

    .venv/bin/python benchmarks/depthwise_grad.py [--size 224] [--rounds 5]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cnncli.training.xla_env import configure_xla  # noqa: E402

configure_xla()

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from cnncli.model import separable as dw  # noqa: E402
from cnncli.model.lite import _pads  # noqa: E402

# Lite0's depthwise layers at 224 px: (input side, channels, kernel, stride).
LAYERS_224 = [
    (112, 32, 3, 1),
    (112, 96, 3, 2),
    (56, 144, 3, 1),
    (56, 144, 5, 2),
    (28, 240, 5, 1),
    (28, 240, 3, 2),
    (14, 480, 3, 1),
    (14, 480, 5, 1),
    (14, 672, 5, 1),
    (14, 672, 5, 2),
    (7, 1152, 5, 1),
    (7, 1152, 3, 1),
]


def _ms(fn, *args) -> float:
    start = time.perf_counter()
    jax.block_until_ready(fn(*args))
    return (time.perf_counter() - start) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=224, help="network input side (160, 224)")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    print(f"jax {jax.__version__}, {jax.devices()[0].platform}, batch 32, input {args.size} px")
    print("side  ch  k s   autodiff ms   hand ms   autodiff/hand   max rel diff")
    for side, c, k, s in LAYERS_224:
        side = max(1, round(side * args.size / 224))
        rng = np.random.default_rng(0)
        x = jnp.asarray(rng.normal(size=(32, side, side, c)), jnp.float32)
        kernel = jnp.asarray(rng.normal(size=(k, k, 1, c)), jnp.float32)
        pads = _pads(x, k, s)
        weights = jnp.asarray(rng.normal(size=dw.shifted(x, kernel, s, pads).shape), jnp.float32)
        fns = {}
        for name, form in (("auto", dw.shifted), ("hand", dw.shifted_trainable)):

            def loss(x, kk, form=form, s=s, pads=pads, weights=weights):
                return jnp.vdot(weights, form(x, kk, s, pads))

            fns[name] = jax.jit(jax.grad(loss, argnums=(0, 1)))
        a, b = fns["auto"](x, kernel), fns["hand"](x, kernel)
        diff = max(
            float(jnp.abs(u - v).max() / jnp.abs(u).max()) for u, v in zip(a, b, strict=True)
        )
        times: dict[str, list[float]] = {"auto": [], "hand": []}
        for r in range(args.rounds):
            order = ("auto", "hand") if r % 2 == 0 else ("hand", "auto")
            for name in order:
                times[name].append(_ms(fns[name], x, kernel))
        auto, hand = (statistics.median(times[n]) for n in ("auto", "hand"))
        print(
            f"{side:4d} {c:4d} {k} {s} {auto:11.1f} {hand:9.1f} {auto / hand:12.2f}x {diff:14.1e}"
        )


if __name__ == "__main__":
    main()
