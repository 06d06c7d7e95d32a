"""The conv arithmetic every layer table shares: output size (W - F + 2P) / S + 1, padding,
the worked formula as text, and one row of a layer table. No jax, no architecture."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class LayerRow:
    """One row of the shape table."""

    name: str
    kind: str  # conv | bn | relu | pool | flatten | gap | dense | dropout | logits
    out_shape: tuple[int, ...]  # (H, W, C) or (features,)
    params: int = 0
    macs: int = 0
    formula: str = ""
    # The input this layer reads when it is not the previous row's output (a shortcut's).
    in_shape: tuple[int, ...] | None = None


def conv_padding(padding: str | int, kernel: int) -> tuple[int, int]:
    """Pixels of zero padding (before, after) for a conv; 'same' pads so that S=1 keeps W."""
    if padding == "valid":
        return 0, 0
    if padding == "same":
        total = kernel - 1
        return total // 2, total - total // 2
    return int(padding), int(padding)


def conv_out(size: int, kernel: int, stride: int, pad_total: int) -> int:
    """floor((W - F + 2P) / S) + 1 with 2P given as the total padding."""
    return (size - kernel + pad_total) // stride + 1


def formula(w: int, f: int, p_total: int, s: int, out: int) -> str:
    p = f"{p_total / 2:g}" if p_total % 2 else str(p_total // 2)
    return f"({w} - {f} + 2*{p}) / {s} + 1 = {out}"
