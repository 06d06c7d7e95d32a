"""Pretrained weights a user may ask for by name: where they live, pinned, and their licence.

Each entry pins a Hugging Face repository at one commit and the SHA-256 of its
model.safetensors (Git LFS object id), so a download is checked byte for byte. The values
were read from the public Hub pages of these repositories (file page "Git LFS Details" at
the pinned revision; commit history); the build machine has no network, so no download was
made here to re-check them. The preprocessing (mean, std, crop_pct, interpolation, input
size) is each model's pretrained_cfg in timm 1.0.31 (the same as its config.json on the Hub).
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
    revision: str  # the pinned commit
    sha256: str  # of `filename` at that commit
    license: str
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    crop_pct: float = 0.875
    interpolation: str = "bilinear"
    input_size: int = 224
    filename: str = "model.safetensors"
    about: str = ""

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

PRETRAINED: dict[str, Pretrained] = {
    "resnet18": _RESNET18_A1,
    "resnet18.a1_in1k": _RESNET18_A1,
    "resnet18.tv_in1k": _RESNET18_TV,
    "resnet50": _RESNET50_A1,
    "resnet50.a1_in1k": _RESNET50_A1,
}


def lookup(name: str) -> Pretrained | None:
    """The registered weights called `name` (case-insensitive), or None."""
    return PRETRAINED.get(name.strip().lower())
