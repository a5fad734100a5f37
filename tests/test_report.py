"""avil.reproduce.report: the paragraphs a notebook shows after its tables
state facts computed from the runs, so a changed number changes the words."""
import dataclasses

from avil.history import History
from avil.reproduce import report
from avil.reproduce.runs import AuxiliaryEffect
from avil.reproduce.stats import summarize

CONFIG = {"optimizer": "sgd", "lr": 0.05, "weight_min": 0.05, "weight_max": 4.0, "alpha_min": 0.0, "alpha_max": 4.0}
TASKS = ["t", "a", "b"]


def avil_run(seed, target_weights, test=0.9, best_epoch=None, target_alphas=None, dev=None):
    """An αVIL History whose target weight after each α-step is ``target_weights``."""
    n = len(target_weights)
    alphas = target_alphas or [1.0] * n
    return History(method="avil", target="t", tasks=TASKS, seed=seed, config=dict(CONFIG),
                   task_weights=[{"t": w, "a": 1.0, "b": 0.05} for w in target_weights],
                   alphas=[{"t": al, "a": 1.0, "b": 0.0} for al in alphas],
                   dev=dev or [0.5 + 0.01 * i for i in range(n)], test=test, best_epoch=best_epoch or n,
                   alpha_step=[{"loss_init": 1.0, "loss_final": 0.9, "evaluations": 5, "iterations": 3,
                                "on_bound": ["t"] if al >= 4.0 else [], "converged": True} for al in alphas],
                   epoch_seconds=[1.0] * n)


def plain_run(method, seed, test, best_epoch, epochs=4):
    return History(method=method, target="t", tasks=TASKS, seed=seed, config=dict(CONFIG),
                   task_weights=[{n: 1.0 for n in TASKS}] * epochs, dev=[0.5] * epochs, test=test,
                   best_epoch=best_epoch, epoch_seconds=[0.5] * epochs)


def effect(name, joint, alone):
    return AuxiliaryEffect(name, "uniform", "single_task",
                           [plain_run("uniform", s, v, 4) for s, v in enumerate(joint)],
                           [plain_run("single_task", s, v, 4) for s, v in enumerate(alone)])


ALONE = [0.80, 0.80, 0.81]
EFFECTS = {"a": effect("a", [0.70, 0.71, 0.69], ALONE),  # harmful
           "b": effect("b", [0.80, 0.82, 0.79], ALONE)}  # no effect detected


def test_target_weight_counts_the_floor_and_names_both_weights():
    runs = [avil_run(0, [0.5, 0.05, 0.05, 0.05]), avil_run(1, [1.2, 0.9, 0.6, 0.3])]
    text = report.target_weight(runs, [], "the basic suite")
    assert "ranges 0.05–1.20 over 8 α-steps (2 seeds)" in text
    assert "sits at the floor (`weight_min` = 0.05) after 3 of them" in text
    assert "the weight after the last α-step (the one a methods table's `w[t]` averages over seeds) is 0.05, 0.30" \
        in text
    assert "the weight the last epoch trained with (set by the α-step before it) is 0.05, 0.60" in text


def test_final_weights_print_one_number_where_the_range_rounds_to_one():
    runs = [avil_run(0, [1.0, 0.5]), avil_run(1, [1.0, 0.7])]
    runs[1].task_weights[-1]["b"] = 0.0500001
    assert report.final_weights(runs) == ("Task weights after the last α-step (range over seeds): `t` 0.50–0.70, "
                                          "`a` 1.00, `b` 0.05.")


def test_target_weight_pairs_the_pinned_variant_by_seed():
    runs = [avil_run(s, [1.0] * 3, test=v) for s, v in enumerate([0.80, 0.81, 0.82])]
    pinned = [avil_run(s, [1.0] * 3, test=v) for s, v in enumerate([0.70, 0.71, 0.72])]
    text = report.target_weight(runs, pinned)
    assert "With the target's weight pinned at 1: The pinned variant is behind αVIL unpinned by 10.00" in text


def test_alpha_steps_counts_the_target_on_the_box():
    runs = [avil_run(0, [4.0, 4.0, 2.0], target_alphas=[4.0, 4.0, 1.5])]
    text = report.alpha_steps(runs)
    assert "on an end of the α box [`alpha_min`, `alpha_max`] = [0, 4]" in text and "trust region" not in text
    assert "The target's α sits at `alpha_max` after 2 of 3 α-steps, and its weight at `weight_max` (4) after 2 " \
           "of 3 epochs" in text
    assert "the box's upper end, not the dev loss, decides" in text
    text = report.alpha_steps([avil_run(0, [1.0] * 3, target_alphas=[1.0, 4.0, 1.0])])
    assert "after 1 of 3 α-steps" in text and "decides" not in text


def test_extended_states_kinds_pairs_the_worst_auxiliarys_place_and_best_epochs():
    runs = [avil_run(0, [1.0] * 4), avil_run(1, [1.0] * 4)]
    runs[1] = dataclasses.replace(runs[1], task_weights=runs[1].task_weights[:-1]
                                  + [{"t": 1.0, "a": 0.05, "b": 0.05}])
    single = [plain_run("single_task", 0, 0.8, 2), plain_run("single_task", 1, 0.8, 1)]
    text = report.extended({"avil": runs, "single_task": single}, EFFECTS)
    assert "helpful: none; harmful: `a`; no effect detected: `b`" in text
    assert "no helpful-harmful pair to check" in text
    assert "places `a`, the auxiliary with the lowest measured effect, as follows: seed 0: 1st of 2; " \
           "seed 1: tied with all 2 (every score equal)" in text
    assert "`avil`: best dev epoch 4, 4 of 4 (the last epoch in 2 of 2 seeds)" in text
    assert "`single_task`: best dev epoch 2, 1 of 4 (the last epoch in 0 of 2 seeds)" in text
    assert "still improving on dev" in text
    single[0] = plain_run("single_task", 0, 0.8, 4)
    assert "still improving" not in report.extended({"avil": runs, "single_task": single}, EFFECTS)


def test_static_counts_the_weightings_tried_and_prints_times_that_divide():
    class Search:
        grid = (0.0, 0.5, 1.0, 2.0)
        chosen = {0: {"a": 0.0, "b": 2.0}, 1: {"a": 0.0, "b": 1.0}}
        runs_per_seed = 7
        best = [plain_run("static", 0, 0.9, 4), plain_run("static", 1, 0.9, 4)]

        def seconds(self, seed):
            return 14.72

    runs = [avil_run(0, [1.0] * 4), avil_run(1, [1.0] * 4)]
    text = report.static(Search(), runs, workers=2)
    assert "trained 7 of the 4^2 = 16 weightings per seed" in text
    assert "It chose weight 0, dropping the auxiliary, for `a` in 2 of 2 seeds." in text
    assert "14.7 s of training per seed (its runs' epochs summed), against 4.0 s for one αVIL run (3.7×)" in text
    assert "parallel worker processes" in text
    assert "parallel" not in report.static(Search(), runs)


def summary_of(**tests):
    return summarize({m: [plain_run(m, s, v, 4) for s, v in enumerate(values)] for m, values in tests.items()})


def test_against_single_task_and_methods_name_the_family():
    summary = summary_of(single_task=[0.80, 0.81, 0.83], avil=[0.90, 0.91, 0.92], static=[0.79, 0.84, 0.83])
    text = report.against_single_task(summary)
    assert "`avil` beat `single_task` (+9.67 points, Holm-adjusted p = " in text
    assert "`static` did not beat `single_task`" in text and "over the methods table's 2 comparisons" in text
    assert "over the table's 2 comparisons with `single_task`" in report.methods(summary)


def test_roles_names_an_auxiliary_measured_otherwise_than_built():
    text = report.roles(EFFECTS, {"a": "no effect detected", "b": "no effect detected"})
    assert text.startswith("Measured against its construction: `a` was built to be useless (no effect) and "
                           "measured harmful.")
    assert "`b`" not in text
    assert report.roles(EFFECTS, {"a": "harmful"}) == "Every auxiliary measured as the role it was built for."


def test_effects_baseline_says_why_the_two_single_task_numbers_differ():
    summary = summary_of(single_task=[0.70, 0.72, 0.74], uniform=[0.6, 0.6, 0.6])
    text = report.effects_baseline(EFFECTS, summary)
    assert text.startswith("The effects table's `single_task` (80.33) is not the methods table's (72.00)")
    assert "`uniform` on all 3 tasks" in text


def test_rankings_state_the_measured_order_once_and_each_seeds_tau():
    runs = [avil_run(0, [1.0] * 2), avil_run(1, [1.0] * 2)]
    runs[1].task_weights[-1]["b"] = 2.0  # seed 1's readout puts b above a, as the effects do
    text = report.rankings(runs, EFFECTS)
    assert text.count("The measured effects order the auxiliaries b (no effect detected) > a (harmful)") == 1
    assert "- seed 0: a > b (τ = -1.00)" in text and "- seed 1: b > a (τ = +1.00)" in text
    runs[0].task_weights[-1]["b"] = 1.0  # every score ties: no τ
    assert "- seed 0: a = b (τ undefined: every score ties)" in report.rankings(runs, EFFECTS)


def test_ablation_ranks_the_tasks_and_counts_zero_and_negative_entries():
    records = [{"rule": "avil", "seed": 0, "epoch": 1, "t": 0.10, "a": 0.0, "b": -0.002},
               {"rule": "avil", "seed": 1, "epoch": 1, "t": 0.30, "a": 0.02, "b": 0.0}]
    text = report.ablation(records)
    assert "over 2 α-steps (2 seeds)" in text
    assert "`t` +0.2000, `a` +0.0100, `b` -0.0010 (largest first)" in text
    assert "Of the 6 entries, 2 are exactly 0 and 1 negative (at most 0.0020 below 0)" in text
    records[0]["b"] = 0.001
    assert report.ablation(records).endswith("2 are exactly 0 and none is negative.")


def test_against_single_task_says_where_c1s_smaller_family_decides_otherwise():
    import types

    summary = summary_of(single_task=[0.80, 0.81, 0.83], avil=[0.82, 0.82, 0.86], static=[0.79, 0.84, 0.83])
    c1 = types.SimpleNamespace(detail={"method": "avil", "ahead": ["single_task"],
                                       "comparisons": {"single_task": {"holm_p": 0.047}, "uniform": {"holm_p": 1.0}}})
    text = report.against_single_task(summary, c1=c1)
    assert "`avil` did not beat `single_task`" in text
    assert ("Whether `avil` is measurably ahead of `single_task` depends on the family Holm's correction runs over, "
            "so read this difference as borderline: C1 corrects over its 2 baselines, the methods table over its 2 "
            "comparisons with `single_task`; in C1's family the same difference has Holm-adjusted p = 0.047, and "
            "`avil` is measurably ahead of `single_task` there.") in text
    c1.detail["ahead"] = []  # C1 agrees with the table: nothing to reconcile
    assert "C1 corrects" not in report.against_single_task(summary, c1=c1)
