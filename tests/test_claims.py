"""avil.reproduce's claim verdicts and the sentences rendered from them: the
statistics against references, every verdict branch, and a changed number
that flips a verdict and the words that report it."""
import json
import math

import pytest
from scipy import stats

from avil import reproduce
from avil.history import History
from avil.reproduce import prose
from avil.reproduce.stats import PairedDifference, holm, minimum_detectable_effect, paired_difference


def runs(method, tests, seeds=None):
    seeds = range(len(tests)) if seeds is None else seeds
    return [History(method=method, target="t", tasks=["t"], seed=s, test=v, dev=[v], task_weights=[{"t": 1.0}],
                    best_epoch=1) for s, v in zip(seeds, tests)]


AVIL = [0.85, 0.87, 0.88]


def suite(**baselines):
    """αVIL at AVIL, with the given baselines' test metrics per seed."""
    return {"avil": runs("avil", AVIL), **{name: runs(name, tests) for name, tests in baselines.items()}}


BEHIND = dict(single_task=[0.80, 0.81, 0.83], uniform=[0.82, 0.835, 0.85], diw=[0.80, 0.80, 0.82])


# -- statistics ---------------------------------------------------------------

@pytest.mark.parametrize("a, b", [([0.85, 0.87, 0.88, 0.84], [0.80, 0.86, 0.83, 0.85]),
                                  ([1.0, 2.0, 4.0], [0.5, 2.5, 1.0]), ([0.1, 0.2], [0.3, 0.25])])
def test_p_value_is_scipys_paired_t_test(a, b):
    assert paired_difference(a, b).p_value == pytest.approx(stats.ttest_rel(a, b).pvalue, rel=1e-12)


def test_p_value_without_a_spread_or_a_second_seed():
    assert paired_difference([0.9], [0.8]).p_value == 1.0  # one seed: no test
    assert paired_difference([0.5, 0.75], [0.25, 0.5]).p_value == 0.0  # the same +0.25 in both seeds
    assert paired_difference([0.5, 0.5], [0.5, 0.5]).p_value == 1.0


def test_p_value_travels_with_the_dict_and_is_not_stored_back():
    d = paired_difference([0.85, 0.87, 0.88], [0.80, 0.86, 0.83])
    data = json.loads(json.dumps(d.to_dict()))
    assert data["p_value"] == pytest.approx(d.p_value)
    assert PairedDifference.from_dict(data) == d


@pytest.mark.parametrize("p, adjusted", [
    # by hand: sorted d, a, c, b times 4, 3, 2, 1 = .02, .03, .06, .04 -> monotone: b gets .06
    ({"a": 0.01, "b": 0.04, "c": 0.03, "d": 0.005}, {"a": 0.03, "b": 0.06, "c": 0.06, "d": 0.02}),
    # R: p.adjust(c(.01, .02, .03, .04, .05), "holm") = .05 .08 .09 .09 .09
    ({"1": 0.01, "2": 0.02, "3": 0.03, "4": 0.04, "5": 0.05}, {"1": 0.05, "2": 0.08, "3": 0.09, "4": 0.09, "5": 0.09}),
    ({"x": 0.6, "y": 0.9}, {"x": 1.0, "y": 1.0}),  # capped at 1
    ({"only": 0.03}, {"only": 0.03}),  # a family of one is not corrected
    ({"x": 0.01, "y": 0.01}, {"x": 0.02, "y": 0.02}),  # ties
])
def test_holm_against_hand_computed_and_reference_values(p, adjusted):
    out = holm(p)
    assert list(out) == list(p)  # the caller's order
    assert out == pytest.approx(adjusted)


@pytest.mark.parametrize("p", [{"a": 1.5}, {"a": -0.1}, {"a": math.nan}])
def test_holm_rejects_what_is_not_a_p_value(p):
    with pytest.raises(ValueError, match="not numbers in \\[0, 1\\]"):
        holm(p)


def test_minimum_detectable_effect_against_a_hand_computation():
    d = paired_difference([2.0, 3.0, 4.0], [1.0, 1.0, 1.0])  # differences 1, 2, 3: sd 1, n 3
    # t-tables: t_{0.975, 2} = 4.3027, t_{0.80, 2} = 1.0607; (4.3027 + 1.0607) · 1 / √3
    assert minimum_detectable_effect(d) == pytest.approx(5.3634 / math.sqrt(3), rel=1e-4)
    assert minimum_detectable_effect(paired_difference([1.0], [0.0])) == math.inf
    assert minimum_detectable_effect(d, power=0.9) > minimum_detectable_effect(d)


def test_minimum_detectable_effect_is_detected_with_about_that_power():
    diffs = [0.1, -0.3, 0.4, 0.2, -0.1, 0.5, 0.0, 0.3, -0.2, 0.1]
    d = paired_difference(diffs, [0.0] * len(diffs))
    n, sd = d.seeds, stats.tstd(diffs)
    critical = stats.t.ppf(0.975, n - 1)
    noncentrality = minimum_detectable_effect(d) / (sd / math.sqrt(n))
    power = stats.nct.sf(critical, n - 1, noncentrality) + stats.nct.cdf(-critical, n - 1, noncentrality)
    assert power == pytest.approx(0.8, abs=0.02)


# -- C1 -------------------------------------------------------------------------

def test_c1_reproduced_when_avil_is_ahead_of_every_baseline_after_holm():
    v = reproduce.c1("toy", suite(**BEHIND))
    assert v.verdict == "reproduced"
    comparisons = v.detail["comparisons"]
    assert set(comparisons) == {"single_task", "uniform", "diw"}  # gcs was not run: not compared
    p = {b: paired_difference(AVIL, tests).p_value for b, tests in BEHIND.items()}
    assert {b: c["holm_p"] for b, c in comparisons.items()} == pytest.approx(holm(p))
    strongest = paired_difference(AVIL, BEHIND["uniform"])  # highest mean test
    assert v.detail["strongest"] == "uniform"
    assert (v.estimate, v.ci_low, v.ci_high, v.seeds, v.wins) == pytest.approx(
        (strongest.mean, strongest.low, strongest.high, 3, 3))
    assert "Holm over C1's 3 baselines (single_task, uniform, diw)" in v.statement
    assert "95 % CI [+2.45, +3.88]" in v.statement


def test_c1_names_its_baselines_and_what_it_leaves_to_c3():
    histories = {**suite(**BEHIND), "static": runs("static", [0.95, 0.96, 0.97])}
    v = reproduce.c1("toy", histories)
    assert v.verdict == "reproduced" and set(v.detail["comparisons"]) == {"single_task", "uniform", "diw"}
    assert "ahead of each of C1's baselines: single_task, uniform, diw" in v.statement
    assert "static is not among them (C3 sets αVIL against static)" in v.statement


def test_c1_not_reproduced_when_a_baseline_is_measurably_ahead():
    v = reproduce.c1("toy", suite(**{**BEHIND, "uniform": [0.90, 0.91, 0.93]}))
    assert v.verdict == "not reproduced" and v.detail["behind"] == ["uniform"]
    assert v.detail["strongest"] == "uniform" and v.estimate < 0 and v.wins == 0
    assert "uniform is measurably ahead of avil" in v.statement


def test_c1_inconclusive_when_a_baseline_is_within_the_interval():
    v = reproduce.c1("toy", suite(**{**BEHIND, "uniform": [0.86, 0.86, 0.87]}))
    assert v.verdict == "inconclusive" and v.ci_low < 0 < v.ci_high
    assert "not measurably ahead of uniform" in v.statement
    # what avil is measurably ahead of is named beside what it is not
    assert "avil is measurably ahead of single_task and diw but not measurably ahead of uniform" in v.statement
    assert "avil − uniform (the strongest baseline): " in v.statement
    # at α/3, the strictest step of Holm over the three comparisons (t_{0.99167, 2} = 7.65 instead of 4.30)
    assert "smallest detectable effect about 5.81 points (80 % power, α = 0.0167)" in v.statement


def test_c1_holm_turns_a_lone_uncorrected_win_into_inconclusive():
    # against diw alone the interval excludes 0 (p ≈ 0.035); among three comparisons Holm triples it
    avil, diw = [0.85, 0.87, 0.88], [0.84, 0.85, 0.865]
    alone = reproduce.c1("toy", {"avil": runs("avil", avil), "diw": runs("diw", diw)})
    assert alone.verdict == "reproduced" and alone.detail["comparisons"]["diw"]["p"] < 0.05
    family = reproduce.c1("toy", {"avil": runs("avil", avil), "diw": runs("diw", diw),
                                  "gcs": runs("gcs", [0.80, 0.86, 0.80]), "uniform": runs("u", [0.8, 0.88, 0.8])})
    assert family.detail["comparisons"]["diw"]["holm_p"] >= 0.05 and family.verdict == "inconclusive"


def test_c1_with_one_seed_is_inconclusive():
    v = reproduce.c1("toy", {"avil": runs("avil", [0.9]), "uniform": runs("u", [0.5])})
    assert v.verdict == "inconclusive" and v.ci_low == -math.inf
    assert v.to_dict()["ci_low"] is None and "no interval with one seed" in v.statement


def test_c1_pairs_on_shared_seeds_and_says_which_were_left_out():
    v = reproduce.c1("toy", {"avil": runs("avil", AVIL), "uniform": runs("u", [0.8, 0.8, 0.8], seeds=[1, 2, 3])})
    assert v.seeds == 2 and v.detail["comparisons"]["uniform"]["unpaired_seeds"] == [0, 3]
    assert "left out: uniform: 0, 3" in v.statement


@pytest.mark.parametrize("histories, match", [
    ({"uniform": runs("u", AVIL)}, "no avil runs"),
    ({"avil": runs("avil", AVIL), "mystery": runs("m", AVIL)}, "none of the baselines"),
    ({"avil": runs("avil", AVIL), "uniform": runs("u", AVIL, seeds=[5, 6, 7])}, "no seed in common"),
    ({"avil": runs("avil", AVIL, seeds=[0, 0, 1]), "uniform": runs("u", AVIL)}, "two runs with seed 0"),
    ({"avil": runs("avil", [0.8, math.nan]), "uniform": runs("u", [0.8, 0.8])}, "seed 1: the test metric is nan"),
])
def test_c1_names_bad_input(histories, match):
    with pytest.raises(ValueError, match=match):
        reproduce.c1("toy", histories)


def test_raising_a_baseline_above_avil_flips_c1_and_its_sentence():
    before = reproduce.c1("toy", suite(**BEHIND))
    after = reproduce.c1("toy", suite(**{**BEHIND, "diw": [0.95, 0.96, 0.99]}))  # one baseline's numbers changed
    assert (before.verdict, after.verdict) == ("reproduced", "not reproduced")
    said_before, said_after = prose.verdict(before), prose.verdict(after)
    assert ": reproduced (" in said_before and ": not reproduced (" in said_after
    assert "avil − uniform" in said_before and "avil − diw" in said_after  # the strongest baseline changed too
    assert before.statement != after.statement


# -- C2 -------------------------------------------------------------------------

EFFECTS = {"good": paired_difference([0.9, 0.91, 0.92], [0.8, 0.8, 0.81]),  # helpful
           "bad": paired_difference([0.7, 0.71, 0.69], [0.8, 0.8, 0.81]),  # harmful
           "flat": paired_difference([0.8, 0.82, 0.79], [0.8, 0.8, 0.81])}  # no effect detected


def test_c2_tau_is_scipys_tau_b_per_seed_with_ties():
    scores = {0: {"good": 1.2, "bad": 0.3, "flat": 0.9}, 1: {"good": 1.1, "bad": 0.5, "flat": 0.5},
              3: {"good": 0.2, "bad": 0.9, "flat": 0.6}}
    v = reproduce.c2("toy", scores, EFFECTS)
    means = [EFFECTS[a].mean for a in EFFECTS]
    for seed, per_aux in scores.items():
        expected = stats.kendalltau([per_aux[a] for a in EFFECTS], means).statistic
        assert v.detail["taus"][seed] == pytest.approx(expected)
    assert v.detail["taus"][0] == pytest.approx(1.0) and v.detail["taus"][3] == pytest.approx(-1.0)
    assert v.detail["taus"][1] == pytest.approx(2 / math.sqrt(6))  # τ-b by hand: (2 − 0) / √(3 · 2)
    assert v.detail["score_ties"][1] == [["bad", "flat"]]
    taus = list(v.detail["taus"].values())
    reference = paired_difference(taus, [0.0] * 3)
    # the t-interval, clipped to τ's range
    assert (v.estimate, v.ci_low, v.ci_high) == pytest.approx((reference.mean, max(reference.low, -1.0),
                                                               min(reference.high, 1.0)))
    assert v.detail["helpful"] == ["good"] and v.detail["harmful"] == ["bad"]
    assert v.wins == 2 and v.detail["order"] == {0: "above", 1: "above", 3: "below"}


def test_c2_reproduced_and_not_reproduced():
    agree = {s: {"good": 2.0 + s, "flat": 1.0, "bad": 0.1} for s in range(3)}
    v = reproduce.c2("toy", agree, EFFECTS)
    assert v.verdict == "reproduced" and v.estimate == 1.0 and v.wins == 3
    reverse = {s: {"good": 0.1, "flat": 1.0, "bad": 2.0 + s} for s in range(3)}
    v = reproduce.c2("toy", reverse, EFFECTS)
    assert v.verdict == "not reproduced" and v.estimate == -1.0 and v.wins == 0


def test_c2_leaves_out_seeds_with_undefined_tau_and_says_so():
    scores = {0: {"good": 1.0, "bad": 0.1, "flat": 0.5}, 1: {"good": 0.4, "bad": 0.4, "flat": 0.4},
              2: {"good": 0.9, "bad": 0.2, "flat": 0.3}}
    v = reproduce.c2("toy", scores, EFFECTS)
    assert v.detail["tau_undefined"] == {1: "all scores tie"} and 1 not in v.detail["taus"]
    assert v.seeds == 2 and v.estimate == pytest.approx(1.0)  # the mean of seeds 0 and 2 only, not of 1, 0, 1
    assert v.detail["order"][1] == "tie" and v.detail["ties"] == [1] and v.wins == 2
    assert "they tie in 1 of 3 seeds (seed 1)" in v.statement
    assert "τ is undefined in 1 of 3 seeds, left out as not applicable: seed 1 (all scores tie)" in v.statement


def test_c2_with_fewer_than_two_defined_taus_is_not_applicable():
    tied = {"good": 0.05, "bad": 0.05, "flat": 0.05}
    scores = {0: dict(tied), 1: dict(tied), 2: {"good": 0.9, "bad": 0.2, "flat": 0.3}}
    v = reproduce.c2("toy", scores, EFFECTS)
    assert v.verdict == "inconclusive" and v.estimate is None and v.ci_low is None
    assert v.detail["why"].startswith("Kendall's τ is defined in 1 of 3 seeds") and "not applicable" in v.detail["why"]
    assert "τ is undefined in 2 of 3 seeds" in v.statement
    assert prose.verdict(v).startswith("C2 on toy: inconclusive (Kendall's τ is defined in 1 of 3 seeds")


def test_c2_interval_is_clipped_to_taus_range_and_said_so():
    scores = {0: {"good": 1.0, "flat": 0.5, "bad": 0.1}, 1: {"good": 1.0, "flat": 0.5, "bad": 0.1},
              2: {"good": 1.0, "flat": 0.1, "bad": 0.5}}  # τ = 1, 1, 1/3: the raw t-interval ends above 1
    v = reproduce.c2("toy", scores, EFFECTS)
    raw = paired_difference(list(v.detail["taus"].values()), [0.0] * 3)
    assert raw.high > 1 and v.ci_high == 1.0 and v.ci_low == pytest.approx(raw.low)
    assert v.detail["ci_clipped"] and "clipped to τ's range [−1, 1]" in v.statement
    assert v.verdict == ("reproduced" if raw.low > 0 else "inconclusive")  # clipping never moves the verdict


@pytest.mark.parametrize("scores, effects, why", [
    ({0: {"good": 1.0}}, {"good": EFFECTS["good"]}, "1 auxiliary measured"),
    ({}, EFFECTS, "no αVIL seed was scored"),
])
def test_c2_without_a_ranking_to_check_is_inconclusive(scores, effects, why):
    v = reproduce.c2("toy", scores, effects)
    assert v.verdict == "inconclusive" and v.estimate is None and v.detail["why"].startswith(why)
    assert prose.verdict(v).startswith("C2 on toy: inconclusive (")


def test_c2_where_no_auxiliary_has_a_detected_effect_is_inconclusive_whatever_tau_says():
    flat = {"flat": EFFECTS["flat"],
            "flat_too": paired_difference([0.81, 0.8, 0.8], [0.8, 0.8, 0.81])}  # both within their noise
    agree = {s: {"flat": 1.0, "flat_too": 0.5} if flat["flat"].mean > flat["flat_too"].mean
             else {"flat": 0.5, "flat_too": 1.0} for s in range(3)}
    v = reproduce.c2("text", agree, flat)
    assert v.estimate == 1.0 and v.ci_low == 1.0  # the same order in every seed: τ's interval lies above 0 ...
    assert v.verdict == "inconclusive"  # ... but an order within the noise decides nothing
    assert v.detail["why"].startswith("no auxiliary's effect on the target was detected")
    assert "No auxiliary's effect on the target was detected" in v.statement
    assert "; no auxiliary's effect on the target was detected" in prose.verdict(v)  # the summary line says why
    with_effect = reproduce.c2("text", {s: {"good": 1.0, "flat": 0.5} for s in range(3)},
                               {"good": EFFECTS["good"], "flat": EFFECTS["flat"]})
    assert with_effect.verdict == "reproduced"  # one detected effect is enough for τ to decide


def test_c2_without_a_harmful_auxiliary_counts_no_wins():
    effects = {"good": EFFECTS["good"], "flat": EFFECTS["flat"]}
    v = reproduce.c2("toy", {s: {"good": 1.0, "flat": 0.5} for s in range(2)}, effects)
    assert v.wins is None and "no seed's order of the two could be checked" in v.statement


def test_c2_names_scores_that_do_not_match_the_effects():
    with pytest.raises(ValueError, match="seed 0: scores for \\['bad', 'good'\\] but effects for"):
        reproduce.c2("toy", {0: {"good": 1.0, "bad": 0.2}}, EFFECTS)


def test_changing_one_score_flips_c2_and_its_sentence():
    scores = {s: {"good": 2.0, "flat": 1.0, "bad": 0.1} for s in range(3)}
    before = reproduce.c2("toy", scores, EFFECTS)
    scores[2] = {"good": 2.0, "flat": 1.0, "bad": 3.0}  # one seed's harmful auxiliary now on top
    after = reproduce.c2("toy", scores, EFFECTS)
    assert (before.verdict, after.verdict) == ("reproduced", "inconclusive")
    assert "3 of 3 seeds with every helpful" in prose.verdict(before)
    assert "2 of 3 seeds with every helpful" in prose.verdict(after)


def test_c2_pooled_over_suites():
    taus = {f"s{i}": t for i, t in enumerate([0.5, 0.3, 0.6, 0.4])}
    v = reproduce.c2_pooled("synthetic", taus, {"s0": True, "s1": False, "s2": True, "s3": True})
    reference = paired_difference(list(taus.values()), [0.0] * 4)
    assert v.verdict == "reproduced" and v.estimate == pytest.approx(reference.mean)
    assert (v.seeds, v.wins, v.units) == (4, 3, "suites")
    assert "over 4 suites" in v.statement and "in 3 of 4 suites" in v.statement
    v = reproduce.c2_pooled("synthetic", {"a": -0.5, "b": -0.4, "c": -0.45}, {"a": False, "b": False, "c": True})
    assert v.verdict == "not reproduced"
    with pytest.raises(ValueError, match="give both for the same suites"):
        reproduce.c2_pooled("synthetic", {"a": 0.5}, {"b": True})
    with pytest.raises(ValueError, match="not in \\[-1, 1\\]"):
        reproduce.c2_pooled("synthetic", {"a": math.nan}, {"a": True})


def test_c2_pooled_leaves_out_suites_where_c2_is_not_applicable():
    taus = {"s0": 0.5, "s1": None, "s2": 0.6, "s3": 0.4}
    v = reproduce.c2_pooled("synthetic", taus, {"s0": True, "s1": None, "s2": True, "s3": False})
    reference = paired_difference([0.5, 0.6, 0.4], [0.0] * 3)
    assert v.seeds == 3 and v.estimate == pytest.approx(reference.mean) and v.detail["not_applicable"] == ["s1"]
    assert "not applicable on 1 of 4 suites" in v.statement and "left out: s1" in v.statement
    v = reproduce.c2_pooled("synthetic", {"a": 0.5, "b": None}, {"a": True, "b": None})
    assert v.verdict == "inconclusive" and v.estimate is None


# -- C3 -------------------------------------------------------------------------

AVIL_BY_SEED = {0: 0.85, 1: 0.86, 2: 0.87}


@pytest.mark.parametrize("static, avil_seconds, verdict", [
    ({0: 0.852, 1: 0.858, 2: 0.871}, 30.0, "reproduced"),  # within a point, cheaper
    ({0: 0.855, 1: 0.858, 2: 0.872}, 30.0, "inconclusive"),  # the interval reaches past −1 point
    ({0: 0.88, 1: 0.895, 2: 0.90}, 30.0, "not reproduced"),  # the search ahead by more than the margin
    ({0: 0.853, 1: 0.864, 2: 0.873}, 30.0, "reproduced"),  # measurably behind, but by less than the margin
    ({0: 0.852, 1: 0.858, 2: 0.871}, 300.0, "not reproduced"),  # as accurate, but costs more than the search
])
def test_c3_verdicts(static, avil_seconds, verdict):
    v = reproduce.c3("toy", AVIL_BY_SEED, static, avil_seconds, 200.0, 9)
    assert v.verdict == verdict
    d = paired_difference(list(AVIL_BY_SEED.values()), list(static.values()))
    assert (v.estimate, v.ci_low, v.ci_high, v.wins) == pytest.approx((d.mean, d.low, d.high, d.wins))
    assert v.detail["cost_ratio"] == pytest.approx(200.0 / avil_seconds)
    # one decimal, so the printed times divide to the printed ratio
    assert f"9 runs and 200.0 s of training time, {200 / avil_seconds:.1f}× the {avil_seconds:.1f} s" in v.statement
    assert "above -1.00 points" in v.statement


def test_c3_margin_decides_a_small_shortfall():
    static = {0: 0.855, 1: 0.858, 2: 0.872}
    assert reproduce.c3("toy", AVIL_BY_SEED, static, 30.0, 200.0, 9, margin=0.02).verdict == "reproduced"
    assert reproduce.c3("toy", AVIL_BY_SEED, static, 30.0, 200.0, 9, margin=0.01).verdict == "inconclusive"


@pytest.mark.parametrize("kwargs, match", [
    (dict(avil_seconds=0.0), "avil_seconds=0.0"), (dict(static_runs=0), "static_runs=0"),
    (dict(margin=-0.1), "margin=-0.1"), (dict(static_tests={7: 0.8}), "no seed in common"),
    (dict(avil_tests={0: math.inf}), "non-finite"),
])
def test_c3_names_bad_input(kwargs, match):
    args = dict(avil_tests=AVIL_BY_SEED, static_tests=AVIL_BY_SEED, avil_seconds=30.0, static_seconds=200.0,
                static_runs=9)
    with pytest.raises(ValueError, match=match):
        reproduce.c3("toy", **{**args, **kwargs})


# -- the Verdict itself and not_measured -----------------------------------------

def test_verdict_dict_has_the_agreed_keys_and_is_json():
    v = reproduce.c1("toy", {"avil": runs("avil", [0.9]), "uniform": runs("u", [0.5])})
    data = json.loads(json.dumps(v.to_dict(), allow_nan=False))  # no inf, no NaN
    assert {"claim", "suite", "verdict", "estimate", "ci_low", "ci_high", "seeds", "wins", "detail",
            "statement"} <= set(data)
    back = reproduce.Verdict.from_dict(data)
    assert (back.verdict, back.ci_low, back.ci_high) == ("inconclusive", -math.inf, math.inf)
    assert prose.verdict(back) == prose.verdict(v)


def test_not_measured():
    v = reproduce.not_measured("C3", "text", "no static-weight search runs on the text suite")
    assert v.verdict == "not measured" and v.estimate is None
    assert prose.verdict(v) == "C3 on text: not measured (no static-weight search runs on the text suite)."
    assert v.statement.endswith("No static-weight search runs on the text suite.")
    with pytest.raises(ValueError, match="claim 'C4': must be one of"):
        reproduce.not_measured("C4", "text", "why")


# -- prose ----------------------------------------------------------------------

def test_difference_wording_follows_the_interval():
    ahead = paired_difference([0.85, 0.87, 0.88], [0.80, 0.81, 0.83])
    assert prose.difference("avil", "uniform", ahead) == \
        "avil is ahead of uniform by 5.33 ± 1.43 points (95 % CI; ahead in 3 of 3 seeds)"
    behind = paired_difference([0.80, 0.81, 0.83], [0.85, 0.87, 0.88])
    assert prose.difference("avil", "uniform", behind).startswith("avil is behind uniform by 5.33 ± 1.43 points")
    none = paired_difference([0.86, 0.86, 0.87], [0.85, 0.87, 0.88])
    mde = 100 * minimum_detectable_effect(none)
    assert prose.difference("avil", "uniform", none) == (
        "no difference between avil and uniform was detected (mean -0.33 points; the smallest "
        f"effect these 3 seeds could detect with 80 % power is about {mde:.2f} points)")
    one = paired_difference([0.9], [0.8])
    # Holm decides where the adjusted p is given, and the detectable effect is the strictest step's
    assert prose.difference("avil", "uniform", ahead, holm_p=0.06, family=3).startswith(
        "no difference between avil and uniform was detected after Holm's correction over 3")
    assert "Holm-adjusted p = 0.012 over 3" in prose.difference("avil", "uniform", ahead, holm_p=0.012, family=3)
    assert "no effect of any size could be detected" in prose.difference("avil", "uniform", one)


def test_effect_ranking_and_count():
    assert prose.effect("good", EFFECTS["good"]).startswith("good: helpful (+10.67 ± ")
    assert prose.effect("bad", EFFECTS["bad"]).startswith("bad: harmful (-10.33 ± ")
    assert prose.effect("flat", EFFECTS["flat"]).startswith("flat: no effect detected (mean +0.00 points; "
                                                            "smallest detectable with 80 % power about ")
    assert prose.effect("one", paired_difference([0.9], [0.8])) == \
        "one: no effect detected (mean +10.00 points; one seed gives no interval)"
    assert prose.order(prose.grouped([("good", 1.2), ("flat", 0.9), ("bad", 0.9)])) == "good > flat = bad"
    measured = prose.grouped([(a, d.mean) for a, d in EFFECTS.items()])
    assert prose.order(measured, {a: prose.effect_kind(d) for a, d in EFFECTS.items()}) == \
        "good (helpful) > flat (no effect detected) > bad (harmful)"
    assert prose.count(3, 5) == "in 3 of 5 seeds" and prose.count(1, 1) == "in 1 of 1 seed"


def test_verdicts_table():
    verdicts = [reproduce.c1("toy", suite(**BEHIND)), reproduce.not_measured("C2", "text", "no readout")]
    frame = prose.verdicts_table(verdicts)
    assert list(frame.columns) == ["claim", "suite", "verdict", "estimate", "95 % CI", "seeds", "wins",
                                   "estimate is", "a win is"]
    assert frame.iloc[0].tolist() == ["C1", "toy", "reproduced", "+3.17 points", "[+2.45, +3.88]", 3, "3/3",
                                      "avil − uniform, the strongest baseline, on the test metric, in points",
                                      "one of the seeds with avil ahead"]
    assert frame.iloc[1].tolist() == ["C2", "text", "not measured", "—", "—", "—", "—", "—", "—"]
    c2 = reproduce.c2("toy", {s: {"good": 2.0, "flat": 1.0, "bad": 0.1} for s in range(3)}, EFFECTS)
    row = prose.verdicts_table([c2]).iloc[0]
    assert row["estimate is"] == "mean Kendall τ-b"
    assert row["a win is"] == "one of the seeds with every helpful auxiliary above every harmful one"
