"""avil.reproduce.ablation (notebook 03): its summary is summarize's shape plus
03's own checks, and its tables show the paired differences, against
single_task and against the chosen default."""
import pytest

import avil
from avil import reproduce
from avil.reproduce import ablation

# Per-seed test accuracies of three variants on one suite (seeds 0, 1, 2).
TESTS = {"chosen": [0.80, 0.82, 0.84], "better": [0.83, 0.85, 0.88], "noisy": [0.70, 0.90, 0.84]}
SINGLE_TASK = [0.80, 0.80, 0.80]


def summary_of(tests):
    return {"toy": {label: {"test": t, "baseline": "single_task",
                            "vs_baseline": reproduce.paired_difference(t, SINGLE_TASK).to_dict()}
                    for label, t in tests.items()}}


def test_versus_table_pairs_every_variant_with_the_reference_per_seed():
    frame = ablation.versus_table(summary_of(TESTS), "chosen")
    assert list(frame.index) == ["better", "noisy"]  # the reference is not compared with itself
    # better − chosen = 0.03, 0.03, 0.04: mean 3.33 points, sd 0.577, t_{0.975, 2} = 4.3027 → ± 1.43
    assert frame.loc["better", "toy"] == "+3.33 ± 1.43 (3/3) *"
    # noisy − chosen = −0.10, +0.08, 0.00: inside its interval, one win in three, no asterisk
    assert frame.loc["noisy", "toy"].startswith("-0.67 ± ") and frame.loc["noisy", "toy"].endswith("(1/3)")


def test_differences_table_shows_the_difference_from_single_task():
    frame = ablation.differences_table(summary_of(TESTS))
    assert frame.loc["chosen", "toy"] == "+2.00 ± 4.97 (2/3)"  # 0, 2, 4 points: sd 2, ± 4.3027 · 2 / √3
    # 3, 5, 8 points: three wins, but an interval (± 6.25) that includes 0, so no asterisk
    assert frame.loc["better", "toy"] == "+5.33 ± 6.25 (3/3)"


def test_versus_table_names_a_missing_reference():
    with pytest.raises(ValueError, match=r"suite 'toy' has no variant 'default'.*\['better', 'chosen', 'noisy'\]"):
        ablation.versus_table(summary_of(TESTS), "default")


def history(method, seed, test, weights, alpha_seconds=None, epoch_seconds=10.0):
    """A one-epoch History of the suite t (target) + good, bad, worse."""
    h = avil.History(method=method, target="t", tasks=["t", "good", "bad", "worse"], seed=seed)
    step = None if alpha_seconds is None else {"loss_init": 1.0, "loss_final": 0.9, "iterations": 3,
                                               "evaluations": 4, "on_bound": [], "converged": True,
                                               "seconds": alpha_seconds}
    h.record(task_weights=weights, alphas=weights if step else {}, train_loss={}, dev=test, test=test,
             seconds=epoch_seconds, alpha_step=step)
    return h


def test_summary_is_summarize_plus_the_ablations_own_fields():
    suite = ablation.Suite("toy", None, "t", avil.FitConfig(), harmful=("bad", "worse"))
    ranked = {"t": 1.0, "good": 1.5, "bad": 0.5, "worse": 0.2}  # both harmful below the helpful one
    tie = {"t": 1.0, "good": 0.5, "bad": 0.5, "worse": 0.2}  # bad ties good: not strictly below
    results = {"toy": {
        "single_task": [history("single_task", 0, 0.80, dict.fromkeys(ranked, 1.0)),
                        history("single_task", 1, 0.80, dict.fromkeys(ranked, 1.0))],
        "variant": [history("avil", 0, 0.83, ranked, alpha_seconds=1.0),
                    history("avil", 1, 0.85, tie, alpha_seconds=3.0)],
    }}
    out = ablation.summary(results, {"toy": suite})["toy"]
    assert list(out) == ["variant"]  # the baseline is what every variant is paired with, not a row
    s = out["variant"]
    expected = reproduce.summarize(results["toy"])["variant"]
    assert {key: s[key] for key in expected} == expected  # vs_baseline, baseline, test, seeds, ...
    assert s["baseline"] == "single_task" and s["vs_baseline"]["differences"] == pytest.approx([0.03, 0.05])
    assert s["harmful_lowest"] == [True, False]
    assert s["alpha_step_share"] == pytest.approx(4 / 20) and s["evaluations"] == 4
    assert s["alpha_range"] == [0.2, 1.5] and s["weight_range"] == [0.2, 1.5] and s["all_finite"]
    no_harmful = ablation.Suite("toy", None, "t", avil.FitConfig())
    assert ablation.summary(results, {"toy": no_harmful})["toy"]["variant"]["harmful_lowest"] is None
