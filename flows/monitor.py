"""The monitoring flow: drift, discoverability and user segments of one day (Evidently).

One task, one call into ``eliverec.monitoring``. When a monitoring test fails, the reports and
dashboard snapshots are written first and the flow ends ``Failed`` with the readable reason.
Run it: ``python -m flows.monitor --profile tiny --date 2026-09-04``.
"""

from __future__ import annotations

from typing import Any

from prefect import flow, task
from prefect.artifacts import create_markdown_artifact

from flows.common import Target, target_parser


@task(name="monitor")
def monitor_task(target: Target, date: str) -> dict[str, Any]:
    """Evidently reports + workspace snapshots for ``date`` (raises ValidationFailed on a failed test)."""
    from eliverec.monitoring.monitor import monitor_day

    return monitor_day(target.settings(), date)


@flow(name="monitor", log_prints=True)
def monitor(profile: str = "default", overrides: list[str] | None = None, data_dir: str | None = None,
            params: str | None = None, date: str | None = None) -> dict[str, Any]:
    """Monitor ``date`` (default: the newest day with samples)."""
    from eliverec.pipeline import latest_bronze_date

    target = Target(profile, tuple(overrides or ()), data_dir, params)
    day = date or latest_bronze_date(target.settings())
    summary = monitor_task(target, day)
    reports = "\n".join(f"- {name}: `{path}`" for name, path in summary.get("reports", {}).items())
    create_markdown_artifact(f"# Monitoring {day}: passed\n\n{reports}\n\nDashboards: `eliverec ui monitoring`",
                             key="monitor-summary", description="Monitoring summary")
    return summary


def main() -> None:
    """``python -m flows.monitor [--profile P] [--date D] [--set k=v ...] [--data-dir D]``."""
    ap = target_parser(__doc__)
    ap.add_argument("--date")
    a = ap.parse_args()
    monitor(a.profile, a.overrides, a.data_dir, a.params, a.date)


if __name__ == "__main__":
    main()
