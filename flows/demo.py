"""``make demo``: the whole loop on one laptop, then where to look.

nightly (simulate 8 days + warm-up, ingest, validate, features, bootstrap the ETA champion, train and
gate eLiveRec) -> rollout (A/B ramp of the challenger against simulated users, when there is one)
-> monitor (every day of the window that has a reference day, backfilled in one pass, so the
dashboards show a series) -> a short report and the commands that open the UIs.
"""

from __future__ import annotations

import time
from typing import Any

# A shortened ramp for the demo: fewer stages and smaller samples per stage than params.yaml's
# production ramp (1 -> 5 -> 20 -> 50 %, 200 users per variant), so it ends in minutes.
DEMO_RAMP = ["ab.stages=[10, 50]", "ab.min_users=100", "ab.min_impressions=1000"]


def _run(flow: Any, *args: Any, **kwargs: Any) -> tuple[Any, float]:
    t0 = time.time()
    state = flow(*args, return_state=True, **kwargs)
    return state, time.time() - t0


def _line(name: str, state: Any, seconds: float) -> str:
    return f"{name:<9} {state.name:<10} {seconds:6.0f} s  {state.message or ''}".rstrip()


def main() -> None:
    """Run the demo for ``--profile`` (default: default) and print the report."""
    from eliverec.config import load_settings
    from flows.common import target_parser
    from flows.monitor import monitor
    from flows.nightly import nightly
    from flows.rollout import rollout

    a = target_parser(__doc__).parse_args()
    started = time.time()
    s = load_settings(a.profile, overrides=a.overrides, params=a.params, data_dir=a.data_dir)
    lines = []
    state, sec = _run(nightly, a.profile, a.overrides, a.data_dir, a.params, source="simulate")
    lines.append(_line("nightly", state, sec))
    if state.is_completed():
        lines += _control_if_no_challenger(s)
        ramp_overrides = [*a.overrides, *DEMO_RAMP] if a.profile != "tiny" else a.overrides
        users = min(s.world.n_users, 2000)
        state, sec = _run(rollout, a.profile, ramp_overrides, a.data_dir, a.params, users, 5.0)
        outcome = state.result(raise_on_failure=False) if state.is_completed() else None
        lines.append(_line("rollout", state, sec) + (f" outcome: {outcome.get('outcome')}"
                                                      if isinstance(outcome, dict) else ""))
        _retire_control(s)
        state, sec = _run(monitor, a.profile, a.overrides, a.data_dir, a.params, backfill=True)
        lines.append(_line("monitor", state, sec) + _monitored(state))
    _report(s, lines, time.time() - started)


def _monitored(state: Any) -> str:
    """How many days the monitoring backfill covered and its time per day."""
    result = state.result(raise_on_failure=False) if not state.is_failed() else None
    if not isinstance(result, dict) or not result:
        return ""
    per_day = sum(r["seconds"] for r in result.values()) / len(result)
    return f" ({len(result)} days {min(result)}..{max(result)}, {per_day:.0f} s a day)"


def _control_if_no_challenger(s: Any) -> list[str]:
    """No gated challenger tonight: exercise the ramp with a labelled negative control instead.

    The control is the champion's own network ranking in reverse (``eliverec.experiments.controls``),
    registered with the tag ``control=negative``; the ramp's guardrails should roll it back.
    """
    from eliverec import registry
    from eliverec.experiments.controls import register_control

    champion = registry.alias_version(s, registry.CHAMPION)
    challenger = registry.alias_version(s, registry.CHALLENGER)
    if champion is None or (challenger is not None and challenger != champion):
        return []
    control = register_control(s, champion, "negative", reason="demo: no challenger passed the gate tonight")
    registry.set_challenger(s, control, "demo: negative control to exercise the A/B ramp")
    return [f"(no challenger passed the gate: the ramp runs with v{control}, a negative control of the champion"
            " that ranks in reverse; its guardrails should roll it back)"]


def _retire_control(s: Any) -> None:
    """A negative control must not stay challenger after the demo's ramp."""
    from eliverec import registry

    challenger = registry.alias_version(s, registry.CHALLENGER)
    if challenger and registry.client(s).get_model_version(s.tracking.registered_model, challenger).tags.get("control"):
        registry.clear_challenger(s, "demo: the negative control's ramp is over")


def _report(s: Any, lines: list[str], seconds: float) -> None:
    from eliverec import registry

    lay = s.layout
    champion = registry.alias_version(s, registry.CHAMPION)
    challenger = registry.alias_version(s, registry.CHALLENGER)
    gates = sorted(lay.reports("gate").glob("*/*.md"))
    print("\n" + "=" * 78)
    print(f"eLiveRec demo ({s.profile} profile) finished in {seconds / 60:.1f} min\n")
    print("\n".join(lines))
    print(f"\nregistry '{s.tracking.registered_model}': champion v{champion}, challenger v{challenger}"
          "  (eliverec models)")
    print("\nwhere the results are:")
    for label, path in [("raw logs", lay.raw()), ("bronze + manifests", lay.bronze()),
                        ("quarantine", lay.quarantine()), ("validation reports", lay.validation()),
                        ("Data Docs (GE)", lay.data_docs_index()),
                        ("samples + tensors", lay.features()), ("evaluation reports", lay.reports("evaluation")),
                        ("gate verdicts", gates[-1] if gates else lay.reports("gate")),
                        ("A/B ramp + report", lay.experiment()), ("monitoring HTML", lay.reports("monitoring")),
                        ("audit log", lay.audit_log()), ("MLflow store", s.tracking.uri)]:
        print(f"  {label:<20} {path}")
    print("\nopen the UIs (each serves on 127.0.0.1 until Ctrl-C):")
    print("  eliverec ui mlflow        # runs, metrics, the model registry (http://127.0.0.1:5000)")
    print("  eliverec ui prefect       # flow runs and their summary artifacts (http://127.0.0.1:4200)")
    print("  eliverec ui monitoring    # Evidently dashboards over days (http://127.0.0.1:8000)")
    print("  eliverec ui docs          # Great Expectations Data Docs: every validation of bronze")
    print("  (run them from the venv: . .venv/bin/activate)")
    versions = [v for v in registry.list_versions(s) if not v["tags"].get("control")]
    if versions:
        latest = versions[0]
        n = latest["version"]
        print(f"\nnewest version: v{n} ({latest['model']}), gate verdict: {latest['verdict'] or 'none'}"
              f" (report {latest['tags'].get('gate_report', 'n/a')})")
        if latest["verdict"] == "pass" and n != champion:
            print(f"promote it by hand:   eliverec promote --version {n} --reason '...'")
        elif latest["verdict"] != "pass":
            print(f"the gate rejected it; to override (audited): eliverec promote --version {n} --force --reason '...'")
    print("roll back the champion: eliverec rollback --reason '...'")


if __name__ == "__main__":
    main()
