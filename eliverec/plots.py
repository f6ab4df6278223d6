"""Tables for ``dvc plots`` and ``dvc metrics``: training curves, gate metrics per nightly date, discoverability.

Three CSV files (one row per point; ``dvc.yaml`` declares which columns are plotted):

- ``train_curve.csv``: the training run's MLflow metric history, one row per logged step (losses,
  validation AUC), read back from the tracking store (the trainer logs it there);
- ``gate.csv``: one row per test day (the nightly date): the verdict, the failed-check count and the
  candidate's and champion's primary metrics; a rerun for a day replaces that day's row, other days stay;
- ``discoverability.csv``: one row per ingested (bronze) day: exposure discoverability
  per window, coverage of the catalogue and the Gini of impressions (the same functions as the
  monitoring reports, :mod:`eliverec.monitoring.metrics`), so its curve grows with the nightly runs.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from eliverec.config import Settings
from eliverec.data.atomic import write_bytes_atomic
from eliverec.errors import DataError

GATE_METRICS = ("auc", "gauc", "ndcg@10")
CURVES = ("loss/total", "val/auc")  # always columns of train_curve.csv (dvc.yaml plots them)


def _write_csv(path: Path, frame: Any) -> Path:
    write_bytes_atomic(path, frame.to_csv(index=False).encode())
    return path


def training_curve(settings: Settings, run_id: str, path: Path) -> Path:
    """Write the loss and validation curves of ``run_id`` (``loss/*``, ``val/*``; one column each) to ``path``."""
    import pandas as pd
    from mlflow.tracking import MlflowClient

    client = MlflowClient(settings.tracking.uri)
    keys = sorted(client.get_run(run_id).data.metrics)
    rows = [(m.step, key, m.value) for key in keys for m in client.get_metric_history(run_id, key)]
    long = pd.DataFrame(rows, columns=["step", "metric", "value"])
    wide = long.pivot_table(index="step", columns="metric", values="value", aggfunc="last")
    curves = sorted({*CURVES, *(k for k in wide.columns if k.startswith(("loss/", "val/")))})
    return _write_csv(path, wide.reindex(columns=curves).reset_index())


def gate_row(gate_json: Path) -> dict[str, Any]:
    """One nightly date's gate numbers from the file ``eliverec gate --out`` wrote (and its report)."""
    verdict = json.loads(gate_json.read_text())
    report = Path(verdict["report"]).with_suffix(".json")
    if not report.is_file():
        raise DataError(f"{report}: the gate report named by {gate_json} is missing; rerun `eliverec gate`")
    rep = json.loads(report.read_text())
    champion = rep.get("champion_metrics") or {}
    row: dict[str, Any] = {"date": rep["date"], "passed": int(verdict["passed"]),
                           "failed_checks": len(verdict["failed"])}
    for key in GATE_METRICS:
        row[f"candidate_{key}"] = rep["candidate_metrics"].get(key)
        row[f"champion_{key}"] = champion.get(key)
    return row


def upsert_by_date(path: Path, row: dict[str, Any]) -> Path:
    """Put ``row`` into the CSV at ``path`` (created if missing), replacing the row of the same ``date``."""
    import pandas as pd

    old = pd.read_csv(path) if path.is_file() else pd.DataFrame(columns=list(row))
    new = pd.concat([old[old["date"] != row["date"]], pd.DataFrame([row])], ignore_index=True)
    return _write_csv(path, new.sort_values("date"))


def discoverability_days(settings: Settings, path: Path) -> Path:
    """Write the exposure discoverability, coverage and Gini of every feature day to ``path``."""
    import numpy as np
    import pandas as pd

    from eliverec.monitoring import frames
    from eliverec.monitoring.metrics import ALL, discoverability, gini, impressions_of

    m = settings.monitor
    days = settings.layout.bronze_dates()
    rows = []
    for day in days:
        frame, _ = frames.channel_frame(Path(settings.data_dir), day, max(m.windows), m.popularity_days)
        shown = impressions_of(frame, ALL)
        row: dict[str, Any] = {"date": day}
        for w in m.windows:
            row[f"discoverability_{w}d"] = discoverability(frame["days_since_exposure"].to_numpy(), shown, w)[0]
        row["coverage"], row["gini"] = float(np.mean(shown > 0)), gini(shown)
        rows.append(row)
    columns = ["date", *[f"discoverability_{w}d" for w in m.windows], "coverage", "gini"]
    return _write_csv(path, pd.DataFrame(rows, columns=columns))
