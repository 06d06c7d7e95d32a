"""cnncli.training.xla_env: when XLA_FLAGS is set, that a user's choice wins, and that numbers don't move."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cnncli.training import xla_env

ROOT = Path(__file__).resolve().parents[1]
MARKERS = b"\x00".join(xla_env._FLAG_MARKERS)


def fake_site(tmp_path: Path, version: str = "0.10.2", payload: bytes = MARKERS) -> Path:
    """A sys.path folder holding a jaxlib of the given version whose library holds payload."""
    site = tmp_path / "site"
    (site / "jaxlib").mkdir(parents=True)
    (site / f"jaxlib-{version}.dist-info").mkdir()
    (site / "jaxlib" / "libjax_common.so").write_bytes(b"\x7fELF" + payload + b"\x00" * 64)
    (site / "jaxlib" / "_jax.so").write_bytes(b"\x7fELF")
    return site


@pytest.fixture
def clean_env(monkeypatch, tmp_path):
    """No XLA/JAX variables, a private cache folder, and jax looking not yet imported."""
    for name in (
        "XLA_FLAGS",
        "JAX_PLATFORMS",
        "JAX_PLATFORM_NAME",
        "JAX_COMPILATION_CACHE_DIR",
        "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS",
        "JAX_PERSISTENT_CACHE_ENABLE_XLA_CACHES",
        "XLA_PYTHON_CLIENT_PREALLOCATE",
        "XLA_PYTHON_CLIENT_MEM_FRACTION",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delitem(sys.modules, "jax", raising=False)
    return monkeypatch


def test_sets_flags_when_jaxlib_accepts_them(clean_env, tmp_path):
    clean_env.setattr(sys, "path", [str(fake_site(tmp_path))])
    xla_env.configure_xla()
    assert os.environ["XLA_FLAGS"] == xla_env.CPU_FLAGS
    checks = json.loads((tmp_path / "cache" / "cnn" / "xla-flags.json").read_text())
    assert list(checks.values()) == [True]


def test_cached_check_is_reused(clean_env, tmp_path):
    clean_env.setattr(sys, "path", [str(fake_site(tmp_path))])
    assert xla_env.cpu_flags_supported()
    clean_env.setattr(xla_env, "_binary_holds", lambda *a: pytest.fail("searched again"))
    assert xla_env.cpu_flags_supported()


@pytest.mark.parametrize(
    ("version", "payload"),
    [("0.10.2", b"xla_cpu_experimental_xnn_fusion_type\x00"), ("0.9.0", MARKERS)],
    ids=["flag-missing-from-binary", "jaxlib-too-old"],
)
def test_leaves_flags_alone_when_jaxlib_may_reject_them(clean_env, tmp_path, version, payload):
    clean_env.setattr(sys, "path", [str(fake_site(tmp_path, version, payload))])
    xla_env.configure_xla()
    assert "XLA_FLAGS" not in os.environ


def test_no_jaxlib_no_flags(clean_env, tmp_path):
    clean_env.setattr(sys, "path", [str(tmp_path)])
    xla_env.configure_xla()
    assert "XLA_FLAGS" not in os.environ


@pytest.mark.parametrize("value", ["--xla_cpu_use_thunk_runtime=true", ""])
def test_user_xla_flags_untouched(clean_env, tmp_path, value):
    clean_env.setattr(sys, "path", [str(fake_site(tmp_path))])
    clean_env.setenv("XLA_FLAGS", value)
    xla_env.configure_xla()
    assert os.environ["XLA_FLAGS"] == value


@pytest.mark.parametrize(
    ("env", "plugin"),
    [
        ({"JAX_PLATFORMS": "cuda,cpu"}, None),
        ({"JAX_PLATFORMS": "tpu"}, None),
        ({}, "jax_cuda12_plugin"),
    ],
)
def test_accelerators_get_no_cpu_flags(clean_env, tmp_path, env, plugin):
    site = fake_site(tmp_path)
    if plugin:
        (site / plugin).mkdir()
    clean_env.setattr(sys, "path", [str(site)])
    for name, value in env.items():
        clean_env.setenv(name, value)
    xla_env.configure_xla()
    assert "XLA_FLAGS" not in os.environ


def test_explicit_cpu_platform_gets_flags(clean_env, tmp_path):
    clean_env.setattr(sys, "path", [str(fake_site(tmp_path))])
    clean_env.setenv("JAX_PLATFORMS", "cpu")
    xla_env.configure_xla()
    assert os.environ["XLA_FLAGS"] == xla_env.CPU_FLAGS


def test_nothing_once_jax_is_imported(clean_env, tmp_path):
    clean_env.setattr(sys, "path", [str(fake_site(tmp_path))])
    clean_env.setitem(sys.modules, "jax", object())
    xla_env.configure_xla()
    assert "XLA_FLAGS" not in os.environ
    assert "JAX_COMPILATION_CACHE_DIR" not in os.environ
    assert "XLA_PYTHON_CLIENT_PREALLOCATE" not in os.environ


def test_compile_cache_under_user_cache_unless_set(clean_env, tmp_path):
    clean_env.setattr(sys, "path", [str(tmp_path)])
    xla_env.configure_xla()
    assert os.environ["JAX_COMPILATION_CACHE_DIR"] == str(tmp_path / "cache" / "cnn" / "jax")
    assert os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] == "0"
    clean_env.setenv("JAX_COMPILATION_CACHE_DIR", "/elsewhere")
    xla_env.configure_xla()
    assert os.environ["JAX_COMPILATION_CACHE_DIR"] == "/elsewhere"


def test_gpu_memory_not_preallocated_unless_asked_and_autotune_results_cached(clean_env, tmp_path):
    clean_env.setattr(sys, "path", [str(tmp_path)])
    xla_env.configure_xla()
    assert os.environ["XLA_PYTHON_CLIENT_PREALLOCATE"] == "false"
    assert os.environ["JAX_PERSISTENT_CACHE_ENABLE_XLA_CACHES"] == xla_env.AUTOTUNE_CACHE
    for asked in (
        {"XLA_PYTHON_CLIENT_PREALLOCATE": "true"},
        {"XLA_PYTHON_CLIENT_MEM_FRACTION": ".9"},
    ):
        for name in xla_env.PREALLOCATE_VARS:
            clean_env.delenv(name, raising=False)
        for name, value in asked.items():
            clean_env.setenv(name, value)
        xla_env.configure_xla()
        assert os.environ.get("XLA_PYTHON_CLIENT_PREALLOCATE") == asked.get(
            "XLA_PYTHON_CLIENT_PREALLOCATE"
        )


def test_trim_folder_drops_oldest_files_first(tmp_path):
    for i in range(10):
        path = tmp_path / f"entry{i}"
        path.write_bytes(b"x" * 100)
        os.utime(path, ns=(i * 10**9, i * 10**9))
    xla_env.trim_folder(tmp_path, 1000)  # at the limit: nothing goes
    assert len(list(tmp_path.iterdir())) == 10
    xla_env.trim_folder(tmp_path, 999)  # over: down to half, the oldest first
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"entry{i}" for i in range(6, 10)]
    xla_env.trim_folder(tmp_path / "missing", 10)  # no folder yet: nothing to do


def test_cli_import_leaves_jax_out():
    code = "import sys, cnncli.cli, cnncli.training.xla_env; print('jax' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True
    )
    assert out.stdout.strip() == "False"


# The real train step, a few Adam steps on fixed data; prints the losses and XLA_FLAGS seen.
TRAIN_STEPS = """
import json, os, sys
if sys.argv[1] == "configure":
    from cnncli.training.xla_env import configure_xla
    configure_xla()
import jax, numpy as np
from cnncli.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from cnncli.model.flax_module import init_weights
from cnncli.training.steps import make_steps
from cnncli.training.optimizer import make_optimizer

cfg = RunConfig(
    model=ModelConfig(dropout=0.0),
    data=DataConfig(image_size=16),
    train=TrainConfig(batch_size=16, warmup_epochs=0, schedule="constant"),
)
params, stats = init_weights(cfg.model, image_size=16, channels=3, num_classes=4, seed=0)
tx = make_optimizer(cfg.train, 10)
train_step, _ = make_steps(cfg, tx, None)
state = {"params": params, "stats": stats, "opt": tx.init(params)}
rng = np.random.default_rng(0)
losses = []
for step in range(6):
    images = rng.integers(0, 256, (16, 16, 16, 3), dtype=np.uint8)
    labels = rng.integers(0, 4, 16).astype(np.int32)
    state, (loss_sum, _, count) = train_step(
        state, images, labels, np.ones(16, np.float32), jax.random.key(step)
    )
    losses.append(float(loss_sum) / float(count))
print(json.dumps({"flags": os.environ.get("XLA_FLAGS"), "losses": losses}))
"""


def test_flags_leave_training_numbers_unchanged(tmp_path):
    """jax's default CPU kernels and the flagged ones give the same losses, step by step."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("XLA_", "JAX_"))}
    env["XDG_CACHE_HOME"] = str(tmp_path)
    env["JAX_PLATFORMS"] = "cpu"
    procs = {  # both at once: each is mostly jax start-up and one compile
        mode: subprocess.Popen(
            [sys.executable, "-c", TRAIN_STEPS, mode],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=ROOT,
            env=env,
        )
        for mode in ("configure", "default")
    }
    runs = {}
    for mode, proc in procs.items():
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err[-2000:]
        runs[mode] = json.loads(out.strip().splitlines()[-1])
    if runs["configure"]["flags"] is None:
        pytest.skip("the installed jaxlib does not take cnncli.training.xla_env.CPU_FLAGS")
    assert runs["configure"]["flags"] == xla_env.CPU_FLAGS
    assert runs["default"]["flags"] is None
    assert runs["configure"]["losses"] == pytest.approx(runs["default"]["losses"], abs=1e-4)
    assert len(set(runs["default"]["losses"])) > 1  # the steps did update the weights


def _malloc_tuned(env_extra: dict[str, str]) -> str:
    """configure_malloc()'s answer in a fresh interpreter with these extra variables."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    env.pop("LD_PRELOAD", None)
    env.update(env_extra)
    code = "from cnncli.training.xla_env import configure_malloc; print(configure_malloc())"
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True, check=True
    )
    return done.stdout.strip()


@pytest.mark.skipif(
    not sys.platform.startswith("linux")
    or not (os.confstr("CS_GNU_LIBC_VERSION") or "").startswith("glibc"),
    reason="malloc tuning is for glibc on Linux only",
)
def test_malloc_tuned_on_glibc_unless_the_user_chose():
    assert _malloc_tuned({}) == "True"
    assert _malloc_tuned({"MALLOC_ARENA_MAX": "2"}) == "False"
    assert _malloc_tuned({"MALLOC_TRIM_THRESHOLD_": "1000000"}) == "False"
    assert _malloc_tuned({"GLIBC_TUNABLES": "glibc.malloc.mmap_threshold=65536"}) == "False"
    assert _malloc_tuned({"LD_PRELOAD": "/nonexistent/libjemalloc.so.2"}) == "False"
