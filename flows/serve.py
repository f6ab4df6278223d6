"""Scheduled deployments: nightly at ``flows.nightly_cron`` and monitoring at ``flows.monitor_cron``,
both in ``flows.timezone``, served by one long-running process (``eliverec flows serve``).

``serve`` needs a real Prefect server (``eliverec ui prefect`` locally, or a shared one): set
``PREFECT_API_URL``. For a team, deploy the same flows to a process/Docker work pool instead
(see the README); the schedules and parameters are the same.
"""

from __future__ import annotations

import os

from eliverec.config import load_settings
from eliverec.errors import EliverecError


def deployments(profile: str, overrides: list[str], data_dir: str | None, params: str | None) -> list:
    """The deployments with their schedules and parameters (no server needed to build them)."""
    from prefect.schedules import Cron

    from flows.monitor import monitor
    from flows.nightly import nightly

    s = load_settings(profile, overrides=overrides, params=params, data_dir=data_dir)
    base = {"profile": profile, "overrides": overrides, "data_dir": data_dir, "params": params}
    return [
        nightly.to_deployment(name="nightly", schedule=Cron(s.flows.nightly_cron, timezone=s.flows.timezone),
                              parameters={**base, "source": s.flows.source}),
        monitor.to_deployment(name="monitor", schedule=Cron(s.flows.monitor_cron, timezone=s.flows.timezone),
                              parameters=base),
    ]


def serve_all(profile: str, overrides: list[str], data_dir: str | None, params: str | None) -> None:
    """Serve every deployment until interrupted."""
    from prefect import serve

    if not os.environ.get("PREFECT_API_URL"):
        raise EliverecError("scheduled flows need a Prefect server: run `eliverec ui prefect` and "
                            "export PREFECT_API_URL=http://127.0.0.1:4200/api (see the README)")
    serve(*deployments(profile, overrides, data_dir, params))
