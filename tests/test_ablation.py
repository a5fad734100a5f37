"""Notebook 03's ablation (avil.reproduce.ablation, readouts): its summary is
summarize's shape plus 03's own fields, its tables Holm-correct each suite's
column, and the default rule and readout are chosen by the stated rule."""
import pytest

import avil
from avil import reproduce
from avil.reproduce import ablation, readouts, report
from avil.reproduce.ablation import PAPER, SuiteResult
from avil.reproduce.runs import AuxiliaryEffect

SINGLE_TASK = [0.80, 0.80, 0.80]


def summary_of(tests, reference=PAPER):
    return {"toy": {label: {"test": t, "baseline": "single_task",
                            "vs_baseline": reproduce.paired_difference(t, SINGLE_TASK).to_dict(),
                            "vs_paper": reproduce.paired_difference(t, tests[reference]).to_dict()}
                    for label, t in tests.items()}}


def test_differences_table_marks_only_what_survives_holm_over_the_column():
    tests = {PAPER: [0.80, 0.82, 0.84], "better": [0.83, 0.85, 0.88], "noisy": [0.70, 0.90, 0.84]}
    frame = ablation.differences_table(summary_of(tests), "vs_paper")
    assert list(frame.index) == ["better", "noisy"]  # the reference is not compared with itself
    # better − paper = 3, 3, 4 points: ± 1.43 (t_{0.975,2} · 0.577 / √3), p = 0.0039; Holm over 2: p = 0.0078
    assert frame.loc["better", "toy"] == "+3.33 ± 1.43 (3/3) *"
    assert frame.loc["noisy", "toy"].startswith("-0.67 ± ") and frame.loc["noisy", "toy"].endswith("(1/3)")
    assert ablation.differences_table(summary_of(tests)).loc[PAPER, "toy"] == "+2.00 ± 4.97 (2/3)"


def history(method, seed, test, weights, alpha_seconds=None, epoch_seconds=10.0, alphas=None, without=None):
    """A one-epoch History of the suite t (target) + good, bad, worse."""
    h = avil.History(method=method, target="t", tasks=["t", "good", "bad", "worse"], seed=seed)
    step = None if alpha_seconds is None else {
        "loss_init": 1.0, "loss_final": 0.9, "iterations": 3, "evaluations": 4, "on_bound": [], "converged": True,
        "seconds": alpha_seconds, "gradient_init": dict.fromkeys(weights, 0.0),
        **({"loss_without": without} if without else {})}
    h.record(task_weights=weights, alphas=(alphas or weights) if step else {}, train_loss={}, dev=test, test=test,
             seconds=epoch_seconds, alpha_step=step)
    return h


def effect(aux, joint, alone):
    """An AuxiliaryEffect with the given per-seed tests (seeds 0, 1)."""
    return AuxiliaryEffect(aux, "uniform", "single_task", [history("uniform", s, t, {}) for s, t in enumerate(joint)],
                           [history("single_task", s, t, {}) for s, t in enumerate(alone)])


def test_summary_is_summarize_plus_the_ablations_own_fields():
    weights = {"t": 1.0, "good": 1.5, "bad": 0.5, "worse": 0.2}
    by_label = {
        "single_task": [history("single_task", s, 0.80, dict.fromkeys(weights, 1.0)) for s in (0, 1)],
        PAPER: [history("avil", 0, 0.81, weights, 1.0), history("avil", 1, 0.82, weights, 1.0)],
        "variant": [history("avil", 0, 0.83, weights, alpha_seconds=1.0),
                    history("avil", 1, 0.85, weights, alpha_seconds=3.0)],
    }
    out = ablation.summary({"toy": SuiteResult(by_label, {})})["toy"]
    assert list(out) == [PAPER, "variant"]  # the baseline is what every variant is paired with, not a row
    s = out["variant"]
    expected = reproduce.summarize(by_label)["variant"]
    assert {key: s[key] for key in expected} == expected  # vs_baseline, baseline, test, seeds, ...
    assert s["vs_baseline"]["differences"] == pytest.approx([0.03, 0.05])
    assert s["vs_paper"]["differences"] == pytest.approx([0.02, 0.03])
    assert s["alpha_step_share"] == pytest.approx(4 / 20) and s["evaluations"] == 4
    assert s["alpha_range"] == [0.2, 1.5] and s["weight_range"] == [0.2, 1.5] and s["all_finite"]


def test_every_alpha_vil_run_of_the_ablation_records_the_per_delta_ablation():
    suites = ablation.suites("smoke", [0], ["toy", "multimnist"])
    for suite in suites.values():
        labelled = ablation.variants(suite)
        assert set(ablation.RULES) <= set(labelled) and all(c.alpha_ablation for c in labelled.values())
    assert set(ablation.ALPHA_STEPS) <= set(ablation.variants(suites["toy"]))
    assert ablation.variants(suites["multimnist"]).keys() & set(ablation.EXTRAS) == set(ablation.COST_EXTRAS)


def ranked_suite(scores_by_rule, effects):
    """SuiteResult whose rules' runs hold the given per-seed final weights."""
    histories = {rule: [history("avil", seed, 0.8, {"t": 1.0, **w}, alpha_seconds=1.0) for seed, w in enumerate(ws)]
                 for rule, ws in scores_by_rule.items()}
    return SuiteResult(histories, effects)


EFFECTS = {"good": effect("good", [0.90, 0.92], [0.80, 0.81]),      # helpful (+10.5 points)
           "bad": effect("bad", [0.70, 0.69], [0.80, 0.81]),        # harmful
           "worse": effect("worse", [0.50, 0.52], [0.80, 0.81])}    # most harmful


def test_c2_per_suite_and_the_most_harmful_last():
    right = [{"good": 2.0, "bad": 0.5, "worse": 0.1}, {"good": 1.5, "bad": 0.4, "worse": 0.2}]
    wrong = [{"good": 0.1, "bad": 0.5, "worse": 2.0}, {"good": 0.2, "bad": 0.4, "worse": 1.5}]
    results = {"synthetic-0": ranked_suite({PAPER: right, "contribution": wrong}, EFFECTS)}
    by_pair = readouts.c2_by_suite(results, rules=[PAPER, "contribution"], readouts=["final_weight"])
    good = by_pair[(PAPER, "final_weight")]["synthetic-0"]
    bad = by_pair[("contribution", "final_weight")]["synthetic-0"]
    assert good.estimate == 1.0 and good.wins == 2 and readouts.suite_above(good)
    assert bad.estimate == -1.0 and bad.wins == 0 and not readouts.suite_above(bad)
    assert readouts.most_harmful_last(good) == [True, True] and readouts.most_harmful_last(bad) == [False, False]


def test_the_choice_keeps_the_papers_reading_unless_another_is_measurably_better():
    base = [{"good": 2.0, "bad": 0.5, "worse": 0.1}, {"good": 1.5, "bad": 0.4, "worse": 0.2}]
    results = {f"synthetic-{k}": ranked_suite({PAPER: base, "average α": base}, EFFECTS) for k in range(3)}
    by_pair = readouts.c2_by_suite(results, rules=[PAPER, "average α"], readouts=["final_weight", "mean_weight"])
    tests = {PAPER: [0.8, 0.8], "average α": [0.8, 0.8]}
    summary = {name: {label: {"test": t, "vs_paper": reproduce.paired_difference(t, tests[PAPER]).to_dict()}
                      for label, t in tests.items()} for name in results}
    choice = readouts.choose(summary, by_pair)
    assert (choice["rule"], choice["readout"]) == readouts.REFERENCE  # equal τ everywhere: nothing is better


def test_a_rule_measurably_less_accurate_than_the_papers_is_not_eligible():
    tests = {PAPER: [0.80, 0.82, 0.84], "average α": [0.70, 0.71, 0.73]}
    summary = summary_of(tests)
    assert readouts.eligible_rules(summary)["average α"] == ["toy"]
    assert readouts.eligible_rules(summary)[PAPER] == []


def test_report_versus_names_the_rows_ahead_and_behind_after_holm():
    tests = {PAPER: [0.80, 0.82, 0.84], "better": [0.83, 0.85, 0.88], "worse": [0.70, 0.71, 0.73]}
    text = report.versus(ablation.holm_differences(summary_of(tests), "vs_paper"), "the paper's rule")
    assert "measurably ahead of the paper's rule: `better`" in text and "measurably behind it: `worse`" in text
    tests = {PAPER: [0.80, 0.82, 0.84], "noisy": [0.70, 0.90, 0.84]}
    text = report.versus(ablation.holm_differences(summary_of(tests), "vs_paper"), "the paper's rule")
    assert "no row differs measurably" in text and "smallest effect these seeds could detect" in text
