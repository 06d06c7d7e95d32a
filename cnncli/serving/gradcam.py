"""Grad-CAM on request: one compiled map per image for a run's bundle, drawn over the image
the model saw as a PNG (no matplotlib: a five-stop colour ramp in numpy)."""

from __future__ import annotations

import io
import threading
from collections.abc import Callable

import numpy as np
from PIL import Image

from cnncli.inference.bundle import Bundle

# The ramp from no attention (dark blue) to most (dark red), as in the report's overlays.
_RAMP = np.array([[0, 0, 128], [0, 96, 255], [0, 230, 120], [255, 220, 0], [200, 0, 0]], np.float32)


def make_explainer(bundle: Bundle) -> Callable[[np.ndarray, int], np.ndarray]:
    """(uint8 (H, W, C) image, class index) -> Grad-CAM (H, W) in [0, 1], compiled once.

    The map of cnncli.inference.explain (the last conv map weighted by the class logit's
    mean gradient), jitted with the weights as arguments; calls are serialised by a lock.
    """
    import jax

    from cnncli.inference.explain import grad_cam_traced, upsample
    from cnncli.model.network import forward, normalize

    cfg = bundle.model

    def cam_of(weights, image, target):
        params, stats = weights
        x = normalize(image[None], cfg)
        _, _, features = forward(params, stats, cfg, x, train=False, return_features=True)
        return upsample(grad_cam_traced(params, cfg, features[-1], target), image.shape[:2])

    compiled = jax.jit(cam_of)
    weights = jax.device_put((bundle.params, bundle.stats))
    lock = threading.Lock()

    def explain(image: np.ndarray, target: int) -> np.ndarray:
        with lock:
            return np.asarray(compiled(weights, image, np.int32(target)))

    return explain


def overlay_png(image: np.ndarray, cam: np.ndarray, alpha: float = 0.5) -> bytes:
    """The decoded input (H, W, 1 or 3) with the map blended over it in colour, as PNG bytes."""
    rgb = np.repeat(image, 3, axis=-1) if image.shape[-1] == 1 else image
    position = np.clip(cam, 0.0, 1.0) * (len(_RAMP) - 1)
    low = np.minimum(position.astype(np.int32), len(_RAMP) - 2)
    frac = (position - low)[..., None]
    colour = _RAMP[low] * (1 - frac) + _RAMP[low + 1] * frac
    blended = (1 - alpha) * rgb.astype(np.float32) + alpha * colour
    out = io.BytesIO()
    Image.fromarray(np.clip(np.rint(blended), 0, 255).astype(np.uint8), "RGB").save(out, "PNG")
    return out.getvalue()
