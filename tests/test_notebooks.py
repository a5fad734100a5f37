"""Every notebook runs under papermill with parameters injected (smoke profile),
and writes its results file. (nbval runs them too: `pytest --nbval-lax notebooks`.)"""
import json

import nbformat
import pytest

from avil import reproduce

NOTEBOOKS = reproduce.notebooks()


def test_there_are_notebooks():
    assert [p.stem for p in NOTEBOOKS][:1] == ["00_quickstart"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_conventions(path):
    nb = nbformat.read(path, as_version=4)
    params = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(params) == 1, "exactly one cell tagged 'parameters'"
    lines = [ln for ln in params[0].source.splitlines() if ln.strip()]
    assert lines[0].startswith('PROFILE = "default"')
    assert all("#" in ln for ln in lines), "every parameter has a trailing comment"
    assert nb.metadata["kernelspec"]["name"] == "python3"
    for cell in nb.cells:
        if cell.cell_type == "code" and cell.outputs:
            assert cell.execution_count is not None, "committed outputs come from a real run"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_papermill_run_with_injected_parameters(path, tmp_path, monkeypatch):
    monkeypatch.setenv("AVIL_RESULTS_DIR", str(tmp_path / "results"))
    monkeypatch.setenv("AVIL_PROFILE", "smoke")
    reproduce.run_notebook(path, "smoke", tmp_path / path.name, parameters={"SEEDS": [1]})
    executed = nbformat.read(tmp_path / path.name, as_version=4)
    assert any("injected-parameters" in c.metadata.get("tags", []) for c in executed.cells)
    metrics = json.loads((tmp_path / "results" / path.stem / "metrics-smoke.json").read_text())
    assert metrics["profile"] == "smoke"
    assert metrics["settings"]["seeds"] == [1]  # the injected value was used
    assert metrics["results"] and metrics["provenance"]["commit"]
