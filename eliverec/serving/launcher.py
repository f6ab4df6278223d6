"""The ranking service as a child process (for the rollout flow and the demo): start, wait, stop."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from eliverec.errors import EliverecError


def free_port() -> int:
    """A free TCP port on the loopback interface."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def service_process(cli_args: Sequence[str], port: int | None = None, timeout_s: float = 180.0) -> Iterator[str]:
    """``eliverec serve`` with the given settings options on 127.0.0.1; yields its URL once /healthz answers 200."""
    import httpx

    port = port or free_port()
    url = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen([sys.executable, "-m", "eliverec", "serve", "--host", "127.0.0.1", "--port", str(port),
                             *cli_args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            if proc.poll() is not None:
                raise EliverecError(f"the ranking service exited with {proc.returncode}: "
                                    f"{(proc.stderr.read() if proc.stderr else '')[-2000:]}")
            try:
                if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise EliverecError(f"the ranking service at {url} was not healthy within {timeout_s:.0f} s")
            time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
