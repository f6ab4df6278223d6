"""The rollout flow: an A/B ramp of the current challenger against the champion, with traffic.

Starts the ranking service (champion + challenger by registry alias), plays the simulated world's
users against it stage by stage (``ab.stages``), advances while the guardrails hold, rolls back to
0 % on a breach, and promotes the challenger through the audited registry when the ramp completes.
Every served impression lands in ``raw/<date>/`` for the next nightly run. With no challenger (or
one equal to the champion) the flow has nothing to roll out and says so.
Run it: ``python -m flows.rollout --profile tiny``.
"""

from __future__ import annotations

from typing import Any

from prefect import flow, task
from prefect.artifacts import create_markdown_artifact

from flows.common import Target, target_parser
from flows.ops import TIMEOUT_S


@task(name="ramp", retries=1, retry_delay_seconds=10, timeout_seconds=TIMEOUT_S["ramp"])
def ramp_task(target: Target, traffic_users: int | None, traffic_minutes: float) -> dict[str, Any]:
    """Service up, ramp with simulated traffic, service down (one call into eliverec per step)."""
    from eliverec import registry
    from eliverec.experiments.ramp import ramp
    from eliverec.serving.launcher import service_process

    s = target.settings()
    champion = registry.alias_version(s, registry.CHAMPION)
    challenger = registry.alias_version(s, registry.CHALLENGER)
    if champion is None or challenger is None or challenger == champion:
        return {"outcome": "skipped", "reason": f"no challenger to roll out (champion {champion}, "
                f"challenger {challenger})", "champion": champion, "challenger": challenger}
    # the simulated users post events in world time, not the server's clock: no age bound for them
    served = Target.of(s.model_copy(update={"serving": s.serving.model_copy(update={"event_max_age_s": 0})}))
    with service_process(served.cli_args()) as url:
        return ramp(s, url=url, simulate_traffic=True, traffic_users=traffic_users, traffic_minutes=traffic_minutes)


@flow(name="rollout", log_prints=True)
def rollout(profile: str = "default", overrides: list[str] | None = None, data_dir: str | None = None,
            params: str | None = None, traffic_users: int | None = None, traffic_minutes: float = 5.0) -> Any:
    """Ramp the challenger (see the module docstring)."""
    target = Target.resolve(profile, overrides or (), data_dir, params)  # params.yaml read here, once
    result = ramp_task(target, traffic_users, traffic_minutes)
    lines = [f"# Rollout: {result.get('outcome')}", ""]
    if result.get("reason"):
        lines.append(result["reason"])
    for st in result.get("stages", []):
        lines.append(f"- {st.get('percent')} %: {st.get('decision')} ({st.get('reason', '')})")
    if result.get("paths"):
        lines.append(f"\nReport: `{result['paths']['markdown']}`")
    create_markdown_artifact("\n".join(lines), key="rollout-summary", description="A/B ramp summary")
    return result


def main() -> None:
    """``python -m flows.rollout [--profile P] [--set k=v ...] [--data-dir D] [--users N] [--minutes M]``."""
    ap = target_parser(__doc__)
    ap.add_argument("--users", type=int)
    ap.add_argument("--minutes", type=float, default=5.0)
    a = ap.parse_args()
    rollout(a.profile, a.overrides, a.data_dir, a.params, a.users, a.minutes)


if __name__ == "__main__":
    main()
