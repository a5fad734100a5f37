"""Every notebook runs under papermill with parameters injected (smoke profile),
writes its own results file (``runs/smoke-<hash>.json``, never
``metrics.json``), and its numbers make sense. (nbval runs them too:
`pytest --nbval-lax notebooks`.)"""
import json
import math

import nbformat
import pytest

from avil import reproduce
from avil.reproduce import claims

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
    written = sorted(p.relative_to(tmp_path / "results") for p in (tmp_path / "results").rglob("*.json"))
    assert [p.parent.as_posix() for p in written] == [f"{path.stem}/runs"], written  # never metrics.json
    assert written[0].name.startswith("smoke-")
    metrics = json.loads((tmp_path / "results" / written[0]).read_text())
    assert metrics["profile"] == "smoke" and metrics["parameters"]["SEEDS"] == [1]
    assert metrics["settings"]["seeds"] == [1]  # the injected value was used
    assert metrics["results"] and metrics["provenance"]["commit"]
    assert_numbers_make_sense(path.stem, metrics)


# The notebooks whose smoke profile trains long enough to learn: the target's
# chance level, and how far above it single_task and αVIL must land. 02_nlu's
# chance is its target's majority-class rate on the same test split (its
# metrics file's "majority_rate"); its smoke profile fine-tunes one layer on
# 200 snippets for 3 epochs, so it is held to smaller margins.
CHANCE = {"00_quickstart": (0.25, 0.2, 0.05), "01_multimnist": (0.10, 0.2, 0.05), "02_nlu": ("majority", 0.05, 0.02)}


def numbers(value, where=""):
    """Every number in a JSON value, with where it sits."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield from numbers(item, f"{where}.{key}")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from numbers(item, f"{where}[{i}]")
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        yield where, value


def assert_numbers_make_sense(notebook, metrics):
    """Loose checks that fail a notebook which runs but computes nonsense:
    every metric, weight, α and loss is finite; the target beats chance."""
    bad = [(where, x) for where, x in numbers(metrics) if not math.isfinite(x)]
    assert not bad, f"non-finite numbers in {notebook}'s metrics: {bad[:5]}"
    verdicts = metrics["verdicts"]
    assert {v["claim"] for v in verdicts} == {"C1", "C2", "C3"}, verdicts  # every notebook ends with its claims
    assert all(v["verdict"] in claims.VERDICTS for v in verdicts)
    if notebook == "03_alpha_tuning":
        assert_ablation_makes_sense(metrics)
        return
    for target, methods in metrics["results"].items():
        assert "avil" in methods and "single_task" in methods, list(methods)
        alphas = [a for h in metrics_histories(metrics, "avil") for epoch in h["alphas"] for a in epoch.values()]
        assert alphas, "αVIL recorded its α"
        if notebook in CHANCE:
            chance, single_margin, avil_margin = CHANCE[notebook]
            if chance == "majority":
                chance = metrics["majority_rate"]["mean"]
            single, alpha_vil = methods["single_task"]["test_mean"], methods["avil"]["test_mean"]
            assert single > chance + single_margin, (target, single, chance)
            assert alpha_vil > chance + avil_margin, (target, alpha_vil, chance)


def metrics_histories(metrics, method):
    """The method's Histories in a metrics file, whether keyed by method or by target and method."""
    found = []
    for key, value in metrics["histories"].items():
        runs = value if key == method else value.get(method, []) if isinstance(value, dict) else []
        found += runs
    return found


def assert_ablation_makes_sense(metrics):
    """03: every suite ran every variant against single_task (its paired
    difference under ``vs_baseline``, as ``summarize`` writes it); α and the
    weights stayed finite and the weights inside the widest bounds any variant sets."""
    from avil.reproduce import ablation

    results = metrics["results"]
    synthetic = [s for s in results if s.startswith("synthetic-")]
    assert set(results) - set(synthetic) == {"toy", "multimnist", "multimnist_extended", "text"}, list(results)
    assert synthetic, "the drawn synthetic suites ran"
    for suite, variants in results.items():
        assert set(ablation.RULES) <= set(variants), (suite, list(variants))
        if not suite.startswith("synthetic-"):
            assert set(ablation.ALPHA_STEPS) <= set(variants), (suite, list(variants))
        for label, s in variants.items():
            assert s["all_finite"], (suite, label)
            assert 0.01 <= s["weight_range"][0] <= s["weight_range"][1] <= 4.0, (suite, label, s["weight_range"])
            assert all(0 <= t <= 1 for t in s["test"]), (suite, label)
            # summarize's shape: every variant paired with single_task over every seed it ran
            assert s["baseline"] == "single_task" and s["vs_baseline"]["seeds"] == len(s["test"]), (suite, label)
    toy_single = [h["test"] for h in metrics["histories"]["toy"]["single_task"]]
    assert min(toy_single) > 0.25 + 0.2, toy_single  # the toy target beats chance (4 classes)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_every_committed_results_file_holds_its_notebooks_verdicts(path):
    committed = path.parents[1] / "results" / path.stem / "metrics.json"
    metrics = json.loads(committed.read_text())
    assert metrics["profile"] == "default" and metrics["parameters"] == {
        k: v for k, v in reproduce.committed_parameters(path.stem).items() if k != "PROFILE"}
    assert {v["claim"] for v in metrics["verdicts"]} == {"C1", "C2", "C3"}, metrics["verdicts"]
