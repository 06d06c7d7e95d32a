"""jax/XLA (and malloc) settings measured fastest for cnn, made before jax is imported.

XLA reads XLA_FLAGS once, when jax starts its backend, and aborts the process on a flag it
does not know, so the flag is only set when the installed jaxlib is known to accept it, and
never when the user chose XLA_FLAGS themselves. Nothing here imports jax.
"""

from __future__ import annotations

import json
import mmap
import os
import re
import sys
from pathlib import Path

# jax 0.10's CPU backend hands single convolutions and dots to YNNPACK; on our small CNNs
# XLA's own (Eigen) kernels run a train step 1.4-1.5x faster with the same numbers
# (benchmarks/train_throughput.py, docs/performance.md).
CPU_FLAGS = "--xla_cpu_experimental_ynn_fusion_type=-individual_convolution,-individual_dot"

# Byte strings the jaxlib binary must hold for XLA to parse CPU_FLAGS: the flag's name and
# the two enum values it names.
_FLAG_MARKERS = (
    b"xla_cpu_experimental_ynn_fusion_type\x00",
    b"LIBRARY_FUSION_TYPE_INDIVIDUAL_CONVOLUTION",
    b"LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT",
)
_MIN_JAXLIB = (0, 10)  # the first release line measured with the flag
_ACCEL_PREFIXES = ("jax_cuda", "jax_rocm", "jax_plugins", "libtpu", "jax_tpu")
_CHECKS_FILE = "xla-flags.json"
CACHE_MAX_BYTES = 256 * 2**20  # jax's compilation cache under cache_dir()/jax
AUTOTUNE_CACHE = "xla_gpu_per_fusion_autotune_cache_dir"
PREALLOCATE_VARS = ("XLA_PYTHON_CLIENT_PREALLOCATE", "XLA_PYTHON_CLIENT_MEM_FRACTION")

# glibc malloc: blocks up to this size come from the heap (not a fresh mmap each time), and
# this much free memory at the heap's top is kept instead of handed back to the system.
MALLOC_MMAP_THRESHOLD = 256 * 2**20
MALLOC_TRIM_THRESHOLD = 256 * 2**20
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # mallopt parameters, glibc's malloc.h
_OTHER_ALLOCATORS = ("jemalloc", "tcmalloc", "mimalloc")


def cache_dir() -> Path:
    """cnn's per-user cache folder: $XDG_CACHE_HOME/cnn or ~/.cache/cnn."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "cnn"


def configure_xla() -> None:
    """Choose jax/XLA settings for this process; call before anything imports jax.

    Sets XLA_FLAGS to CPU_FLAGS when jax will run on the CPU, the user has not set XLA_FLAGS,
    and the installed jaxlib accepts the flag. Points jax's persistent compilation cache at
    cache_dir()/jax unless JAX_COMPILATION_CACHE_DIR is set (JAX_ENABLE_COMPILATION_CACHE=false
    turns it off), so a second run of the same model skips most compiling, and on a GPU keeps
    XLA's autotuning results there too. Turns off jax's preallocation of 75 % of GPU memory
    unless asked (configure_accelerator_memory). Does nothing once jax is imported: its
    settings are fixed by then. Tunes glibc's malloc first (configure_malloc).
    """
    configure_malloc()
    if "jax" in sys.modules:
        return
    configure_accelerator_memory()
    if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
        folder = cache_dir() / "jax"
        os.environ["JAX_COMPILATION_CACHE_DIR"] = str(folder)
        # Our programs compile in well under jax's default 1 s threshold, yet add up:
        # ~4 s of a `cnn train` start, ~0.1 s of a one-image `cnn predict` on 2 cores.
        os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
        trim_folder(folder, CACHE_MAX_BYTES)
        # On a GPU, XLA's autotuning results are kept next to the compiled programs (jax's
        # default today; named here so a later default cannot silently drop it).
        os.environ.setdefault("JAX_PERSISTENT_CACHE_ENABLE_XLA_CACHES", AUTOTUNE_CACHE)
    if "XLA_FLAGS" in os.environ or not _cpu_only():
        return
    if cpu_flags_supported():
        os.environ["XLA_FLAGS"] = CPU_FLAGS


def configure_accelerator_memory() -> None:
    """Do not let jax grab 75 % of a GPU's memory at start, unless the user asks for it.

    jax preallocates by default; cnn's models need a fraction of that, and a second process
    on the same GPU (cnn predict while training) would fail. Setting
    XLA_PYTHON_CLIENT_PREALLOCATE=true or XLA_PYTHON_CLIENT_MEM_FRACTION keeps jax's way.
    No effect on a CPU.
    """
    if not any(k in os.environ for k in PREALLOCATE_VARS):
        os.environ["XLA_PYTHON_CLIENT_PREALLOCATE"] = "false"


def configure_malloc() -> bool:
    """Keep large freed blocks for reuse in this process; True when malloc was tuned.

    A train step or forward pass frees and reallocates the same multi-megabyte buffers
    every batch. By default glibc serves blocks over 128 KiB-32 MiB with a fresh mmap and
    unmaps them on free, so each batch page-faults and zeroes its activations again. With
    the thresholds raised (MALLOC_MMAP_THRESHOLD, MALLOC_TRIM_THRESHOLD) the 32x32 batch-128
    train step ran 1.1-1.3x faster (docs/performance.md); the cost is that up to 256 MiB
    of freed memory stays with the process. Only on glibc, and left alone when the user
    set any MALLOC_* variable or a glibc.malloc tunable, or preloads another allocator.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        if not (os.confstr("CS_GNU_LIBC_VERSION") or "").startswith("glibc"):
            return False
    except (ValueError, OSError):
        return False
    if any(k.startswith("MALLOC_") for k in os.environ):
        return False
    if "glibc.malloc" in os.environ.get("GLIBC_TUNABLES", ""):
        return False
    if any(name in os.environ.get("LD_PRELOAD", "") for name in _OTHER_ALLOCATORS):
        return False
    import ctypes

    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    return bool(
        libc.mallopt(_M_MMAP_THRESHOLD, MALLOC_MMAP_THRESHOLD)
        and libc.mallopt(_M_TRIM_THRESHOLD, MALLOC_TRIM_THRESHOLD)
    )


def trim_folder(folder: Path, max_bytes: int) -> None:
    """Delete the oldest files (by modification time) until folder holds under max_bytes / 2.

    jax's own size limit needs the optional filelock package; this keeps the cache bounded
    without it. A folder under the limit costs one scandir (a few hundred files: ~1 ms).
    """
    try:
        entries = [e for e in os.scandir(folder) if e.is_file(follow_symlinks=False)]
        sized = [(e.stat().st_mtime_ns, e.stat().st_size, e.path) for e in entries]
    except OSError:
        return
    total = sum(size for _, size, _ in sized)
    if total <= max_bytes:
        return
    for _, size, path in sorted(sized):
        if total <= max_bytes // 2:
            break
        try:
            os.remove(path)
            total -= size
        except OSError:
            continue


def _cpu_only() -> bool:
    """True unless the environment or an installed plugin points jax at an accelerator."""
    platforms = os.environ.get("JAX_PLATFORMS") or os.environ.get("JAX_PLATFORM_NAME") or ""
    if platforms.strip():
        return platforms.split(",")[0].strip().lower() == "cpu"
    return not any(
        name.lower().startswith(_ACCEL_PREFIXES)
        for _, names in _sys_path_listing()
        for name in names
    )


def _sys_path_listing() -> list[tuple[Path, list[str]]]:
    """(folder, entry names) for every readable sys.path folder; about a millisecond."""
    listing = []
    for entry in sys.path:
        folder = Path(entry or ".")
        try:
            listing.append((folder, os.listdir(folder)))
        except OSError:
            continue
    return listing


def _jaxlib_install() -> tuple[Path, str] | None:
    """(jaxlib package folder, version) found on sys.path without importing jaxlib."""
    for folder, names in _sys_path_listing():
        if "jaxlib" not in names:
            continue
        for name in names:
            match = re.fullmatch(r"jaxlib-([0-9][^-]*)\.dist-info", name)
            if match:
                return folder / "jaxlib", match.group(1)
    return None


def _version_tuple(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", version)[:3])


def cpu_flags_supported() -> bool:
    """Whether the installed jaxlib parses CPU_FLAGS (a cached search of its binary)."""
    found = _jaxlib_install()
    if found is None:
        return False
    folder, version = found
    if _version_tuple(version) < _MIN_JAXLIB:
        return False
    binary = _largest_library(folder)
    if binary is None:
        return False
    stat = binary.stat()
    key = f"{binary}|{version}|{stat.st_size}|{stat.st_mtime_ns}"
    checks_path = cache_dir() / _CHECKS_FILE
    checks = _read_checks(checks_path)
    if key not in checks:
        checks = {key: _binary_holds(binary, _FLAG_MARKERS)}  # one install at a time
        _write_checks(checks_path, checks)
    return bool(checks[key])


def _largest_library(folder: Path) -> Path | None:
    """The jaxlib shared library that holds XLA (the biggest .so/.pyd/.dylib in the folder)."""
    best, best_size = None, -1
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return None
    for entry in entries:
        if entry.name.endswith((".so", ".pyd", ".dylib")) and entry.is_file():
            size = entry.stat().st_size
            if size > best_size:
                best, best_size = Path(entry.path), size
    return best


def _binary_holds(path: Path, markers: tuple[bytes, ...]) -> bool:
    """True if every marker occurs in the file (memory-mapped, so no copy is made)."""
    try:
        with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
            return all(data.find(marker) >= 0 for marker in markers)
    except (OSError, ValueError):
        return False


def _read_checks(path: Path) -> dict[str, bool]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _write_checks(path: Path, checks: dict[str, bool]) -> None:
    """Best effort: without a writable cache the search simply runs again next time."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}")
        tmp.write_text(json.dumps(checks) + "\n", encoding="utf-8")
        os.replace(tmp, path)
    except OSError:
        pass
