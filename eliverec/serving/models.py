"""Champion and challenger networks, loaded by alias from the MLflow registry and hot-swapped.

:meth:`ModelManager.refresh` asks the registry which versions the ``champion`` and ``challenger``
aliases point to and loads any version it does not hold yet (by version number, so an alias that
moves during the load cannot mix two versions). The new set replaces the old one in one reference
assignment: a request in flight keeps the model it started with, so a reload drops nothing. If the
registry cannot be reached, or a version fails to load (wrong flavour, missing artifact, bad
weights), the service keeps the models it has and reports the error on ``/healthz``.

A version is loaded through ``mlflow.pyfunc`` and unwrapped: the service scores with the torch
network's serving forward (no pandas on the request path), exported to ONNX Runtime when
``serving.runtime`` is ``onnx`` (:mod:`eliverec.scoring.runtime`, checked against torch at load), and
reads the feature spec saved with it, so each variant builds its features exactly as its own
training data was built.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from eliverec.config import Settings
from eliverec.features.hashing import FeatureSpec
from eliverec.scoring.runtime import Scorer, TorchScorer, build_scorer

log = logging.getLogger(__name__)
ALIASES: tuple[str, str] = ("champion", "challenger")


@dataclass(frozen=True)
class LoadedModel:
    """One loaded registry version."""

    alias: str
    version: str
    uri: str
    network: torch.nn.Module
    spec: FeatureSpec
    model_name: str
    loaded_at: float
    settings: dict[str, Any] = field(default_factory=dict)  # the settings it was built with
    scorer: Scorer | None = None  # the network on serving.runtime (eliverec/scoring/runtime.py); None: torch

    def score(self, batch: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
        """Task scores of one request's batch (one user, one row per candidate)."""
        return (self.scorer or TorchScorer(self.network))(batch)


@dataclass
class RegistryStatus:
    """What the last refresh saw."""

    reachable: bool = False
    checked_at: float = 0.0
    aliases: dict[str, str | None] = field(default_factory=dict)
    last_error_id: str | None = None  # the log line "... (error id <id>)" has the text
    last_error_at: float | None = None
    reloads: int = 0


def load_version(settings: Settings, alias: str, version: str) -> LoadedModel:
    """Load one registered version as a :class:`LoadedModel` (raises with a clear message)."""
    from eliverec.artifact import load_network

    uri = f"models:/{settings.tracking.registered_model}/{version}"
    loaded = load_network(settings.tracking.uri, uri)
    network = loaded.network
    if not hasattr(network, "score"):
        raise RuntimeError(f"{uri} is not an eLiveRec ranker (a pyfunc RankerModel around a ranking network)")
    spec = FeatureSpec.saved(loaded.spec, settings)
    scorer = build_scorer(network, spec.vocab, spec.seq_len, settings.serving.runtime, settings.serving.torch_threads,
                          name=f"{uri} ({getattr(network, 'name', '')})")
    return LoadedModel(alias, str(version), uri, network, spec, str(getattr(network, "name", "")), time.time(),
                       loaded.settings, scorer)


class ModelManager:
    """Holds the current models and keeps them in step with the registry aliases."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.models: dict[str, LoadedModel] = {}
        self.status = RegistryStatus()
        self._refresh_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def aliases(self) -> dict[str, str | None]:
        """Alias -> version from the registry (raises when the registry cannot be reached)."""
        from eliverec import registry

        c = registry.client(self.settings)
        name = self.settings.tracking.registered_model
        c.search_registered_models(max_results=1)  # a cheap round trip that fails when the store is down
        out: dict[str, str | None] = {}
        for alias in ALIASES:
            try:
                out[alias] = str(c.get_model_version_by_alias(name, alias).version)
            except Exception as exc:  # noqa: BLE001 - MLflow raises MlflowException for "no such alias"
                if not registry.is_absent(exc):
                    raise
                out[alias] = None
        return out

    def refresh(self) -> dict[str, Any]:
        """Reload what changed; never raises (errors land in :attr:`status`). Returns a summary."""
        with self._refresh_lock:
            st = self.status
            try:
                wanted = self.aliases()
            except Exception as exc:  # noqa: BLE001 - registry down: keep serving
                st.reachable, st.checked_at = False, time.time()
                self._error(f"registry unreachable at {self.settings.tracking.uri}: {type(exc).__name__}: {exc}")
                return {"changed": [], "error_id": st.last_error_id}
            st.reachable, st.checked_at, st.aliases = True, time.time(), wanted
            current = dict(self.models)
            changed: list[str] = []
            errors: list[str] = []
            for alias, version in wanted.items():
                held = current.get(alias)
                if version is None:
                    if held is not None and alias == "challenger":  # challenger withdrawn: stop serving it
                        del current[alias]
                        changed.append(alias)
                    continue
                if held is not None and held.version == version:
                    continue
                try:
                    current[alias] = load_version(self.settings, alias, version)
                    changed.append(alias)
                except Exception as exc:  # noqa: BLE001 - a bad version must not take the service down
                    errors.append(f"{alias} version {version} failed to load: {type(exc).__name__}: {exc}")
            if changed:
                self.models = current  # one assignment: requests in flight keep their model
                st.reloads += 1
                log.info("models now %s", {a: m.version for a, m in current.items()})
            if errors:
                self._error("; ".join(errors))
            return {"changed": changed, "error_id": st.last_error_id if errors else None,
                    "versions": {a: m.version for a, m in self.models.items()}}

    def _error(self, message: str) -> None:
        error_id = secrets.token_hex(6)
        log.warning("%s (error id %s)", message, error_id)
        self.status.last_error_id, self.status.last_error_at = error_id, time.time()

    def start(self, interval_s: float) -> None:
        """Poll the registry every ``interval_s`` seconds in a daemon thread (0: never)."""
        if interval_s <= 0 or self._thread is not None:
            return

        def loop() -> None:
            while not self._stop.wait(interval_s):
                self.refresh()

        self._thread = threading.Thread(target=loop, name="model-poll", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
