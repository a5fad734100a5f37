"""avil.reproduce: the profile rule, where results go, a notebook's closing
call, and compare() in parallel processes."""
import json
import os
import warnings

import pytest
import torch

import avil
from avil import reproduce
from avil.reproduce import results
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
    monkeypatch.setattr(results, "__file__", str(tmp_path / "site-packages" / "avil" / "reproduce" / "results.py"))
    assert reproduce.find_root() is None
    assert reproduce.results_dir("00_x") == tmp_path / "results" / "00_x"
    with pytest.raises(FileNotFoundError, match="no avil repository"):
        reproduce.notebooks()


# -- start and finish ---------------------------------------------------------

def committed(notebook="00_quickstart"):
    """The notebook's parameters as committed, PROFILE aside."""
    return {k: v for k, v in results.committed_parameters(notebook).items() if k != "PROFILE"}


def verdict(claim, suite, **more):
    """A claim's verdict as ``claims.Verdict.to_dict()`` gives it."""
    return {"claim": claim, "suite": suite, "verdict": "reproduced", "estimate": 0.0333, "ci_low": 0.01,
            "ci_high": 0.0567, "seeds": 3, "wins": 3, "detail": {"test": "paired t"},
            "statement": f"{claim} holds on {suite}.", "measure": "avil − uniform", "scale": 100.0, "unit": "points",
            "correction": "Holm over 1", "wins_meaning": "with avil ahead", **more}


def test_start_applies_the_profile_and_prints_where_the_run_writes(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("AVIL_RESULTS_DIR", str(tmp_path))
    monkeypatch.delenv("AVIL_PROFILE", raising=False)
    monkeypatch.setenv(reproduce.MAKE_REPRODUCE_ENV, "1")
    run = reproduce.start("00_quickstart", "default", **committed())
    assert (run.profile, run.path) == ("default", tmp_path / "00_quickstart" / "metrics.json")
    assert capsys.readouterr().out == (f"results of this run go to {run.path}: this is the committed results file, "
                                       "which only make reproduce writes, run at the default profile with the "
                                       "parameters committed in the notebook.\n")
    monkeypatch.setenv("AVIL_PROFILE", "smoke")  # as make test sets it
    run = reproduce.start("00_quickstart", "default", **{**committed(), "EPOCHS": 1})
    assert run.profile == "smoke" and run.path == results.runs_path("00_quickstart", "smoke", run.parameters)
    out = capsys.readouterr().out
    assert f"go to {run.path}: profile smoke; EPOCHS=1, committed None." in out and "writes metrics.json" in out


def test_start_wants_every_parameter_of_the_cell_and_no_other(monkeypatch):
    given = committed()
    del given["DEVICE"]
    with pytest.raises(ValueError, match=r"not in it: \[\]; not passed: \['DEVICE'\]\). Fix: pass each"):
        reproduce.start("00_quickstart", "default", **given)
    with pytest.raises(ValueError, match=r"not in it: \['EPOCH'\]; not passed: \[\]"):
        reproduce.start("00_quickstart", "default", **committed(), EPOCH=3)
    with pytest.raises(ValueError, match=r"parameter SEEDS=\{0\} is not JSON"):
        reproduce.start("00_quickstart", "default", **{**committed(), "SEEDS": {0}})


def test_finish_writes_the_payload_verdicts_and_provenance_and_shows_where(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("AVIL_RESULTS_DIR", str(tmp_path))
    monkeypatch.delenv(reproduce.MAKE_REPRODUCE_ENV, raising=False)
    history = avil.History(method="uniform", target="t", tasks=["t"], seed=0)
    history.record(task_weights={"t": 1.0}, alphas={}, train_loss={"t": 0.5}, dev=0.5, test=0.25, seconds=1.0)
    run = reproduce.start("00_quickstart", "smoke", **committed())

    class Verdict:  # what claims.Verdict gives finish
        def to_dict(self):
            return verdict("C1", "toy")

    table = reproduce.finish(run, {"histories": {"uniform": [history]}, "config": avil.FitConfig()},
                             verdicts=[Verdict(), verdict("C2", "toy")])
    written = json.loads(run.path.read_text())
    assert [p.name for p in (tmp_path / "00_quickstart").iterdir()] == ["runs"]  # no metrics.json
    assert written["histories"]["uniform"][0]["test"] == 0.25 and written["config"]["epochs"] == avil.FitConfig().epochs
    assert (written["notebook"], written["profile"], written["parameters"]) == ("00_quickstart", "smoke", committed())
    assert written["verdicts"] == [verdict("C1", "toy"), verdict("C2", "toy")]
    assert written["provenance"]["wall_seconds"] >= 0
    shown = table["provenance"]
    assert shown["commit"] == written["provenance"]["commit"] and shown["wall time"].endswith(" s")
    assert shown["results file"] == str(run.path) and "numpy " in shown["packages"]
    assert shown["torch_threads"] == torch.get_num_threads()


def test_finish_refuses_bad_verdicts_and_reserved_keys_before_writing(tmp_path, monkeypatch):
    monkeypatch.setenv("AVIL_RESULTS_DIR", str(tmp_path))
    run = reproduce.start("00_quickstart", "smoke", **committed())
    bad = verdict("C1", "toy")
    del bad["ci_low"]
    with pytest.raises(ValueError, match=r"00_quickstart: verdict 1 lacks \['ci_low'\]"):
        reproduce.finish(run, {"results": {}}, verdicts=[verdict("C2", "toy"), bad])
    with pytest.raises(ValueError, match=r"the payload has keys \['verdicts'\], which finish writes itself"):
        reproduce.finish(run, {"verdicts": []})
    with pytest.raises(TypeError):
        reproduce.finish(run, {"results": {}}, [verdict("C1", "toy")])  # verdicts is passed by name
    assert not run.path.exists()


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


def test_workers_on_a_gpu_run_in_this_process_with_a_warning(monkeypatch):
    """CUDA cannot be used in a forked process: workers > 1 with device="cuda"
    runs the runs one at a time here, and says what to set."""
    from avil.reproduce import runs

    calls = []

    def fit_here(run):
        calls.append((run.label, run.seed, os.getpid()))
        return avil.History(method=run.method, target=run.target, tasks=[run.target], seed=run.seed), None, 0.0

    monkeypatch.setattr(runs, "_fit", fit_here)
    config = avil.FitConfig(device="cuda")
    with pytest.warns(UserWarning, match=r"workers=2 runs forked CPU processes, but the runs' device is cuda: running "
                                         r"them one at a time in this process \(workers=1\). Set workers=1"):
        out = reproduce.compare(small_run, toy.TARGET, ["uniform", "avil"], [0, 1], config, workers=2, progress=False)
    assert calls == [(m, s, os.getpid()) for m in ("uniform", "avil") for s in (0, 1)]
    assert [h.seed for h in out["avil"]] == [0, 1]


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


# -- paired differences and auxiliary effects ---------------------------------

def test_paired_difference_against_a_hand_computation():
    d = reproduce.paired_difference([0.9, 0.8, 0.75], [0.8, 0.65, 0.55])  # differences 0.1, 0.15, 0.2
    # mean 0.15, sd 0.05, t_{0.975, 2} = 4.302653 (tables): half-width 4.302653 · 0.05 / √3
    assert d.mean == pytest.approx(0.15) and d.half_width == pytest.approx(0.1242069, abs=1e-6)
    assert (d.wins, d.seeds, d.verdict) == (3, 3, "higher")
    assert d.format() == "+15.00 ± 12.42 (3/3)"
    wider = reproduce.paired_difference([0.9, 0.8, 0.75], [0.8, 0.6, 0.45])  # 0.2 ± 0.248: includes 0
    assert wider.verdict == "inside CI" and wider.wins == 3
    wide = reproduce.paired_difference([0.5, 0.9], [0.6, 0.6])  # one loss, one win
    assert wide.verdict == "inside CI" and wide.wins == 1


def test_paired_difference_with_one_seed_has_no_interval():
    d = reproduce.paired_difference([0.7], [0.6])
    assert d.half_width == float("inf") and d.verdict == "inside CI"
    assert d.to_dict()["half_width"] is None and json.dumps(d.to_dict())  # valid JSON
    assert d.format() == "+10.00 ± ∞ (1/1)"


@pytest.mark.parametrize("a, b, confidence", [([1, 2], [1], 0.95), ([], [], 0.95), ([1], [1], 1.0)])
def test_paired_difference_rejects_bad_input(a, b, confidence):
    with pytest.raises(ValueError):
        reproduce.paired_difference(a, b, confidence)


def effects_run(seed):
    return toy.make_encoder(seed), toy.make_tasks(seed, n_aux=1000, n_dev=200, n_test=500)


def test_auxiliary_effects_measure_the_harmful_auxiliaries(one_thread):
    config = avil.FitConfig(epochs=8, progress=False)
    effects = reproduce.auxiliary_effects(effects_run, toy.TARGET, ["same_rule", "noise", "harmful"], [0, 1, 2],
                                          config, progress=False)
    assert list(effects) == ["same_rule", "noise", "harmful"]
    harmful = effects["harmful"]
    assert harmful.difference.verdict == "lower" and harmful.difference.mean < -0.2, harmful.difference
    assert [h.seed for h in harmful.joint] == [h.seed for h in harmful.alone] == [0, 1, 2]
    assert harmful.joint[0].tasks == [toy.TARGET, "harmful"] and harmful.joint[0].method == "uniform"
    # Equal sizes: one single_task run per seed serves every auxiliary, and its
    # target numbers are those single_task on [target, harmful] itself gives.
    shared = harmful.alone[1]
    assert shared is effects["same_rule"].alone[1]
    encoder, tasks = effects_run(1)
    own = avil.fit(encoder, [t for t in tasks if t.name in (toy.TARGET, "harmful")], toy.TARGET, "single_task",
                   avil.FitConfig(epochs=8, seed=1, progress=False))
    assert (own.dev, own.test_per_epoch, own.train_loss) == (shared.dev, shared.test_per_epoch, shared.train_loss)
    table = reproduce.effects_table(effects)
    assert table.loc["harmful", "verdict"] == "harmful"
    assert json.dumps(reproduce.jsonable(effects))


def test_auxiliary_effects_baseline_per_step_count(one_thread):
    """An auxiliary with fewer batches gets its own single_task baseline."""
    def make_run(seed):
        encoder, tasks = effects_run(seed)
        tasks[2].train = torch.utils.data.Subset(tasks[2].train, range(100))  # noise: 4 batches, not 32
        return encoder, tasks

    effects = reproduce.auxiliary_effects(make_run, toy.TARGET, ["same_rule", "noise"], [0],
                                          avil.FitConfig(epochs=1, progress=False), progress=False)
    assert effects["noise"].alone[0] != effects["same_rule"].alone[0]
    assert effects["noise"].alone[0].tasks == [toy.TARGET, "noise"]


def test_auxiliary_effects_names_an_unknown_auxiliary():
    with pytest.raises(ValueError, match=r"tasks \['nope'\] are not in the suite"):
        reproduce.auxiliary_effects(effects_run, toy.TARGET, ["nope"], [0], avil.FitConfig(epochs=1))


def history(seed, weights, test=0.5):
    h = avil.History(method="avil", target="t", tasks=list(weights), seed=seed)
    h.record(task_weights=weights, alphas=weights, train_loss={}, dev=test, test=test, seconds=0.0)
    return h


def test_summary_and_table_pair_every_method_with_single_task_per_seed():
    from avil.history import History

    def runs(tests):
        return [History(method="m", target="t", tasks=["t"], seed=seed, test=value, dev=[value],
                        task_weights=[{"t": 1.0}], best_epoch=1) for seed, value in enumerate(tests)]

    histories = {"single_task": runs([0.80, 0.82, 0.84]), "better": runs([0.83, 0.85, 0.88]),
                 "same": runs([0.81, 0.81, 0.85])}
    summary = reproduce.summarize(histories)
    better = summary["better"]["vs_baseline"]
    assert better["differences"] == pytest.approx([0.03, 0.03, 0.04]) and better["wins"] == 3
    assert "vs_baseline" not in summary["single_task"]
    frame = reproduce.table(summary)
    assert frame.loc["better", "verdict"] == "higher"
    assert frame.loc["same", "verdict"] == "no difference detected"  # +0.33 points on average, but not a win
    # Holm over the table's two comparisons: better's p (0.0039) doubled, still below 0.05
    assert frame.loc["better", "Holm p"] == f"{2 * better['p_value']:.3f}"  # three decimals, as the text prints p
    assert frame.loc["better", "Δ vs single_task (95 % CI, wins)"].startswith("+3.33 ± ")


# -- αVIL's α-step: diagnostics, per-delta ablation, cost ---------------------

@pytest.fixture(scope="module")
def avil_runs():
    """αVIL with the per-delta ablation on the toy suite (2 seeds, 2 epochs), beside uniform."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    config = avil.FitConfig(epochs=2, progress=False, alpha_ablation=True)
    runs = reproduce.compare(small_run, toy.TARGET, ["uniform", "avil"], [0, 1], config, progress=False)
    torch.set_num_threads(threads)
    return runs


def test_alpha_step_records_are_the_histories_own_numbers(avil_runs):
    records = reproduce.alpha_step_records(avil_runs)
    assert [(r["rule"], r["seed"], r["epoch"]) for r in records] == [("avil", s, e) for s in (0, 1) for e in (1, 2)]
    h, row = avil_runs["avil"][1], records[3]  # seed 1, epoch 2
    for name in h.tasks:
        assert (row[f"α[{name}]"], row[f"w[{name}]"]) == (h.alphas[1][name], h.task_weights[1][name])
    assert (row["loss_init"], row["loss_final"], row["on_bound"]) == tuple(
        h.alpha_step[1][k] for k in ("loss_init", "loss_final", "on_bound"))
    assert row["seconds"] == h.alpha_step_seconds[1]
    assert json.dumps(records)
    table = reproduce.alpha_step_table(avil_runs)
    assert table.loc[("avil", 1, 2), "dev loss at α"] == round(h.alpha_step[1]["loss_final"], 3)
    assert set(table["α on a bound"]) <= {"—"} | {", ".join(s["on_bound"]) for r in avil_runs["avil"]
                                                   for s in r.alpha_step}


def test_ablation_is_the_rise_of_the_dev_loss_without_each_delta(avil_runs):
    records = reproduce.ablation_records(avil_runs)
    assert len(records) == 4
    assert any(a == 0.0 for h in avil_runs["avil"] for alphas in h.alphas for a in alphas.values())  # checked below
    for row, (h, epoch) in zip(records, [(h, e) for h in avil_runs["avil"] for e in range(2)]):
        step = h.alpha_step[epoch]
        for name in h.tasks:
            assert row[name] == pytest.approx(step["loss_without"][name] - step["loss_final"])
            if h.alphas[epoch][name] == 0.0:  # an update the merge does not use: dropping it changes nothing
                assert row[name] == pytest.approx(0.0, abs=1e-6)
    table = reproduce.ablation_table(avil_runs)
    assert list(table.columns) == avil_runs["avil"][0].tasks and len(table) == 4


def test_ablation_names_a_run_made_without_it(avil_runs):
    plain = avil.History.from_dict(avil_runs["avil"][0].to_dict())
    for step in plain.alpha_step:
        del step["loss_without"]
    with pytest.raises(ValueError, match=r"avil seed 0, epoch 1: no per-delta ablation .*FitConfig\(alpha_ablation=True\)"):
        reproduce.ablation_records({"avil": [plain]})


def test_alpha_step_cost_is_the_share_of_the_epochs_seconds():
    def run(seed, step_seconds, epoch_seconds):
        h = avil.History(method="avil", target="t", tasks=["t"], seed=seed)
        for s, e in zip(step_seconds, epoch_seconds):
            h.record(task_weights={"t": 1.0}, alphas={"t": 1.0}, train_loss={}, dev=0.5, test=0.5, seconds=e,
                     alpha_step={"loss_init": 1.0, "loss_final": 0.9, "iterations": 1, "evaluations": 2,
                                 "on_bound": [], "converged": True, "seconds": s})
        return h

    plain = avil.History(method="uniform", target="t", tasks=["t"], seed=0)
    cost = reproduce.alpha_step_cost({"avil": [run(0, [1.0, 2.0], [10.0, 10.0]), run(1, [3.0], [20.0])],
                                      "uniform": [plain]})
    assert list(cost) == ["avil"]  # no α-step, no entry
    assert cost["avil"] == {"runs": 2, "epochs": 3, "alpha_step_seconds": pytest.approx(2.0),
                            "epoch_seconds": pytest.approx(40 / 3), "share": pytest.approx(6 / 40)}


def test_print_summary_shows_each_notebooks_paired_difference(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("AVIL_RESULTS_DIR", str(tmp_path))
    better = reproduce.paired_difference([0.83, 0.85, 0.88], [0.80, 0.82, 0.84])

    def entry(tests, **more):  # what summarize writes, and what 03 adds to it
        mean, std = reproduce.mean_std(tests)
        return {"test": tests, "test_mean": mean, "test_std": std, **more}

    compared = {"results": {"left": {"single_task": entry([0.80, 0.82, 0.84]),
                                     "avil": entry([0.83, 0.85, 0.88], baseline="single_task",
                                                   vs_baseline=better.to_dict())}}}
    ablation = {"results": {"toy": {"paper's rule": entry([0.83, 0.85, 0.88], baseline="single_task",
                                                          vs_baseline=better.to_dict(), all_finite=True)}}}
    # 03's results as written before they took summarize's shape
    older = {"results": {"toy": {"paper's rule": {"test": [0.83, 0.85, 0.88], "difference": better.to_dict()}}}}
    for notebook, metrics in (("01_multimnist", compared), ("02_nlu", older), ("03_alpha_tuning", ablation)):
        path = results.make_reproduce_path(notebook, "smoke")  # what python -m avil.reproduce --profile smoke writes
        path.parent.mkdir(parents=True)
        path.write_text(json.dumps(metrics))
    reproduce.print_summary("smoke")
    lines = capsys.readouterr().out.splitlines()
    assert any("01_multimnist" in l and "single_task" in l and l.rstrip().endswith("82.00 ± 2.00") for l in lines)
    for notebook, name in (("01_multimnist", "avil"), ("03_alpha_tuning", "paper's rule")):
        line = next(l for l in lines if l.startswith(notebook) and name in l)
        assert "85.33 ± 2.52" in line and line.rstrip().endswith("+3.33 ± 1.43 (3/3)")
    name = results.make_reproduce_path("02_nlu", "smoke").name
    assert [l for l in lines if l.startswith("02_nlu")] == [
        f"02_nlu           ({name}: results of another shape; rerun the notebook to refresh it)"]
    assert [l for l in lines if l.startswith("00_quickstart")] == [
        f"00_quickstart    (no {results.make_reproduce_path('00_quickstart', 'smoke').name})"]


def test_make_reproduce_marks_its_kernels_and_restores_the_environment(tmp_path, monkeypatch, capsys):
    from avil.reproduce import __main__ as make_reproduce

    monkeypatch.setenv("AVIL_RESULTS_DIR", str(tmp_path))
    monkeypatch.delenv(reproduce.MAKE_REPRODUCE_ENV, raising=False)
    monkeypatch.setenv("AVIL_PROFILE", "smoke")
    seen = []
    monkeypatch.setattr(make_reproduce, "run_notebook", lambda path, profile, output: seen.append(
        (path.stem, profile, os.environ.get(reproduce.MAKE_REPRODUCE_ENV), os.environ.get("AVIL_PROFILE"))))
    assert make_reproduce.main(["--profile", "default", "--only", "00_quickstart"]) == 0
    assert seen == [("00_quickstart", "default", "1", "default")]
    assert reproduce.MAKE_REPRODUCE_ENV not in os.environ and os.environ["AVIL_PROFILE"] == "smoke"
    assert "00_quickstart    (no metrics.json)" in capsys.readouterr().out


# -- the README's Results section ------------------------------------------------

def results_tree(root, files):
    """A repository's committed results: ``{notebook: metrics dict}``."""
    for notebook, metrics in files.items():
        (root / "results" / notebook).mkdir(parents=True)
        (root / "results" / notebook / "metrics.json").write_text(json.dumps(metrics))
    return root


def test_results_markdown_tabulates_the_committed_verdicts(tmp_path):
    root = results_tree(tmp_path, {
        "00_a": {"results": {}, "verdicts": [verdict("C2", "toy", verdict="not reproduced", estimate=-0.2,
                                                     ci_low=-0.5, ci_high=0.1, seeds=3, wins=0),
                                             verdict("C1", "toy")]},
        "01_b": {"results": {}},  # written before its notebook stated verdicts
        "02_c": {"results": {}, "verdicts": [verdict("C1", "mnist|x", estimate=None, ci_low=None, ci_high=None,
                                                     verdict="inconclusive", statement="Too few\nseeds.")]}})
    text = reproduce.results_markdown(root)
    lines = text.splitlines()
    assert lines[:2] == ["## Results", ""] and "python -m avil.reproduce --summary --write" in lines[2]
    table = [l for l in lines if l.startswith("|")]
    assert table == ["| claim | suite | notebook | verdict | estimate | 95 % CI | seeds | wins |",
                     "|---|---|---|---|---|---|---|---|",
                     "| C1 | toy | `00_a` | reproduced | +3.33 points | [+1.00, +5.67] | 3 | 3/3 |",
                     "| C1 | mnist\\|x | `02_c` | inconclusive | — | — | — | — |",
                     "| C2 | toy | `00_a` | not reproduced | -20.00 points | [-50.00, +10.00] | 3 | 0/3 |"]
    # the sentences are rendered from the numbers, not copied: a changed estimate changes them
    assert ("- `00_a`: C1 on toy: reproduced (avil − uniform: +3.33 points, 95 % CI [+1.00, +5.67]; 3 of 3 seeds "
            "with avil ahead; Holm over 1).") in lines
    assert lines[-1] == "No verdicts yet in the committed results of `01_b`." and text.endswith(".\n")
    assert reproduce.results_markdown(results_tree(tmp_path / "none", {"01_b": {}})).splitlines()[-1] == \
        "No verdicts yet in the committed results of `01_b`."


def test_summary_write_puts_the_section_after_the_two_commands_and_keeps_it_true(tmp_path, capsys):
    from avil.reproduce import __main__ as make_reproduce

    root = results_tree(tmp_path, {"00_a": {"verdicts": [verdict("C1", "toy")]}})
    readme = "# avil\n\nintro\n\n## The two commands\n\nmake\n\n## Use it\n\ncode\n"
    (root / "README.md").write_text(readme)
    assert reproduce.results_section(readme) is None
    make_reproduce.write_results_section(root)
    text = (root / "README.md").read_text()
    assert text == readme.replace("## Use it", reproduce.results_markdown(root) + "\n## Use it")
    assert reproduce.results_section(text) == reproduce.results_markdown(root)
    (root / "results" / "00_a" / "metrics.json").write_text(json.dumps({"verdicts": [verdict("C1", "mnist")]}))
    assert reproduce.results_section(text) != reproduce.results_markdown(root)  # stale: the test below would see it
    make_reproduce.write_results_section(root)
    again = (root / "README.md").read_text()
    assert reproduce.results_section(again) == reproduce.results_markdown(root) and "| C1 | mnist |" in again
    assert again.startswith("# avil\n\nintro\n\n## The two commands\n\nmake\n\n## Results\n")
    assert again.endswith("\n\n## Use it\n\ncode\n")
    (root / "README.md").write_text("# avil\n\n## Results\nold\n")  # the section last
    make_reproduce.write_results_section(root)
    assert (root / "README.md").read_text() == "# avil\n\n" + reproduce.results_markdown(root)


def test_the_readmes_results_section_is_generated_from_the_committed_results(capsys):
    from avil.reproduce import __main__ as make_reproduce

    root = reproduce.find_root()
    section = reproduce.results_section((root / "README.md").read_text())
    assert section is not None, "README.md has no ## Results section. Fix: python -m avil.reproduce --summary --write"
    assert section == reproduce.results_markdown(root), "Fix: python -m avil.reproduce --summary --write"
    assert make_reproduce.main(["--summary"]) == 0
    assert capsys.readouterr().out == section


def test_a_changed_number_in_a_results_file_changes_the_rendered_verdict_and_sentence(tmp_path):
    """The claims' verdicts and the README's sentences are rendered from the
    numbers: change one test metric behind C1 and both follow."""
    from avil.history import History

    def runs(tests):
        return [History(method="m", target="t", tasks=["t"], seed=s, test=v, dev=[v], task_weights=[{"t": 1.0}],
                        best_epoch=1) for s, v in enumerate(tests)]

    histories = {"avil": runs([0.90, 0.91, 0.92]), "single_task": runs([0.80, 0.81, 0.815]),
                 "uniform": runs([0.70, 0.715, 0.72])}
    data = {"verdicts": [reproduce.c1("toy", histories).to_dict()]}
    root = results_tree(tmp_path / "a", {"00_a": data})
    before = reproduce.results_markdown(root)
    assert "| C1 | toy | `00_a` | reproduced |" in before
    # uniform's seed-2 result raised above αVIL's: the rule now says otherwise, and so does the text
    histories["uniform"] = runs([0.95, 0.96, 0.97])
    data = {"verdicts": [reproduce.c1("toy", histories).to_dict()]}
    after = reproduce.results_markdown(results_tree(tmp_path / "b", {"00_a": data}))
    assert "| C1 | toy | `00_a` | not reproduced |" in after
    assert [l for l in before.splitlines() if l.startswith("- ")] != [l for l in after.splitlines() if l.startswith("- ")]
