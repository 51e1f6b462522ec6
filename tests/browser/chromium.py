"""Debian's Chromium for the browser tests: found at /usr/bin/chromium, or installed with apt-get when missing.

Playwright drives it through the driver inside its wheel; `playwright install` is never run (it downloads a
browser of its own, which is neither needed nor possible without network access to its CDN).
"""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

CHROMIUM = Path("/usr/bin/chromium")
#: Flags for a headless browser that talks to nobody but the page under test.
LAUNCH_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
INSTALL = "apt-get update && apt-get install -y chromium"


class ChromiumUnavailable(RuntimeError):
    """Chromium is not installed and could not be installed here; the message says what to do."""


def _run(command: list[str], timeout_s: float) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout_s, env=env, check=False)


def install_chromium(timeout_s: float = 900) -> None:
    """`apt-get update && apt-get install -y chromium`, as root; ChromiumUnavailable when it cannot."""
    if shutil.which("apt-get") is None:
        raise ChromiumUnavailable(f"{CHROMIUM} is missing and there is no apt-get here: install Chromium by hand")
    if os.geteuid() != 0:
        raise ChromiumUnavailable(f"{CHROMIUM} is missing and the tests do not run as root: run `sudo sh -c '{INSTALL}'`")
    for command in (["apt-get", "update"], ["apt-get", "install", "-y", "chromium"]):
        try:
            result = _run(command, timeout_s)
        except subprocess.TimeoutExpired as exc:
            raise ChromiumUnavailable(f"`{' '.join(command)}` did not finish within {timeout_s:.0f} s") from exc
        if result.returncode != 0:
            tail = "\n".join((result.stdout + result.stderr).splitlines()[-15:])
            raise ChromiumUnavailable(f"`{' '.join(command)}` failed with exit code {result.returncode}:\n{tail}")


def ensure_chromium() -> Path:
    """The Chromium executable, installed first when missing."""
    if not (CHROMIUM.is_file() and os.access(CHROMIUM, os.X_OK)):
        install_chromium()
        if not CHROMIUM.is_file():
            raise ChromiumUnavailable(f"apt-get installed chromium but {CHROMIUM} is still missing")
    return CHROMIUM
