"""What a trained CNN looks at: first-layer filters, per-layer feature maps and Grad-CAM.

Everything here returns numpy arrays; drawing them is plots.py's job and printing the
CLI's. Grad-CAM (Selvaraju et al., 2017) weights the last conv layer's post-ReLU feature
maps by the spatial mean of the class logit's gradient with respect to them.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

from cnncli.config import ModelConfig
from cnncli.model.family import first_conv
from cnncli.model.layers import max_pool
from cnncli.model.network import forward, head, normalize


@dataclass
class Explanation:
    """One image explained: prediction, Grad-CAM for class_index, filters and feature maps."""

    probs: np.ndarray  # (num_classes,) softmax of the logits
    predicted: int  # argmax of probs
    class_index: int  # the class the CAM explains (predicted unless asked otherwise)
    cam: np.ndarray  # (H, W) in [0, 1], upsampled to the input image
    cam_lowres: np.ndarray  # (h, w) in [0, 1], on the last conv layer's grid
    feature_maps: list[np.ndarray]  # per conv layer, (H, W, C) post-ReLU
    layer_names: list[str]  # conv1, conv2, ...
    filters: np.ndarray  # first conv layer's kernel (k, k, cin, cout)


def head_from_last_conv(
    params: dict[str, jax.Array], cfg: ModelConfig, features: jax.Array
) -> jax.Array:
    """Logits from the last conv block's post-ReLU map: its pool, flatten/GAP, dense, logits.

    The last block's pooling, then network.head (dropout off); a test checks that
    head_from_last_conv(features[-1]) equals forward's logits.
    """
    if cfg.backbone:  # the last stage's output goes straight into global pooling
        return head(params, cfg, features)
    block = cfg.conv[-1]
    x = features
    if block.pool > 1:
        x = max_pool(x, block.pool, block.pool_stride or block.pool)
    return head(params, cfg, x)


def feature_names(cfg: ModelConfig, count: int) -> list[str]:
    """Names of forward's feature maps: conv1, conv2, ... or a backbone's stem and stages."""
    if cfg.backbone:
        from cnncli.model.lite_spec import is_lite

        if is_lite(cfg.backbone):
            from cnncli.model.lite import feature_names as lite_names

            return lite_names(cfg.backbone)[:count]
        return ["stem"] + [f"layer{i}" for i in range(1, count)]
    return [f"conv{i}" for i in range(1, count + 1)]


def normalize_map(values: jax.Array) -> jax.Array:
    """Scale a non-negative map to [0, 1] by its maximum; an all-zero map stays zero."""
    peak = values.max()
    return jnp.where(peak > 0, values / jnp.where(peak > 0, peak, 1.0), 0.0)


def grad_cam(
    params: dict[str, jax.Array], cfg: ModelConfig, features: jax.Array, class_index: int
) -> jax.Array:
    """Grad-CAM (h, w) in [0, 1] for one image from its last conv map features (1, h, w, C)."""
    grads = jax.grad(lambda a: head_from_last_conv(params, cfg, a)[0, class_index])(features)
    weights = grads.mean(axis=(1, 2))  # (1, C): how much each channel raises the logit
    cam = jax.nn.relu(jnp.einsum("bhwc,bc->bhw", features, weights))[0]
    return normalize_map(cam)


def upsample(cam: jax.Array, size: int | tuple[int, int]) -> jax.Array:
    """Bilinear resize of an (h, w) map to (H, W) (an int: square), renormalised to [0, 1]."""
    shape = (size, size) if isinstance(size, int) else tuple(size)
    return normalize_map(jnp.clip(jax.image.resize(cam, shape, "bilinear"), 0.0, None))


def explain_image(
    params: dict[str, jax.Array],
    stats: dict[str, jax.Array],
    cfg: ModelConfig,
    image_u8: np.ndarray,
    class_index: int | None = None,
    multi_label: bool = False,
) -> Explanation:
    """Explain one decoded uint8 (H, W, C) image; class_index None means the predicted class.

    With multi_label, probs are per-label sigmoid probabilities (predicted: the likeliest).
    """
    image_u8 = np.asarray(image_u8)
    if image_u8.ndim != 3:
        raise ValueError(f"need an (H, W, C) image, got shape {image_u8.shape}")
    x = normalize(jnp.asarray(image_u8)[None], cfg)
    logits, _, features = forward(params, stats, cfg, x, train=False, return_features=True)
    probs = jax.nn.sigmoid(logits[0]) if multi_label else jax.nn.softmax(logits[0])
    predicted = int(jnp.argmax(probs))
    target = predicted if class_index is None else int(class_index)
    if not 0 <= target < probs.shape[0]:
        raise ValueError(f"class index {target} out of range 0..{probs.shape[0] - 1}")
    cam = grad_cam(params, cfg, features[-1], target)
    return Explanation(
        probs=np.asarray(probs),
        predicted=predicted,
        class_index=target,
        cam=np.asarray(upsample(cam, image_u8.shape[:2])),
        cam_lowres=np.asarray(cam),
        feature_maps=[np.asarray(f[0]) for f in features],
        layer_names=feature_names(cfg, len(features)),
        filters=np.asarray(
            params[f"{first_conv(cfg.backbone) if cfg.backbone else 'conv1'}/kernel"]
        ),
    )


def label_cams(
    params: dict[str, jax.Array], cfg: ModelConfig, explanation: Explanation, indices: list[int]
) -> dict[int, np.ndarray]:
    """Grad-CAM per class index (multi-label: one map per label), upsampled like `cam`,
    from the explanation's last feature map; the explained class reuses its own map."""
    features = jnp.asarray(explanation.feature_maps[-1])[None]
    size = explanation.cam.shape
    cams = {}
    for index in indices:
        if index == explanation.class_index:
            cams[index] = explanation.cam
        else:
            cams[index] = np.asarray(upsample(grad_cam(params, cfg, features, index), size))
    return cams


def grad_cams(
    params: dict[str, jax.Array],
    stats: dict[str, jax.Array],
    cfg: ModelConfig,
    images_u8: np.ndarray,
    targets: np.ndarray,
) -> np.ndarray:
    """Grad-CAM maps (N, H, W) in [0, 1] of N images for their target classes, in one jit.

    The same maps as explain_image's `cam`, but compiled once for the batch instead of run
    op by op, which is what makes a report's handful of maps cheap.
    """
    size = tuple(images_u8.shape[1:3])

    def one(image, target):
        x = normalize(image[None], cfg)
        _, _, features = forward(params, stats, cfg, x, train=False, return_features=True)
        return upsample(grad_cam_traced(params, cfg, features[-1], target), size)

    return np.asarray(jax.jit(jax.vmap(one))(jnp.asarray(images_u8), jnp.asarray(targets)))


def grad_cam_traced(
    params: dict[str, jax.Array], cfg: ModelConfig, features: jax.Array, class_index: jax.Array
) -> jax.Array:
    """grad_cam with a traced class index (usable under jit and vmap)."""
    grads = jax.grad(lambda a: head_from_last_conv(params, cfg, a)[0][class_index])(features)
    weights = grads.mean(axis=(1, 2))
    cam = jax.nn.relu(jnp.einsum("bhwc,bc->bhw", features, weights))[0]
    return normalize_map(cam)
