"""Seeded ResNet weights in timm's naming and the inputs the conversion reference uses.

Shared by tests/test_resnet.py (which loads them with cnn's loader and checks the logits)
and scripts/resnet_reference_logits.py (which runs them through timm + PyTorch to write
tests/data/resnet_reference.npz). numpy only, so both sides draw the same numbers.
"""

from __future__ import annotations

import numpy as np

# The reference: these depths, a 10-class head, two images at each of these sizes.
ARCHS = ("resnet18", "resnet50")
NUM_CLASSES = 10
SIZES = (64, 97)
IMAGES = 2
SEED = 2024
REFERENCE = "tests/data/resnet_reference.npz"


def timm_state(
    arch: str, num_classes: int = NUM_CLASSES, seed: int = SEED
) -> dict[str, np.ndarray]:
    """A full timm state dict (num_batches_tracked included) from one numpy RNG stream.

    He-scaled conv kernels; every batch norm's scale, bias, running mean and running
    variance drawn at random (so a swapped or transposed mapping changes the logits);
    classifier rows scaled like PyTorch's Linear default.
    """
    from cnncli.model.pretrained.weights import timm_name
    from cnncli.model.resnet_spec import param_shapes

    rng = np.random.default_rng([seed, sum(map(ord, arch))])
    state: dict[str, np.ndarray] = {}
    for ours, (shape, _) in param_shapes(arch, 3, num_classes).items():
        name = timm_name(ours)
        kind = ours.rsplit("/", 1)[1]
        if kind == "kernel" and len(shape) == 4:
            k, _, c_in, c_out = shape
            std = np.sqrt(2.0 / (k * k * c_in))
            value = rng.standard_normal((c_out, c_in, k, k)) * std
        elif kind == "kernel":
            features, classes = shape
            value = rng.uniform(-1, 1, (classes, features)) / np.sqrt(features)
        elif kind == "scale":
            value = rng.uniform(0.4, 1.2, shape)
        elif kind == "bias":
            value = rng.normal(0.0, 0.2, shape)
        elif kind == "mean":
            value = rng.normal(0.0, 0.3, shape)
        else:  # var
            value = rng.uniform(0.5, 2.0, shape)
        state[name] = value.astype(np.float32)
        if name.endswith(".running_var"):
            state[name.replace(".running_var", ".num_batches_tracked")] = np.array(7, np.int64)
    return state


def reference_inputs(size: int, seed: int = SEED) -> np.ndarray:
    """IMAGES normalised-looking float inputs, NCHW (PyTorch's layout), for one image size."""
    rng = np.random.default_rng([seed, size])
    return rng.standard_normal((IMAGES, 3, size, size)).astype(np.float32)
