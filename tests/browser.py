"""Headless Chromium for tests: load a page from disk, read what a probe script found, screenshot.

Debian's `chromium` (apt-get install chromium; `.ci/run` installs it where apt works).
Console messages are read from Chromium's log (`--enable-logging=stderr`: every
console message is an `INFO:CONSOLE` line); the probe script (tests/report_probe.js),
embedded in the page under its CSP nonce, records page errors, blocked resources and each
<img>'s naturalWidth into a <pre id="probe-result"> that `--dump-dom` prints.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

PROBE = (Path(__file__).parent / "report_probe.js").read_text(encoding="utf-8")
_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--mute-audio"]


def chromium() -> str:
    """The Chromium executable, or skip the test saying how to get one."""
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    pytest.skip("no headless Chromium here (Debian: apt-get install chromium; .ci/run does it)")


def _run(args: list[str], profile: Path, timeout: float = 60) -> subprocess.CompletedProcess:
    cmd = [chromium(), *_FLAGS, f"--user-data-dir={profile}", "--enable-logging=stderr", "--v=0"]
    return subprocess.run(
        [*cmd, *args], capture_output=True, text=True, timeout=timeout, check=False
    )


def load_page(page: Path, width: int, profile: Path) -> tuple[dict, list[str]]:
    """Open page at this window width: (the probe's findings, console messages)."""
    done = _run(
        [
            f"--window-size={width},900",
            "--virtual-time-budget=10000",
            "--dump-dom",
            page.resolve().as_uri(),
        ],
        profile,
    )
    found = re.search(r'<pre id="probe-result">(.*?)</pre>', done.stdout, re.S)
    assert found, f"probe did not run (exit {done.returncode}): {done.stderr[-2000:]}"
    text = found.group(1).replace("&lt;", "<").replace("&gt;", ">").replace("&quot;", '"')
    result = json.loads(text.replace("&amp;", "&"))
    console = [line for line in done.stderr.splitlines() if ":CONSOLE" in line]
    return result, console


def screenshot(page: Path, png: Path, width: int, height: int, profile: Path) -> Path:
    """A PNG of the page's first `height` pixels at this window width."""
    done = _run(
        [
            f"--window-size={width},{height}",
            f"--screenshot={png.resolve()}",
            "--virtual-time-budget=10000",
            page.resolve().as_uri(),
        ],
        profile,
    )
    assert png.is_file(), f"no screenshot (exit {done.returncode}): {done.stderr[-2000:]}"
    return png
