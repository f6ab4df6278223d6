"""Helpers for the tests that open a real web UI: a free port, waiting for HTTP, headless Chromium."""

from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path

CHROMIUM = "/usr/bin/chromium"
NO_CHROMIUM = "chromium not installed (apt-get install -y chromium)"


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_http(url: str, timeout: float) -> None:
    """Poll ``url`` until it answers 200; ``TimeoutError`` after ``timeout`` seconds."""
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise TimeoutError(f"{url} not up after {timeout} s")


def chromium(url: str, profile: Path, *extra: str) -> subprocess.CompletedProcess:
    """Headless Chromium on ``url`` (``--dump-dom`` or ``--screenshot=PATH`` in ``extra``), offline-safe flags."""
    return subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                           "--disable-background-networking", "--disable-component-update", "--disable-sync",
                           f"--user-data-dir={profile}", "--window-size=1400,1000", "--virtual-time-budget=15000",
                           *extra, url], capture_output=True, text=True, timeout=90)


def stop(proc: subprocess.Popen) -> None:
    """Terminate a server started by a test (kill it if it does not exit in 15 s)."""
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
