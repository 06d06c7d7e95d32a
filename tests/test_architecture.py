"""The house (docs/architecture.md): rooms import only downward and peers stay apart,
checked by import-linter's contracts in pyproject.toml; no module grows past its job."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_import_contracts_hold():
    """`lint-imports` (import-linter) over cnncli: every contract kept. A new upward import
    or loop fails here with the importing and imported module named."""
    exe = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    if exe is None:
        pytest.skip("import-linter is not installed (pip install -e '.[test]')")
    done = subprocess.run(
        [exe, "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert "0 broken" in done.stdout


def test_every_room_says_what_it_owns():
    """Each subpackage opens with a docstring (what the room holds)."""
    for init in sorted((ROOT / "cnncli").rglob("__init__.py")):
        text = init.read_text(encoding="utf-8").lstrip()
        assert text.startswith('"""') and len(text) > 40, init
