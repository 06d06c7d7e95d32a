"""Regenerate tests/data/resnet_reference.npz: timm's logits on seeded ResNet weights.

Dev-only: needs torch and timm, which stay out of '.[test]' and CI (timm pulls GPU torch
wheels). Run it from the repository root in a throwaway environment outside the repo:

    python3 -m venv /tmp/venv-timm
    /tmp/venv-timm/bin/pip install torch torchvision timm safetensors numpy
    /tmp/venv-timm/bin/python scripts/resnet_reference_logits.py

The weights come from tests/resnet_reference.py (numpy only), are loaded into
timm.create_model(arch, num_classes=10) with strict=True, and run in eval mode at each
reference size; tests/test_resnet.py runs the same weights through cnn's safetensors loader
and JAX forward and compares.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.resnet_reference import (  # noqa: E402
    ARCHS,
    NUM_CLASSES,
    REFERENCE,
    SIZES,
    reference_inputs,
    timm_state,
)


def main() -> None:
    import timm
    import torch

    torch.manual_seed(0)
    out: dict[str, np.ndarray] = {}
    for arch in ARCHS:
        model = timm.create_model(arch, pretrained=False, num_classes=NUM_CLASSES)
        state = {k: torch.from_numpy(v) for k, v in timm_state(arch).items()}
        model.load_state_dict(state, strict=True)
        model.eval()
        for size in SIZES:
            with torch.no_grad():
                logits = model(torch.from_numpy(reference_inputs(size))).numpy()
            out[f"{arch}_{size}"] = logits.astype(np.float32)
            print(f"{arch} {size}px logits[0, :4] = {logits[0, :4]}, argmax {logits.argmax(1)}")
    out["versions"] = np.array(
        [f"timm {timm.__version__}", f"torch {torch.__version__}", f"numpy {np.__version__}"]
    )
    path = ROOT / REFERENCE
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **out)
    print(f"wrote {path} ({path.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
