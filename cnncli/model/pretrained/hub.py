"""Download registered weights by name (only when asked), checked against their pinned SHA-256.

huggingface_hub is the optional extra `cnn[pretrained]`; files go to the usual Hugging Face
cache (HF_HOME / HF_HUB_CACHE apply). With HF_HUB_OFFLINE=1 a cached file is used and a
missing one is a one-line error saying how to copy the file in: download it elsewhere and
pass it with --init PATH (the local-file route, the one tests and air-gapped machines use).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from cnncli.model.pretrained.registry import PRETRAINED, Pretrained
from cnncli.model.pretrained.state_dict import WeightsError


def copy_in_hint(spec: Pretrained) -> str:
    """How to bring the file in by hand (no network here)."""
    checked = f" (SHA-256 {spec.sha256})" if spec.pinned else ""
    return (
        f"on a machine with network download {spec.url}{checked}, copy it "
        "here and pass it: cnn train DIR --init path/to/model.safetensors"
    )


def sha256_of(path: Path) -> str:
    """Hex SHA-256 of a file, read in 4 MiB chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(4 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def registered_file(path: Path) -> Pretrained | None:
    """The registry entry whose pinned file this is (same SHA-256), or None."""
    if not path.is_file():
        return None
    size = path.stat().st_size
    if not 10_000_000 < size < 1_000_000_000:  # no registered file is outside this
        return None
    digest = sha256_of(path)
    return next((s for s in PRETRAINED.values() if s.pinned and s.sha256 == digest), None)


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def _cached(spec: Pretrained) -> bool:
    """Whether the pinned file is in the Hugging Face cache already (no network needed)."""
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(spec.repo, spec.filename, revision=spec.revision)
    return isinstance(found, str)


def _reach_hub(timeout: float = 5.0) -> None:
    """Fail within seconds when huggingface.co cannot be reached (no DNS, no route), instead
    of huggingface_hub's five retries; skipped behind a proxy, which only it knows how to use."""
    import socket

    proxies = ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")
    if any(os.environ.get(name) for name in proxies):
        return
    with socket.create_connection(("huggingface.co", 443), timeout=timeout):
        pass


def fetch(spec: Pretrained) -> Path:
    """The local path of spec's file: from the HF cache or downloaded, SHA-256 checked where
    the registry pins one."""
    try:
        from huggingface_hub import hf_hub_download
    except ImportError:
        raise WeightsError(
            f"--init {spec.name} downloads {spec.repo}, which needs huggingface_hub "
            f"(pip install 'cnn[pretrained]'); or {copy_in_hint(spec)}"
        ) from None
    import logging

    hub_log = logging.getLogger("huggingface_hub")
    level = hub_log.level
    hub_log.setLevel(logging.ERROR)  # its retry warnings would bury the one-line advice
    try:
        if not _offline() and not _cached(spec):
            _reach_hub()
        path = Path(hf_hub_download(spec.repo, spec.filename, revision=spec.revision))
    except Exception as exc:  # offline, no network, hub errors: all end in the same advice
        why = (
            "HF_HUB_OFFLINE is set and the file is not in the Hugging Face cache"
            if _offline()
            else f"no connection to huggingface.co ({type(exc).__name__})"
        )
        raise WeightsError(
            f"--init {spec.name}: cannot download {spec.repo} ({why}); {copy_in_hint(spec)}"
        ) from None
    finally:
        hub_log.setLevel(level)
    if not spec.pinned:  # checked by structure when loaded (every name and shape)
        return path
    digest = sha256_of(path)
    if digest != spec.sha256:
        raise WeightsError(
            f"{path}: SHA-256 {digest} is not the pinned {spec.sha256} of "
            f"{spec.repo}@{spec.revision[:7]}; delete the file and retry"
        )
    return path
