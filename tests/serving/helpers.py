"""Shared helpers of the serving and experiment tests: a tiny world on disk, registered models, a live server.

The tiny world (simulate -> ingest -> features) is built once per test session and cached here,
so both test folders share it; every test copies nothing from it but reads its bronze data and
writes into its own temporary data root.
"""

from __future__ import annotations

import atexit
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from eliverec.config import Settings, load_settings
from tests.conftest import PARAMS, tracking_uri

# Small vocabularies keep the tiny networks (and their training) small; every stage uses the same ones.
VOCAB = ["features.vocab.user=5003", "features.vocab.product=5003", "features.vocab.brand=503",
         "features.vocab.channel=1009", "features.vocab.anchor=1009", "features.vocab.category=101"]


@dataclass(frozen=True)
class TinyWorld:
    root: Path
    dates: list[str]
    settings_tiny: Settings  # the settings the world was built with

    def settings(self, tmp: Path, *overrides: str, private: bool = True) -> Settings:
        """Tiny settings with the MLflow store in ``tmp``; ``private``: on a copy of the world's data in ``tmp``.

        Events carry the simulated world's time, so the service's event age bound is off unless overridden.
        """
        data = copy_world(self, tmp / "data") if private else self.root
        return load_settings("tiny", overrides=[*VOCAB, f"tracking.uri={tracking_uri(tmp / 'mlruns')}",
                                                "serving.reload_poll_s=0.5", "serving.event_max_age_s=0",
                                                *overrides],
                             params=PARAMS, data_dir=data)


@cache
def tiny_world() -> TinyWorld:
    """simulate -> ingest -> features for the tiny profile, once per session."""
    from eliverec.data.ingest import ingest_day
    from eliverec.features.build import build_features
    from eliverec.world import simulate

    root = Path(tempfile.mkdtemp(prefix="eliverec-serving-world-"))
    atexit.register(shutil.rmtree, root, ignore_errors=True)
    s = load_settings("tiny", overrides=VOCAB, params=PARAMS, data_dir=root / "data")
    res = simulate(s, progress=False)
    for date in res["dates"]:
        ingest_day(s, date)
    build_features(s, res["dates"][-1])
    return TinyWorld(root / "data", list(res["dates"]), s)


def copy_world(world: TinyWorld, dest: Path) -> Path:
    """A private copy of the world's raw, bronze and features (tests that write logs or allocations)."""
    for part in ("raw", "bronze", "features"):
        shutil.copytree(world.root / part, dest / part)
    return dest


def register_untrained(settings: Settings, seed: int = 0) -> str:
    """Register an untrained network (deterministic for ``seed``) with gate verdict ``pass``."""
    from eliverec import registry
    from eliverec.experiments.controls import log_network
    from eliverec.models import build_model

    s = settings.model_copy(update={"seed": seed})
    uri, run_id = log_network(settings, build_model(s), run_name=f"untrained-{seed}",
                              network_settings=s.section_dict())
    version = registry.register(settings, uri, {"model_name": settings.model.name}, run_id=run_id)
    registry.set_verdict(settings, version, "pass")
    return version


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Running:
    url: str
    app: object
    server: object

    @property
    def service(self):  # noqa: ANN201 - eliverec.serving.app.Service
        return self.app.state.service


@contextmanager
def running_service(settings: Settings) -> Iterator[Running]:
    """The real app under uvicorn on a free loopback port, in a thread; stopped on exit."""
    import uvicorn

    from eliverec.serving.app import create_app

    port = free_port()
    app = create_app(settings)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 120
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the service did not start")
        time.sleep(0.05)
    try:
        yield Running(f"http://127.0.0.1:{port}", app, server)
    finally:
        server.should_exit = True
        thread.join(timeout=30)
