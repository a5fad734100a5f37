"""avil.reproduce: the profile rule, where results go, a notebook's closing
call, and compare() in parallel processes."""
import json
import os
import warnings

import pytest
import torch

import avil
from avil import reproduce
from avil.tasks import toy


# -- profiles ---------------------------------------------------------------

@pytest.mark.parametrize("notebook, env, expected", [
    ("default", None, "default"),  # as committed, nothing set
    ("default", "smoke", "smoke"),  # nbval / make test / make reproduce
    ("paper", None, "paper"),  # injected by papermill -p PROFILE paper
    ("smoke", "smoke", "smoke"),  # both agree (tests/test_notebooks.py)
])
def test_profile_rule(notebook, env, expected, monkeypatch):
    if env is None:
        monkeypatch.delenv("AVIL_PROFILE", raising=False)
    else:
        monkeypatch.setenv("AVIL_PROFILE", env)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert reproduce.active_profile(notebook) == expected


def test_an_injected_profile_wins_over_the_environment_loudly(monkeypatch):
    monkeypatch.setenv("AVIL_PROFILE", "smoke")
    with pytest.warns(UserWarning, match="PROFILE='paper' .* overrides AVIL_PROFILE='smoke'"):
        assert reproduce.active_profile("paper") == "paper"


@pytest.mark.parametrize("notebook, env, culprit", [("default", "fast", "AVIL_PROFILE"),
                                                     ("fast", None, "the notebook's PROFILE")])
def test_unknown_profile_names_its_source(notebook, env, culprit, monkeypatch):
    if env is None:
        monkeypatch.delenv("AVIL_PROFILE", raising=False)
    else:
        monkeypatch.setenv("AVIL_PROFILE", env)
    with pytest.raises(ValueError, match=f"'fast' \\({culprit}\\): must be one of"):
        reproduce.active_profile(notebook)


# -- where results go --------------------------------------------------------

def test_results_go_to_the_repository_holding_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.delenv("AVIL_RESULTS_DIR", raising=False)
    repo = tmp_path / "checkout"
    (repo / "avil").mkdir(parents=True)
    (repo / "avil" / "__init__.py").write_text("")
    (repo / "notebooks").mkdir()
    monkeypatch.chdir(repo / "notebooks")  # where papermill runs a notebook
    assert reproduce.find_root() == repo
    assert reproduce.results_dir("00_x") == repo / "results" / "00_x"
    monkeypatch.setenv("AVIL_RESULTS_DIR", str(tmp_path / "elsewhere"))
    assert reproduce.results_dir("00_x") == tmp_path / "elsewhere" / "00_x"


def test_outside_a_repository_results_go_under_the_working_directory(tmp_path, monkeypatch):
    """A regular (non-editable) install, run from a folder of one's own."""
    monkeypatch.delenv("AVIL_RESULTS_DIR", raising=False)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(reproduce, "__file__", str(tmp_path / "site-packages" / "avil" / "reproduce.py"))
    assert reproduce.find_root() is None
    assert reproduce.results_dir("00_x") == tmp_path / "results" / "00_x"
    with pytest.raises(FileNotFoundError, match="no avil repository"):
        reproduce.notebooks()


# -- finish ------------------------------------------------------------------

def test_finish_writes_metrics_with_histories_and_shows_provenance(tmp_path, monkeypatch):
    monkeypatch.setenv("AVIL_RESULTS_DIR", str(tmp_path))
    history = avil.History(method="uniform", target="t", tasks=["t"], seed=0)
    history.record(task_weights={"t": 1.0}, alphas={}, train_loss={"t": 0.5}, dev=0.5, test=0.25, seconds=1.0)
    table = reproduce.finish("00_x", "smoke", {"histories": {"uniform": [history]}, "config": avil.FitConfig()},
                             reproduce.Stopwatch())
    written = json.loads((tmp_path / "00_x" / "metrics-smoke.json").read_text())
    assert written["histories"]["uniform"][0]["test"] == 0.25
    assert written["config"]["epochs"] == avil.FitConfig().epochs and written["wall_seconds"] >= 0
    shown = table["provenance"]
    assert shown["commit"] == written["provenance"]["commit"] and shown["wall time"].endswith(" s")
    assert shown["metrics"].endswith("metrics-smoke.json")


# -- compare ------------------------------------------------------------------

def small_run(seed):
    return toy.make_encoder(seed), toy.make_tasks(seed, n_aux=100, n_dev=50, n_test=50)


@pytest.fixture
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_compare_in_two_processes_equals_the_serial_run(one_thread, capsys):
    config = avil.FitConfig(epochs=2, progress=False)
    # A lambda: workers are forked, so make_run need not be picklable.
    make_run = lambda seed: small_run(seed)  # noqa: E731
    serial = reproduce.compare(make_run, toy.TARGET, ["uniform", "avil"], [0, 1], config, workers=1)
    parallel = reproduce.compare(make_run, toy.TARGET, ["uniform", "avil"], [0, 1], config, workers=2)
    assert parallel == serial
    assert [h.seed for h in parallel["avil"]] == [0, 1]
    assert capsys.readouterr().out.count("seed") == 8  # one line per run, each time


@pytest.mark.parametrize("workers", [1, 2])
def test_a_failing_run_is_reported_and_the_others_kept(workers, one_thread, capsys):
    def make_run(seed):
        if seed == 1:
            raise ValueError("no data for seed 1")
        return small_run(seed)

    config = avil.FitConfig(epochs=1, progress=False)
    with pytest.raises(reproduce.CompareError, match="uniform seed 1: ValueError: no data for seed 1") as err:
        reproduce.compare(make_run, toy.TARGET, ["uniform"], [0, 1, 2], config, workers=workers)
    assert [h.seed for h in err.value.histories["uniform"]] == [0, 2]
    assert "raise ValueError" in err.value.failures[("uniform", 1)]  # the whole traceback
    assert "uniform      seed 1: FAILED" in capsys.readouterr().out


@pytest.mark.parametrize("workers", [0, -1, 1.5, True])
def test_compare_rejects_bad_workers(workers):
    with pytest.raises(ValueError, match="workers="):
        reproduce.compare(small_run, toy.TARGET, ["uniform"], [0], avil.FitConfig(), workers=workers)


def test_a_worker_that_dies_fails_its_own_run_only(one_thread):
    def make_run(seed):
        if seed == 1:
            os._exit(3)  # as if killed: no exception, no outcome sent
        return small_run(seed)

    with pytest.raises(reproduce.CompareError, match=r"seed 1: RuntimeError: the worker process died \(exit code 3"
                       ) as err:
        reproduce.compare(make_run, toy.TARGET, ["uniform"], [0, 1, 2], avil.FitConfig(epochs=1, progress=False),
                          workers=2)
    assert [h.seed for h in err.value.histories["uniform"]] == [0, 2]
