"""Training from a start (--init): the weights put in place, cached pooled features, the
head-only phase and --freeze.

A frozen backbone gives every image the same features in every epoch, so they are computed
once (one inference pass over each split) and the head trains on them in seconds:
- --freeze trains only the head, on the features, for all epochs;
- the default fine-tune first trains the new head alone for train.head_epochs on the
  features (fastai's frozen epoch), then everything for train.epochs, the backbone at
  train.backbone_lr.
Augmentation does not apply to the features (they are computed once, from the plain images).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from cnncli.data.loader import SplitArrays, gather, padded_batches
from cnncli.warm_start import InitSource

HEAD = ("logits/kernel", "logits/bias")


def head_of(params: dict[str, Any]) -> dict[str, Any]:
    """The logits layer's arrays of a network's params."""
    return {k: params[k] for k in HEAD}


def embedder(model_cfg):
    """A jitted (params, stats, uint8 images) -> pooled features (network.embed, inference)."""
    import jax

    from cnncli import network

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
) -> SplitArrays:
    """The split with each image replaced by the features that enter the logits layer
    (`features` from embedder), float32 (n, features); labels and rows unchanged."""
    out = []
    for idx, mask in padded_batches(np.arange(len(split)), batch_size):
        batch, _ = gather(split, idx)
        out.append(np.asarray(features(params, stats, batch))[mask > 0])
    width = out[0].shape[1] if out else 0
    feats = np.concatenate(out) if out else np.zeros((0, width), np.float32)
    return SplitArrays(feats.astype(np.float32), split.labels, split.rows, split.manifest_size)


@dataclasses.dataclass
class Start:
    """What execute_run trains from: the state, the splits it sees, and for --freeze the
    frozen backbone that the saved model puts back in front of the head."""

    state: dict[str, Any]
    train: SplitArrays
    val: SplitArrays
    backbone: tuple[dict[str, Any], dict[str, Any]] | None = None


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
    from cnncli.model import init_weights
    from cnncli.warm_start import load_into

    if restored and not cfg.train.freeze:  # the checkpoint holds every weight already
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
            embed_split(params, stats, features, train, batch),
            embed_split(params, stats, features, val, batch),
            (params, stats),
        )
    if cfg.train.head_epochs:
        head = fit_head(
            cfg,
            embed_split(params, stats, features, train, batch),
            embed_split(params, stats, features, val, batch),
            head_of(params),
            len(classes),
            callbacks,
        )
        params = {**params, **head}
    return Start({**state, "params": params, "stats": stats}, train, val)


def fit_head(cfg, train: SplitArrays, val: SplitArrays, head, num_classes: int, callbacks=None):
    """Phase 1: the logits layer alone on features for train.head_epochs; its final weights."""
    from cnncli.checkpoint import NoCheckpoints
    from cnncli.train import fit, make_optimizer

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
        head_only=True,
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
