"""A bundle's forward pass as a serialized `jax.export` (StableHLO) artefact, weights inside."""

from __future__ import annotations

from cnncli.inference.bundle import Bundle

STABLEHLO_PLATFORMS = ("cpu", "cuda", "rocm", "tpu")


def stablehlo_bytes(bundle: Bundle) -> bytes:
    """A serialized jax.export artefact: uint8 (batch, S, S, C) -> (logits, probs), weights inside."""
    import jax
    import jax.numpy as jnp
    from jax import export as jax_export

    from cnncli.model import network

    cfg = bundle.model
    params = {k: jnp.asarray(v) for k, v in bundle.params.items()}
    stats = {k: jnp.asarray(v) for k, v in bundle.stats.items()}

    def infer(images_u8):
        logits, _ = network.forward(params, stats, cfg, network.normalize(images_u8, cfg))
        if bundle.multi_label:
            return logits, jax.nn.sigmoid(logits)
        return logits, jax.nn.softmax(logits, axis=-1)

    (h, w), c = bundle.image_hw, bundle.channels
    spec = jax.ShapeDtypeStruct(jax_export.symbolic_shape(f"batch, {h}, {w}, {c}"), jnp.uint8)
    exported = jax_export.export(jax.jit(infer), platforms=STABLEHLO_PLATFORMS)(spec)
    return bytes(exported.serialize())
