"""The data root: every folder and file name under it, date partitions and day arithmetic.

One data root (``--data-dir``, default ``data/``) is a complete world: a stage never joins a path
under it by hand; it asks :class:`DataLayout`. The tree (DESIGN section 3, plus the state of the
tools around the stages):

```
raw/<date>/events-*.jsonl[.gz], users|channels|products.parquet   the platform's input
bronze/<date>/<event>.parquet, _manifest.json                      typed, deduplicated
quarantine/<date>/quarantine.parquet, _manifest.json               bad lines and why
validation/<date>/<suite>.json|.md                                 Great Expectations reports
features/<date>/samples.parquet, tensors/<key>.npy, feature_spec.json, _summary.json
features/feature_spec.json, _build.json                            the last build's spec and record
checkpoints/<run>/network.pt                                       training checkpoints
reports/<kind>/<date>/...                                          evaluation, gate, monitoring, ope, tune
experiments/<experiment>/...                                       A/B ramp and analysis
serving/allocation.json, allocation_history.jsonl                  the served A/B allocation
registry/audit.jsonl                                               every alias change
mlflow/mlflow.db, mlflow/artifacts/                                MLflow store (unless tracking.uri is set)
monitoring/workspace/                                              Evidently workspace (unless monitor.workspace is set)
gx/                                                                Great Expectations project and Data Docs
gx/uncommitted/corrupt/<stamp>/                                    store files a killed write left unreadable
prefect/results/, prefect/home/                                    flows' task results; a private server's home
.locks/, .staging/                                                 stage locks, half-written outputs
.settings/<hash>.json                                              a flow's resolved settings for its tasks
```

>>> lay = DataLayout(Path("/d"))
>>> lay.bronze_table("2026-09-01", "impression").as_posix(), lay.tensor("2026-09-01", "user").as_posix()
('/d/bronze/2026-09-01/impression.parquet', '/d/features/2026-09-01/tensors/user.npy')
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from pathlib import Path

from eliverec.errors import DataError

DAY_MS = 86_400_000  # milliseconds in a UTC day
DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
MANIFEST = "_manifest.json"  # written last into a published bronze/quarantine day: the day is complete
FEATURE_SPEC = "feature_spec.json"
BUILD_RECORD = "_build.json"
DAY_SUMMARY = "_summary.json"
SAMPLES = "samples.parquet"
TENSORS = "tensors"
QUARANTINE_TABLE = "quarantine"  # quarantine/<date>/quarantine.parquet
EVENT_LOG_PREFIX = "events-"  # raw/<date>/events-<tag>.jsonl[.gz]: every raw event log, whoever wrote it
EVENT_LOG_SUFFIXES = (".jsonl", ".jsonl.gz")


# --------------------------------------------------------------------------- day arithmetic
def as_date(day: str | dt.date) -> dt.date:
    """``day`` as a date; a :class:`DataError` that shows the expected form for a bad string.

    >>> as_date("2026-09-01"), as_date(dt.date(2026, 9, 1))
    (datetime.date(2026, 9, 1), datetime.date(2026, 9, 1))
    """
    if isinstance(day, dt.date):
        return day
    try:
        return dt.date.fromisoformat(str(day))
    except (TypeError, ValueError) as exc:
        raise DataError(f"bad date '{day}': expected YYYY-MM-DD, for example 2026-09-08") from exc


def day_start_ms(day: str | dt.date) -> int:
    """Epoch milliseconds of the day's 00:00 UTC.

    >>> day_start_ms("1970-01-02"), day_start_ms(dt.date(1970, 1, 3))
    (86400000, 172800000)
    """
    return (as_date(day) - dt.date(1970, 1, 1)).days * DAY_MS


def is_date(text: str) -> bool:
    """Whether ``text`` is a ``YYYY-MM-DD`` calendar day.

    >>> is_date("2026-09-01"), is_date("2026-13-01"), is_date("_build.json")
    (True, False, False)
    """
    if not DATE.match(text):
        return False
    try:
        dt.date.fromisoformat(text)
    except ValueError:
        return False
    return True


def previous_days(end_date: str, n: int) -> list[str]:
    """The ``n`` days before ``end_date`` (oldest first).

    >>> previous_days("2026-09-03", 2)
    ['2026-09-01', '2026-09-02']
    """
    end = as_date(end_date)
    return [(end - dt.timedelta(days=i)).isoformat() for i in range(n, 0, -1)]


def date_folders(folder: Path) -> list[str]:
    """Names of the ``YYYY-MM-DD`` sub-folders of ``folder`` (oldest first; none when it is missing)."""
    if not folder.is_dir():
        return []
    return sorted(p.name for p in folder.iterdir() if p.is_dir() and is_date(p.name))


def partition(folder: Path, day: str | dt.date) -> Path:
    """The ``YYYY-MM-DD`` partition of ``day`` under ``folder`` (raw, bronze, features, ...)."""
    return folder / _day(day)


def event_log_name(tag: str | int, gzip: bool = False) -> str:
    """File name of one raw event log in a day partition (the simulator's, a service's, an import's).

    >>> event_log_name(3, gzip=True), event_log_name("import", gzip=True), serving_log_name("a1")
    ('events-3.jsonl.gz', 'events-import.jsonl.gz', 'events-serving-a1.jsonl')
    """
    return f"{EVENT_LOG_PREFIX}{tag}{EVENT_LOG_SUFFIXES[1] if gzip else EVENT_LOG_SUFFIXES[0]}"


def event_logs(folder: Path) -> list[Path]:
    """The raw event logs of a day partition (``events-*.jsonl`` and ``events-*.jsonl.gz``), in name order."""
    return sorted(p for p in folder.glob(f"{EVENT_LOG_PREFIX}*") if p.name.endswith(EVENT_LOG_SUFFIXES))


def serving_log_name(instance: str) -> str:
    """File name of one service instance's log in a raw day partition."""
    return event_log_name(f"serving-{instance}")


def ingest_stage(stage: Path) -> tuple[Path, Path, Path]:
    """The parts of one ingest's staging folder: ``(spill, bronze day, quarantine day)`` being written."""
    return stage / "spill", stage / "bronze", stage / "quarantine"


def spill_file(spill: Path, step: str, index: int, event: str) -> Path:
    """One spilled Arrow IPC file of an ingest (``step`` a, b: the pass that wrote it).

    >>> spill_file(Path("/s"), "a", 12, "impression").as_posix()
    '/s/a-0000012-impression.arrow'
    """
    return spill / f"{step}-{index:07d}-{event}.arrow"


def table_file(folder: Path, name: str) -> Path:
    """The parquet file of table ``name`` in a day partition folder (raw dimensions, bronze tables)."""
    return folder / f"{name}.parquet"


def output_files(folder: Path, stem: str) -> dict[str, Path]:
    """A report's files in ``folder``: ``{"json", "markdown", "plot"}`` (``stem.json``, ``.md``, ``.png``)."""
    return {"json": folder / f"{stem}.json", "markdown": folder / f"{stem}.md", "plot": folder / f"{stem}.png"}


def allocation_history(allocation: Path) -> Path:
    """The history file beside an allocation file."""
    return allocation.parent / "allocation_history.jsonl"


def _day(day: str | dt.date) -> str:
    return day if isinstance(day, str) else day.isoformat()


# --------------------------------------------------------------------------- the data root
@dataclass(frozen=True)
class DataLayout:
    """Paths under one data root (``root`` absolute). Methods with a ``day`` give that day's entry."""

    root: Path

    # stages -----------------------------------------------------------------------------
    def raw(self, day: str | dt.date | None = None) -> Path:
        """``raw/`` or ``raw/<date>``."""
        return self._dated("raw", day)

    def raw_table(self, day: str | dt.date, name: str) -> Path:
        """A raw dimension snapshot: ``raw/<date>/<name>.parquet``."""
        return table_file(self.raw(day), name)

    def bronze(self, day: str | dt.date | None = None) -> Path:
        """``bronze/`` or ``bronze/<date>``."""
        return self._dated("bronze", day)

    def bronze_table(self, day: str | dt.date, name: str) -> Path:
        """One event or dimension table of a bronze day."""
        return table_file(self.bronze(day), name)

    def bronze_manifest(self, day: str | dt.date) -> Path:
        """The manifest of a published bronze day (present only once the day is complete)."""
        return self.bronze(day) / MANIFEST

    def quarantine(self, day: str | dt.date | None = None) -> Path:
        """``quarantine/`` or ``quarantine/<date>``."""
        return self._dated("quarantine", day)

    def quarantine_table(self, day: str | dt.date) -> Path:
        """The bad lines of a day and why (``quarantine/<date>/quarantine.parquet``)."""
        return table_file(self.quarantine(day), QUARANTINE_TABLE)

    def validation(self, day: str | dt.date | None = None) -> Path:
        """``validation/`` or the Great Expectations reports of one day."""
        return self._dated("validation", day)

    def features(self, day: str | dt.date | None = None) -> Path:
        """``features/`` or one feature day ``features/<date>``."""
        return self._dated("features", day)

    def samples(self, day: str | dt.date) -> Path:
        """The samples table of a feature day."""
        return self.features(day) / SAMPLES

    def tensors(self, day: str | dt.date) -> Path:
        """The tensor folder of a feature day (one ``<key>.npy`` per batch key)."""
        return self.features(day) / TENSORS

    def tensor(self, day: str | dt.date, key: str) -> Path:
        """One batch key's array of a feature day."""
        return self.tensors(day) / f"{key}.npy"

    def feature_spec(self, day: str | dt.date | None = None) -> Path:
        """The feature spec of a day, or (no day) of the last build."""
        return self.features(day) / FEATURE_SPEC

    def bronze_dates(self) -> list[str]:
        """Days published to bronze (their manifest written), oldest first."""
        return [d for d in date_folders(self.bronze()) if self.bronze_manifest(d).exists()]

    def feature_shards(self, run: str) -> Path:
        """Scratch folder of one sharded feature build (removed when the build ends)."""
        return self.features() / f".shards-{run}"

    def build_record(self) -> Path:
        """``features/_build.json``: what the last feature build made (window, rows, spec hash)."""
        return self.features() / BUILD_RECORD

    def checkpoints(self, run_name: str) -> Path:
        """Checkpoints of one training run."""
        return self.root / "checkpoints" / run_name

    def reports(self, kind: str, day: str | dt.date | None = None) -> Path:
        """``reports/<kind>`` or ``reports/<kind>/<date>`` (evaluation, gate, monitoring, ope, tune)."""
        base = self.root / "reports" / kind
        return base if day is None else base / _day(day)

    def report_files(self, kind: str, stem: str, day: str | dt.date | None = None) -> dict[str, Path]:
        """``{"json": ..., "markdown": ...}`` of the report ``stem`` under :meth:`reports`."""
        files = output_files(self.reports(kind, day), stem)
        return {"json": files["json"], "markdown": files["markdown"]}

    def score_cache(self, day: str | dt.date, model_uuid: str) -> tuple[Path, Path]:
        """A model's cached scores of a test day: ``(scores parquet, key json)``."""
        folder = self.reports("evaluation", day) / "scores"
        return folder / f"{model_uuid}.parquet", folder / f"{model_uuid}.json"

    def experiment(self, name: str | None = None) -> Path:
        """``experiments/`` or one A/B experiment's ramp and analysis."""
        return self.root / "experiments" if name is None else self.root / "experiments" / name

    def experiment_files(self, name: str, stem: str) -> dict[str, Path]:
        """``{"json", "markdown", "plot"}`` of one output (``ramp``, ``report``) of an experiment."""
        return output_files(self.experiment(name), stem)

    def allocation(self) -> Path:
        """The served A/B allocation (its history sits beside it)."""
        return self.root / "serving" / "allocation.json"

    def allocation_history(self) -> Path:
        """Every allocation change, one JSON line each."""
        return allocation_history(self.allocation())

    def serving_log(self, day: str | dt.date, instance: str) -> Path:
        """One service instance's impression and feedback log of a day (a raw event file)."""
        return self.raw(day) / serving_log_name(instance)

    # tool state ----------------------------------------------------------------------------
    def audit_log(self) -> Path:
        """Every registry alias change, one JSON line each."""
        return self.root / "registry" / "audit.jsonl"

    def mlflow_db(self) -> Path:
        """The embedded MLflow store (SQLite) of this world."""
        return self.root / "mlflow" / "mlflow.db"

    def mlflow_uri(self) -> str:
        """``sqlite:///`` URI of :meth:`mlflow_db` (the default ``tracking.uri``)."""
        return f"sqlite:///{self.mlflow_db()}"

    def mlflow_artifacts(self) -> Path:
        """Artifact root of the embedded MLflow store."""
        return self.mlflow_db().parent / "artifacts"

    def evidently_workspace(self) -> Path:
        """The Evidently workspace of this world (the default ``monitor.workspace``)."""
        return self.root / "monitoring" / "workspace"

    def gx_project(self) -> Path:
        """The Great Expectations project (suites, checkpoints, validation results, Data Docs); GX's own
        folder name for a file context made in :attr:`root` (``gx.get_context(project_root_dir=root)``)."""
        return self.root / "gx"

    def gx_set_aside(self, stamp: str) -> Path:
        """Where the GX store files that an interrupted write left unreadable are kept (``stamp``: when)."""
        return self.gx_project() / "uncommitted" / "corrupt" / stamp

    def data_docs_index(self) -> Path:
        """The Data Docs home page (rebuilt by every validation)."""
        return self.gx_project() / "uncommitted" / "data_docs" / "local_site" / "index.html"

    def prefect_results(self) -> Path:
        """Where the flows persist task results (cache hits of reruns read them back)."""
        return self.root / "prefect" / "results"

    def prefect_home(self) -> Path:
        """``PREFECT_HOME`` of a run that starts its own temporary Prefect server (a benchmark's database)."""
        return self.root / "prefect" / "home"

    def settings_handoff(self, settings_hash: str) -> Path:
        """Resolved settings handed from a flow to its tasks (owner-only JSON, named by their hash)."""
        return self.root / ".settings" / f"{settings_hash}.json"

    def locks(self) -> Path:
        """Per-stage lock files."""
        return self.root / ".locks"

    def staging(self) -> Path:
        """Half-written stage outputs (removed when a stage starts again)."""
        return self.root / ".staging"

    def _dated(self, name: str, day: str | dt.date | None) -> Path:
        return self.root / name if day is None else partition(self.root / name, day)


def sqlite_artifacts(uri: str) -> Path | None:
    """The artifact folder beside a ``sqlite:///`` tracking store (``None`` for other stores).

    >>> sqlite_artifacts("sqlite:////d/mlflow/mlflow.db").as_posix(), sqlite_artifacts("http://mlflow:5000")
    ('/d/mlflow/artifacts', None)
    """
    prefix = "sqlite:///"
    return Path(uri[len(prefix) :]).parent / "artifacts" if uri.startswith(prefix) else None
