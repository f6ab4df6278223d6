"""The logged model is portable: it loads with mlflow.pyfunc in a fresh virtual environment built
from its own requirements, with the eliverec code it carries (code_paths), not an installed package."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from eliverec.config import load_settings
from tests.conftest import PARAMS

SCRIPT = textwrap.dedent("""
    import json, sys
    import mlflow.pyfunc
    from mlflow.models import Model
    local, out = sys.argv[1], sys.argv[2]
    model = mlflow.pyfunc.load_model(local)
    example = Model.load(local).load_input_example(local)
    import eliverec
    pred = model.predict(example)
    json.dump({"eliverec": eliverec.__file__, "pred": pred.to_dict("list")}, open(out, "w"))
""")


def _logged_model(tmp_path: Path) -> tuple[Path, object]:
    """A platform network logged like training and controls log it, downloaded to a folder."""
    import mlflow

    from eliverec.experiments.controls import log_network
    from eliverec.models import build_model

    s = load_settings("tiny", params=PARAMS, data_dir=tmp_path / "data")
    uri, _ = log_network(s, build_model(s), run_name="portable")
    local = Path(mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=str(tmp_path / "model")))
    return local, mlflow.pyfunc.load_model(str(local))


def test_the_logged_model_carries_its_code_and_pins_what_it_needs(tmp_path: Path) -> None:
    local, _ = _logged_model(tmp_path)
    reqs = (local / "requirements.txt").read_text().split()
    names = {r.split("==")[0] for r in reqs if "==" in r}
    assert {"torch", "mlflow", "numpy", "pandas", "pyarrow", "pydantic", "pyyaml", "xxhash"} <= names
    assert not any(r.split("==")[0] == "eliverec" for r in reqs)  # no index serves it: it travels as code
    assert (local / "code" / "eliverec" / "artifact.py").is_file()


@pytest.mark.slow
def test_the_logged_model_loads_in_a_fresh_venv_from_its_own_requirements(tmp_path: Path) -> None:
    from mlflow.models import Model

    local, model = _logged_model(tmp_path)
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)  # no system site-packages
    python = venv / "bin" / "python"
    subprocess.run([str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", "-r",
                    str(local / "requirements.txt")], check=True, timeout=1500)
    out = tmp_path / "pred.json"
    script = tmp_path / "load.py"
    script.write_text(SCRIPT)
    subprocess.run([str(python), str(script), str(local), str(out)], check=True, timeout=600, cwd=tmp_path,
                   env={"PATH": "/usr/bin:/bin", "MLFLOW_DISABLE_TELEMETRY": "true", "HOME": str(tmp_path)})
    got = json.loads(out.read_text())
    assert Path(got["eliverec"]).is_relative_to(local / "code")  # the model's own copy, not an installed one
    want = model.predict(Model.load(str(local)).load_input_example(str(local)))
    for column in want.columns:
        assert np.allclose(got["pred"][column], want[column].to_numpy(), atol=1e-6), column
