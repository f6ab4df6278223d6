"""The monitoring flow: drift, discoverability and user segments of one day or a backfill of days (Evidently).

One task per day, each one call into ``eliverec.monitoring``. An alarm (a drifted column, a label
rate or a discoverability gate beyond its bound) is a verdict, not a crash: the reports and
dashboard snapshots are written, the flow ends in a ``Completed`` state named ``Alarm`` whose
message names the days and what moved, with a table artifact (``monitor-alarms``), and it POSTs
that table as JSON to ``monitor.alarm_webhook`` when one is set. A Prefect automation can notify
instead: trigger on the event ``prefect.flow-run.Alarm``. Only a broken run (missing inputs, an
unreachable webhook) ends ``Failed``.

Run it: ``python -m flows.monitor --profile tiny --date 2026-09-04`` (``--backfill``: every day up
to ``--date`` that has samples and a reference day with samples, in one pass).
"""

from __future__ import annotations

from typing import Any

from prefect import flow, task
from prefect.artifacts import create_markdown_artifact
from prefect.states import Completed

from flows.common import Target, markdown_table, target_parser
from flows.ops import TIMEOUT_S, publish_monitor

ALARM = "Alarm"
_DRIFT_TEST = "Value Drift for column"  # Evidently's name of a ValueDrift test (its rows are in summary["alarms"])


@task(name="monitor", timeout_seconds=TIMEOUT_S["monitor"])
def monitor_task(target: Target, date: str) -> dict[str, Any]:
    """Evidently reports + workspace snapshots for ``date``; an alarm is in the summary, not raised."""
    from eliverec.monitoring.monitor import monitor_day

    return monitor_day(target.settings(), date, raise_on_alarm=False)


@task(name="notify", timeout_seconds=TIMEOUT_S["notify"])
def notify_task(url: str, payload: dict[str, Any]) -> int:
    """POST the alarm table to ``monitor.alarm_webhook``; raise (the run fails) when it cannot be delivered."""
    import httpx

    try:
        response = httpx.post(url, json=payload, timeout=10.0)
        response.raise_for_status()
    except httpx.HTTPError as exc:
        raise RuntimeError(f"monitor.alarm_webhook {url}: the alarm could not be delivered ({exc}); fix the URL in "
                           "params.yaml (monitor.alarm_webhook) or set it to null") from exc
    return response.status_code


@flow(name="monitor", log_prints=True)
def monitor(profile: str = "default", overrides: list[str] | None = None, data_dir: str | None = None,
            params: str | None = None, date: str | None = None, backfill: bool = False) -> Any:
    """Monitor ``date`` (default: the newest bronze day) or, with ``backfill``, every monitorable day up to it."""
    from eliverec.monitoring.monitor import monitorable_days
    from eliverec.pipeline import latest_bronze_date

    target = Target.resolve(profile, overrides or (), data_dir, params)  # params.yaml read here, once
    s = target.settings()
    day = date or latest_bronze_date(s)
    days = monitorable_days(s, day) if backfill else [day]
    summaries = {d: monitor_task(target, d) for d in days}
    alarmed = {d: r for d, r in summaries.items() if not r["passed"]}
    create_markdown_artifact(_summary_markdown(summaries), key="monitor-summary", description="Monitoring summary")
    publish_monitor(s, summaries)
    if not alarmed:
        return summaries
    rows = _alarm_rows(alarmed)
    create_markdown_artifact(f"# Monitoring alarm\n\n{markdown_table(rows)}", key="monitor-alarms",
                             description="What moved, per day")
    message = "; ".join(f"{d}: " + ", ".join(_moved(r)) for d, r in alarmed.items())
    if s.monitor.alarm_webhook:
        notify_task(s.monitor.alarm_webhook, {"flow": "monitor", "state": ALARM, "days": list(alarmed),
                                              "alarms": rows, "message": message})
    return Completed(name=ALARM, message=f"alarm on {len(alarmed)} of {len(days)} day(s): {message}", data=summaries)


def _moved(summary: dict[str, Any]) -> list[str]:
    """What alarmed on a day, short: the drifted columns, then any other failed test in full."""
    drifted = [f"{a['column']} drifted ({a['distance']:.3f} >= {a['threshold']:.3f})" for a in summary["alarms"]]
    return drifted + [f for f in summary["failures"] if _DRIFT_TEST not in f]


def _alarm_rows(alarmed: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Drifted columns with their distance and learned threshold; other failed tests as one row each."""
    rows = []
    for d, r in alarmed.items():
        rows += [{k: a[k] for k in ("date", "column", "distance", "threshold", "source", "null_median", "null_max")}
                 for a in r["alarms"]]
        rows += [{"date": d, "column": f, "distance": None, "threshold": None, "source": "test", "null_median": None,
                  "null_max": None} for f in r["failures"] if _DRIFT_TEST not in f]
    return rows


def _summary_markdown(summaries: dict[str, dict[str, Any]]) -> str:
    rows = [{"day": d, "verdict": "passed" if r["passed"] else ALARM, "drifted": ", ".join(r["drift"]["drifted"]),
             "failed tests": len(r["failures"]), "report": r["reports"]["markdown"], "seconds": r["seconds"]}
            for d, r in summaries.items()]
    head = ", ".join(f"Monitoring {d}: {'passed' if r['passed'] else ALARM}" for d, r in summaries.items())
    return f"# {head}\n\n{markdown_table(rows)}\n\nDashboards: `eliverec ui monitoring`"


def main() -> None:
    """``python -m flows.monitor [--profile P] [--date D] [--backfill] [--set k=v ...] [--data-dir D]``."""
    ap = target_parser(__doc__)
    ap.add_argument("--date")
    ap.add_argument("--backfill", action="store_true", help="every monitorable day up to --date, in one pass")
    a = ap.parse_args()
    monitor(a.profile, a.overrides, a.data_dir, a.params, a.date, a.backfill)


if __name__ == "__main__":
    main()
