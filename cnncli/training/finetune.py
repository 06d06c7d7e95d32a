"""Training from a start (--init): the weights put in place, cached pooled features, the
head-only phase and --freeze.

A frozen backbone gives every image the same features in every epoch, so they are computed
once (one inference pass over each split) and the head trains on them in seconds:
- --freeze trains only the head, on the features, for all epochs;
- the default fine-tune first trains the new head alone for train.head_epochs on the
  features (fastai's frozen epoch), then everything for train.epochs, the backbone at
  train.backbone_lr.
- --tune-blocks N (EfficientNet-Lite) trains the last N blocks, the head conv and the
  classifier on cached activations of the blocks below (computed once, for the image and
  its mirror image: the flip augmentation survives the cache), batch norm frozen, after the
  head-only phase on pooled features.
Other augmentation does not apply to cached features (they come from the plain images).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from cnncli.data.loader import SplitArrays, gather, padded_batches
from cnncli.training.warm_start import InitSource

HEAD = ("logits/kernel", "logits/bias")


def head_of(params: dict[str, Any]) -> dict[str, Any]:
    """The logits layer's arrays of a network's params."""
    return {k: params[k] for k in HEAD}


def embedder(model_cfg):
    """A jitted (params, stats, uint8 images) -> pooled features (network.embed, inference)."""
    import jax

    from cnncli.model import network

    @jax.jit
    def features(p, s, images_u8):
        return network.embed(p, s, model_cfg, network.normalize(images_u8, model_cfg))

    return features


def embed_split(
    params: dict[str, Any],
    stats: dict[str, Any],
    features,
    split: SplitArrays,
    batch_size: int,
    views: int = 0,
) -> SplitArrays:
    """The split with each image replaced by the features that enter the logits layer
    (`features` from embedder), float32 (n, features); labels and rows unchanged.
    views 1 or 2: (n, views, features), of the image and its mirror image (view_head)."""
    feats = map_batches(split, batch_size, lambda b: features(params, stats, b), views)
    if feats is None:
        return SplitArrays(
            np.zeros((0, 0), np.float32), split.labels, split.rows, split.manifest_size
        )
    return SplitArrays(feats.astype(np.float32), split.labels, split.rows, split.manifest_size)


def map_batches(split: SplitArrays, batch_size: int, fn, views: int = 0) -> np.ndarray | None:
    """fn over the split's arrays in padded batches (so jit sees one shape), the real rows
    kept and concatenated; None for an empty split. views 1 or 2: fn of the image and of
    its mirror image stacked on axis 1 (n, views, ...)."""
    out = []
    for idx, mask in padded_batches(np.arange(len(split)), batch_size):
        batch, _ = gather(split, idx)
        if views:
            shown = [batch, batch[:, :, ::-1]][:views]
            result = np.stack([np.asarray(fn(b)) for b in shown], axis=1)
        else:
            result = np.asarray(fn(batch))
        out.append(result[mask > 0])
    return np.concatenate(out) if out else None


def pick_view(x, key, train: bool):
    """One view per image of (n, V, ...) cached views: a random one in training, else the
    first (the plain image, as predict sees it)."""
    import jax
    import jax.numpy as jnp

    if not train or x.shape[1] == 1:
        return x[:, 0]
    pick = jax.random.randint(key, (x.shape[0],), 0, x.shape[1])
    pick = pick.reshape((-1,) + (1,) * (x.ndim - 1))
    return jnp.take_along_axis(x, pick, axis=1)[:, 0]


def view_head(params, stats, feats, key, train):
    """The logits layer on pooled features of several views (steps' head_only forward)."""
    import jax

    from cnncli.model import network

    view_key = jax.random.fold_in(key, 1) if train else None
    return network.logits_layer(params, pick_view(feats, view_key, train))


@dataclasses.dataclass
class Start:
    """What execute_run trains from: the state, the splits it sees, and for --freeze and
    --tune-blocks the frozen backbone that the saved model puts back around the trained part;
    `head` is the forward of that part (steps.make_steps' head_only)."""

    state: dict[str, Any]
    train: SplitArrays
    val: SplitArrays
    backbone: tuple[dict[str, Any], dict[str, Any]] | None = None
    head: Any = None


def top_start(model_cfg, tune_blocks: int) -> int:
    """The first block --tune-blocks trains (the blocks below it are cached)."""
    from cnncli.model.lite_spec import blocks

    return max(0, len(blocks(model_cfg.backbone)) - tune_blocks)


def top_names(model_cfg, tune_blocks: int, names) -> list[str]:
    """The arrays --tune-blocks trains: blocks from top_start on, the head conv, the logits."""
    from cnncli.model.lite_spec import blocks

    start = top_start(model_cfg, tune_blocks)
    trained = {b.prefix for b in blocks(model_cfg.backbone) if b.number >= start}
    return [
        n
        for n in names
        if n.split("/")[0] in ("conv_head", "bn2", "logits")
        or "/".join(n.split("/")[:3]) in trained
    ]


def top_forward(model_cfg, start: int):
    """(params, stats, cached, key, train) -> logits of the top blocks and head; `cached`
    holds views (n, V, h, w, c): a training step takes a random view of each image."""
    import jax
    import jax.numpy as jnp

    from cnncli.model import lite, network

    def forward(params, stats, cached, key, train):
        view_key = jax.random.fold_in(key, 1) if train else None
        x = pick_view(cached, view_key, train).astype(jnp.float32)
        mask = jnp.ones((x.shape[0],), jnp.float32)
        y, _, _ = lite.trunk(
            params, stats, model_cfg, x, train=train, mask=mask, bn_train=False, start=start
        )
        return network.head(params, model_cfg, y, train=train, key=key)

    return forward


def cache_activations(
    params, stats, model_cfg, split: SplitArrays, batch_size: int, start: int, views: int
):
    """The split with each image replaced by block start - 1's output for `views` views
    (1: the image; 2: and its mirror image), float16 (n, views, h, w, c)."""
    import jax

    from cnncli.model import lite, network

    @jax.jit
    def acts(p, s, images_u8):
        return lite.activations(
            p, s, model_cfg, network.normalize(images_u8, model_cfg), start
        ).astype("float16")

    cached = map_batches(split, batch_size, lambda b: acts(params, stats, b), views)
    return SplitArrays(cached, split.labels, split.rows, split.manifest_size)


def pooled_of(
    params, stats, model_cfg, cached: SplitArrays, start: int, batch_size: int
) -> SplitArrays:
    """Pooled features (n, V, features) of cached activations (n, V, h, w, c), inference."""
    import jax

    from cnncli.model import lite, network

    @jax.jit
    def pooled(p, s, x):
        n, v = x.shape[:2]
        flat = x.reshape((n * v, *x.shape[2:])).astype("float32")
        mask = np.ones((n * v,), np.float32)
        y, _, _ = lite.trunk(
            p, s, model_cfg, flat, train=False, mask=mask, bn_train=False, start=start
        )
        features = network.pre_logits(p, model_cfg, y)
        return features.reshape((n, v, -1))

    feats = map_batches(cached, batch_size, lambda b: pooled(params, stats, b)).astype(np.float32)
    return SplitArrays(feats, cached.labels, cached.rows, cached.manifest_size)


def prepare(
    cfg,
    src: InitSource,
    state: dict[str, Any],
    restored: bool,
    classes: list[str],
    train: SplitArrays,
    val: SplitArrays,
    callbacks=None,
) -> Start:
    """Put SOURCE's weights in place and run the head-only phase (not on a resume, whose
    checkpoint holds them already); for --freeze, switch both splits to features."""
    from cnncli.model.flax_module import init_weights
    from cnncli.training.warm_start import load_into

    tune = cfg.train.tune_blocks
    if restored and not cfg.train.freeze and not tune:  # the checkpoint holds every weight
        return Start(state, train, val)
    fresh = init_weights(
        cfg.model,
        image_size=cfg.data.image_size,
        channels=cfg.data.channels,
        num_classes=len(classes),
        seed=cfg.train.seed,
    )
    params, stats = load_into(src, *fresh, classes, cfg.data.channels)
    batch, features = max(cfg.train.batch_size, 32), embedder(cfg.model)
    if cfg.train.freeze:
        if not restored:
            state = {**state, "params": head_of(params)}
        return Start(
            state,
            embed_split(params, stats, features, train, batch, views=2),
            embed_split(params, stats, features, val, batch, views=1),
            (params, stats),
            view_head,
        )
    if tune:
        return _prepare_top(
            cfg, params, stats, state, restored, classes, train, val, batch, callbacks
        )
    if cfg.train.head_epochs:
        head = fit_head(
            cfg,
            embed_split(params, stats, features, train, batch, views=2),
            embed_split(params, stats, features, val, batch, views=1),
            head_of(params),
            len(classes),
            callbacks,
        )
        params = {**params, **head}
    return Start({**state, "params": params, "stats": stats}, train, val)


# Cached activations may use this much memory; above it only the plain view is cached.
CACHE_BUDGET_BYTES = 1536 * 2**20


def _prepare_top(cfg, params, stats, state, restored, classes, train, val, batch, callbacks):
    """--tune-blocks: cache activations below the trained blocks, fit the head on their pooled
    features (a fresh run), and train the top blocks + head on the cache."""
    start = top_start(cfg.model, cfg.train.tune_blocks)
    per_view = int(np.prod(_cache_shape(cfg, start))) * 2
    views = 2 if len(train) * per_view * 2 <= CACHE_BUDGET_BYTES else 1
    train_maps = cache_activations(params, stats, cfg.model, train, batch, start, views)
    val_maps = cache_activations(params, stats, cfg.model, val, batch, start, 1)
    names = top_names(cfg.model, cfg.train.tune_blocks, params)
    if not restored:
        if cfg.train.head_epochs:
            head = fit_head(
                cfg,
                pooled_of(params, stats, cfg.model, train_maps, start, batch),
                pooled_of(params, stats, cfg.model, val_maps, start, batch),
                head_of(params),
                len(classes),
                callbacks,
            )
            params = {**params, **head}
        state = {
            **state,
            "params": {n: params[n] for n in names},
            "stats": {n: stats[n] for n in top_names(cfg.model, cfg.train.tune_blocks, stats)},
        }
    return Start(state, train_maps, val_maps, (params, stats), top_forward(cfg.model, start))


def _cache_shape(cfg, start: int) -> tuple[int, int, int]:
    """(h, w, c) of block start - 1's output ('SAME' convs: ceil(side / stride) each)."""
    from cnncli.model.lite_spec import STEM_CHANNELS, blocks

    h, w = cfg.data.input_hw
    every = blocks(cfg.model.backbone)
    for stride in [2] + [b.stride for b in every[:start]]:
        h, w = -(-h // stride), -(-w // stride)
    return h, w, every[start - 1].c_out if start else STEM_CHANNELS


def fit_head(cfg, train: SplitArrays, val: SplitArrays, head, num_classes: int, callbacks=None):
    """Phase 1: the logits layer alone on features for train.head_epochs; its final weights."""
    from cnncli.training.checkpoint import NoCheckpoints
    from cnncli.training.optimizer import make_optimizer
    from cnncli.training.train import fit

    t = dataclasses.replace(cfg.train, epochs=cfg.train.head_epochs, backbone_lr=0.0, patience=0)
    head_cfg = dataclasses.replace(cfg, train=t)
    state = {"params": head, "stats": {}, "opt": make_optimizer(t, 1).init(head)}
    result = fit(
        head_cfg,
        train,
        val,
        state,
        NoCheckpoints(),
        callbacks=_HeadPhase(callbacks) if callbacks is not None else None,
        num_classes=num_classes,
        head_only=view_head if train.images.ndim == 3 else True,
    )
    return {k: result.params[k] for k in HEAD}


class _HeadPhase:
    """Callbacks of the head-only phase: its epochs show as h1, h2, ... in the table."""

    def __init__(self, inner) -> None:
        self.inner = inner

    def on_epoch_start(self, epoch: int, epochs: int, steps: int) -> None:
        self.inner.on_epoch_start(f"h{epoch}", epochs, steps)

    def on_step(self, step: int, steps: int, loss: float, images_per_s: float) -> None:
        self.inner.on_step(step, steps, loss, images_per_s)

    def on_epoch_end(self, row, seconds: float, improved: bool) -> None:
        self.inner.on_epoch_end(_HeadRow(row), seconds, False)


class _HeadRow:
    """An epoch row of the head-only phase, labelled h<epoch> (not written to metrics.csv)."""

    def __init__(self, row) -> None:
        self.row = row

    def as_dict(self) -> dict[str, Any]:
        return {**self.row.as_dict(), "epoch": f"h{self.row.epoch}"}
