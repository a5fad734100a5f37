"""The one rule that turns paired results into a verdict per paper claim and
suite (docs/design.md §6): ``reproduced``, ``not reproduced``,
``inconclusive``, or ``not measured`` where a notebook cannot measure it.

- C1 (``c1``): αVIL's test metric paired per seed against each baseline run,
  Holm's correction over those comparisons.
- C2 (``c2``, ``c2_pooled``): Kendall τ-b between αVIL's readout of the
  auxiliaries and their measured effects on the target, per seed (or per
  suite), its mean's 95 % t-interval (clipped to [−1, 1]) against 0; a seed
  whose τ is undefined is left out and reported.
- C3 (``c3``): αVIL against a static-weight search's chosen run, paired per
  seed, within a margin, and its wall time against the search's.

Every ``Verdict`` carries its estimate, 95 % CI, seeds and wins, a ``detail``
dict with every comparison behind it, and a ``statement`` rendered from those
numbers that says the interval, the seeds, the wins and the correction.
"""
import dataclasses
import math
from typing import Dict, List, Optional, Sequence, Tuple

from ..history import History
from . import prose
from .stats import PairedDifference, holm, minimum_detectable_effect, paired_difference

CLAIMS = {
    "C1": "αVIL outperforms the other multitask approaches on the target",
    "C2": "αVIL's weights rank the auxiliaries as their measured effects on the target do",
    "C3": "αVIL reaches a static-weight search's accuracy at less cost than the search",
}
VERDICTS = ("reproduced", "not reproduced", "inconclusive", "not measured")


def _json_number(value):
    return value if value is None or math.isfinite(value) else None  # JSON has no inf or NaN


def _jsonable(value):
    if isinstance(value, float):
        return _json_number(value)
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


@dataclasses.dataclass(frozen=True)
class Verdict:
    """One claim on one suite. ``estimate`` and its 95 % interval
    [``ci_low``, ``ci_high``] are in the measure's own units (a metric
    difference, or Kendall's τ); ``scale`` and ``unit`` say how sentences show
    them (100, "points"). ``wins`` of ``seeds`` (the ``units``, e.g. suites
    for ``c2_pooled``) count what ``wins_meaning`` says; None where nothing
    could be counted. ``detail`` holds every comparison behind the verdict."""

    claim: str
    suite: str
    verdict: str
    estimate: Optional[float]
    ci_low: Optional[float]
    ci_high: Optional[float]
    seeds: int
    wins: Optional[int]
    statement: str
    detail: dict
    measure: str = ""
    correction: str = ""
    wins_meaning: str = ""
    units: str = "seeds"
    scale: float = 1.0
    unit: str = ""

    def to_dict(self) -> dict:
        """JSON-able: every field; infinite or undefined numbers as None."""
        return _jsonable(dataclasses.asdict(self))

    @classmethod
    def from_dict(cls, data: dict) -> "Verdict":
        """The inverse of ``to_dict`` (a missing interval end of a measured estimate is ±inf)."""
        data = dict(data)
        if data.get("estimate") is not None:
            data["ci_low"] = -math.inf if data["ci_low"] is None else data["ci_low"]
            data["ci_high"] = math.inf if data["ci_high"] is None else data["ci_high"]
        return cls(**data)


def _head(claim: str, suite: str, verdict: str) -> str:
    return f"{claim} ({CLAIMS[claim]}) on {suite}: {verdict}."


def not_measured(claim: str, suite: str, why: str) -> Verdict:
    """The verdict of a claim this notebook cannot measure on this suite, and why."""
    if claim not in CLAIMS:
        raise ValueError(f"claim {claim!r}: must be one of {sorted(CLAIMS)}.")
    return Verdict(claim, suite, "not measured", None, None, None, 0, None,
                   f"{_head(claim, suite, 'not measured')} {why[:1].upper()}{why[1:].rstrip('.')}.", {"why": why})


def _comparison(diff: PairedDifference, adjusted: Optional[float] = None) -> dict:
    return {"mean": diff.mean, "ci_low": diff.low, "ci_high": diff.high, "p": diff.p_value,
            "holm_p": adjusted, "wins": diff.wins, "seeds": diff.seeds, "differences": list(diff.differences),
            "minimum_detectable_effect": minimum_detectable_effect(diff)}


def _listed(names: Sequence[str], conjunction: str) -> str:
    """``a``, ``a or b``, ``a, b or c``."""
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} {conjunction} {names[-1]}"


def _clause(label: str, other: str, diff: PairedDifference, scale: float, unit: str, p: str,
            alpha: float = 0.05) -> str:
    """``avil − uniform: +1.23 points, 95 % CI [+0.40, +2.06], avil ahead in 3 of 3 seeds, Holm-adjusted p = 0.012``
    (and, where the interval holds 0, the smallest effect a test at ``alpha`` could detect)."""
    text = (f"{label} − {other}: {prose.signed(diff.mean, scale)} {unit}, 95 % CI "
            f"{prose.interval(diff.low, diff.high, scale)}, {label} ahead {prose.count(diff.wins, diff.seeds)}, {p}")
    if diff.low <= 0 <= diff.high:
        mde = minimum_detectable_effect(diff, alpha=alpha)
        text += (f", smallest detectable effect about {prose.plain(mde, scale)} {unit} (80 % power, α = {alpha:.3g})"
                 if math.isfinite(mde)
                 else ", no interval with one seed")
    return text


def _per_seed(label: str, runs: Sequence[History]) -> Dict[int, float]:
    """{seed: test metric} of a label's runs, checked: one run per seed, finite values."""
    out = {}
    for h in runs:
        if h.seed in out:
            raise ValueError(f"{label}: two runs with seed {h.seed}. Fix: pass one History per seed.")
        if not math.isfinite(h.test):
            raise ValueError(f"{label} seed {h.seed}: the test metric is {h.test}. Fix: drop or rerun that run.")
        out[h.seed] = h.test
    return out


def _paired(a: Dict[int, float], b: Dict[int, float], what: str) -> Tuple[PairedDifference, List[int]]:
    """a − b over the seeds both have, and the seeds only one has."""
    seeds = sorted(a.keys() & b.keys())
    if not seeds:
        raise ValueError(f"{what}: no seed in common ({sorted(a)} and {sorted(b)}). Fix: run both under the same seeds.")
    return paired_difference([a[s] for s in seeds], [b[s] for s in seeds]), sorted(a.keys() ^ b.keys())


def c1(suite: str, histories: Dict[str, List[History]], method: str = "avil",
       baselines: Sequence[str] = ("single_task", "uniform", "gcs", "diw"), alpha: float = 0.05,
       scale: float = 100.0, unit: str = "points") -> Verdict:
    """C1 on one suite: ``method``'s test metric paired per seed against each
    baseline in ``histories``, Holm's correction over those comparisons.

    reproduced: ``method`` measurably ahead (Holm-adjusted p < ``alpha``, mean
    > 0) of every baseline present; not reproduced: some baseline measurably
    ahead of it; else inconclusive. The estimate, interval and wins are those
    against the strongest baseline (highest mean test metric over the paired
    seeds); ``detail["comparisons"]`` holds every comparison."""
    if not histories.get(method):
        raise ValueError(f"C1 on {suite}: no {method} runs among {sorted(histories)}. Fix: pass them under {method!r}.")
    present = [b for b in baselines if histories.get(b)]
    if not present:
        raise ValueError(f"C1 on {suite}: none of the baselines {list(baselines)} was run (have {sorted(histories)}). "
                         "Fix: pass their runs, or record not_measured('C1', suite, why).")
    mine = _per_seed(method, histories[method])
    diffs, means, unpaired = {}, {}, {}
    for b in present:
        theirs = _per_seed(b, histories[b])
        diffs[b], unpaired[b] = _paired(mine, theirs, f"C1 on {suite}, {method} against {b}")
        seeds = sorted(mine.keys() & theirs.keys())
        means[b] = sum(theirs[s] for s in seeds) / len(seeds)
    adjusted = holm({b: d.p_value for b, d in diffs.items()})
    ahead = [b for b in present if adjusted[b] < alpha and diffs[b].mean > 0]
    behind = [b for b in present if adjusted[b] < alpha and diffs[b].mean < 0]
    strongest = max(present, key=lambda b: means[b])
    verdict = "not reproduced" if behind else "reproduced" if len(ahead) == len(present) else "inconclusive"
    correction = (f"Holm over C1's {len(present)} baseline{'s' if len(present) > 1 else ''} "
                  f"({', '.join(present)}), α = {alpha:g}")

    if verdict == "reproduced":
        why = f"{method} is measurably ahead of each of C1's baselines: {', '.join(present)}"
    elif verdict == "not reproduced":
        why = f"{' and '.join(behind)} {'is' if len(behind) == 1 else 'are'} measurably ahead of {method}"
    else:
        open_ = [b for b in present if b not in ahead]
        why = ((f"{method} is measurably ahead of {_listed(ahead, 'and')} but " if ahead else f"{method} is ")
               + f"not measurably ahead of {_listed(open_, 'or')}, and no baseline is measurably ahead of {method}")
    clauses = [_clause(method, f"{b} (the strongest baseline)" if b == strongest else b, diffs[b], scale, unit,
                       f"Holm-adjusted {prose.p_phrase(adjusted[b])}", alpha / len(present)) for b in present]
    statement = (f"{_head('C1', suite, verdict)} {why} ({correction}; paired 95 % t-intervals over seeds). "
                 + "; ".join(clauses) + ".")
    others = [k for k in histories if k not in present and k != method and not k.startswith(f"{method} (")]
    if others:
        statement += (f" C1's baselines are the multitask approaches the paper names and gcs; "
                      f"{', '.join(others)} {'is' if len(others) == 1 else 'are'} not among them"
                      + (" (C3 sets αVIL against static)" if "static" in others else "") + ".")
    dropped = {b: seeds for b, seeds in unpaired.items() if seeds}
    if dropped:
        statement += " Seeds run by only one side were left out: " + "; ".join(
            f"{b}: {', '.join(map(str, s))}" for b, s in dropped.items()) + "."
    detail = {"method": method, "strongest": strongest, "alpha": alpha, "ahead": ahead, "behind": behind,
              "comparisons": {b: {**_comparison(diffs[b], adjusted[b]), "baseline_test_mean": means[b],
                                  "unpaired_seeds": unpaired[b]} for b in present}}
    best = diffs[strongest]
    return Verdict("C1", suite, verdict, best.mean, best.low, best.high, best.seeds, best.wins, statement, detail,
                   measure=f"{method} − {strongest}, the strongest baseline, on the test metric", correction=correction,
                   wins_meaning=f"with {method} ahead", scale=scale, unit=unit)


def _tau_rule(taus: Sequence[float]) -> Tuple[str, Optional[PairedDifference]]:
    """C2's rule on per-unit τ: reproduced when the mean's 95 % t-interval is
    above 0, not reproduced when it is at or below 0, else inconclusive. Fewer
    than two units: inconclusive and no estimate (a t-interval needs two)."""
    if len(taus) < 2:
        return "inconclusive", None
    diff = paired_difference(list(taus), [0.0] * len(taus))  # mean τ and its t-interval
    return ("reproduced" if diff.low > 0 else "not reproduced" if diff.high <= 0 else "inconclusive"), diff


def _tau_interval(diff: PairedDifference) -> Tuple[float, float, bool]:
    """The mean τ's t-interval clipped to τ's range [−1, 1], and whether it was
    clipped (a t-interval knows no bounds; τ does). Clipping never moves an end
    across 0, so the verdict is the same either way."""
    low, high = max(diff.low, -1.0), min(diff.high, 1.0)
    return low, high, (low, high) != (diff.low, diff.high)


_C2_CORRECTION = ("one test per suite, no multiple-comparison correction; each auxiliary's helpful or harmful "
                  "label is its own 95 % CI")


def _c2_verdict(suite: str, verdict: str, diff: Optional[PairedDifference], wins: Optional[int], units: str,
                text: str, detail: dict) -> Verdict:
    if diff is None:
        return Verdict("C2", suite, verdict, None, None, None, 0, None,
                       f"{_head('C2', suite, verdict)} {text}", detail, measure="mean Kendall τ-b",
                       correction=_C2_CORRECTION, units=units)
    low, high, clipped = _tau_interval(diff)
    detail["ci_clipped"] = clipped
    statement = (f"{_head('C2', suite, verdict)} Kendall τ-b between the readout and the measured effects averages "
                 f"{prose.signed(diff.mean)} over {prose.seeds_phrase(diff.seeds, units)} (95 % t-interval "
                 f"{prose.interval(low, high)}"
                 + (", clipped to τ's range [−1, 1]" if clipped else "")
                 + f"; the rule asks for an interval above 0). {text} "
                 f"{_C2_CORRECTION[0].upper()}{_C2_CORRECTION[1:]}.")
    return Verdict("C2", suite, verdict, diff.mean, low, high, diff.seeds, wins, statement, detail,
                   measure="mean Kendall τ-b", correction=_C2_CORRECTION,
                   wins_meaning="with every helpful auxiliary above every harmful one", units=units)


def c2(suite: str, scores: Dict[int, Dict[str, float]], effects: Dict[str, PairedDifference]) -> Verdict:
    """C2 on one suite, per seed of αVIL's runs.

    scores: {seed: {auxiliary: readout score}} (``ranking.auxiliary_scores``;
        higher: more useful); effects: {auxiliary: its measured effect on the
        target} (``auxiliary_effects(...)[aux].difference``).
    Per seed, Kendall τ-b (scipy, ties handled) between the scores and the
    effects' means; a seed where it is undefined (all scores, or all effects,
    tie) is not applicable: it is left out of the mean and the statement
    counts and names it (``detail["tau_undefined"]``). Estimate: the mean τ
    over the other seeds with its 95 % t-interval, clipped to [−1, 1];
    reproduced when the interval is above 0, not reproduced when it is at or
    below 0, else inconclusive (also with fewer than 2 auxiliaries, or fewer
    than 2 seeds with a defined τ: then C2 is not applicable on the suite and
    there is no estimate; and when no auxiliary is helpful or harmful: the
    estimate is kept, but an order within the noise decides nothing). Helpful: the effect's 95 % CI
    above 0, harmful: below 0; wins: seeds where every helpful auxiliary
    scores strictly above every harmful one (``detail["ties"]``: seeds where
    the lowest helpful and highest harmful score are equal)."""
    from scipy import stats

    auxiliaries = list(effects)
    for seed, per_aux in scores.items():
        if set(per_aux) != set(auxiliaries):
            raise ValueError(f"C2 on {suite}, seed {seed}: scores for {sorted(per_aux)} but effects for "
                             f"{sorted(auxiliaries)}. Fix: score and measure the same auxiliaries.")
        bad = {a: s for a, s in per_aux.items() if not math.isfinite(s)}
        if bad:
            raise ValueError(f"C2 on {suite}, seed {seed}: non-finite scores {bad}. Fix: check that run's readout.")
    helpful = [a for a in auxiliaries if effects[a].low > 0]
    harmful = [a for a in auxiliaries if effects[a].high < 0]
    detail = {"scores": scores, "helpful": helpful, "harmful": harmful,
              "effects": {a: {**_comparison(effects[a]), "kind": prose.effect_kind(effects[a])} for a in auxiliaries}}
    if len(auxiliaries) < 2 or not scores:
        why = (f"{len(auxiliaries)} auxiliar{'y' if len(auxiliaries) == 1 else 'ies'} measured: a ranking needs two"
               if len(auxiliaries) < 2 else "no αVIL seed was scored")
        return _c2_verdict(suite, "inconclusive", None, None, "seeds", why[:1].upper() + why[1:] + ".",
                           {**detail, "why": why})
    means = [effects[a].mean for a in auxiliaries]
    taus, undefined, order, score_ties = {}, {}, {}, {}
    for seed, per_aux in scores.items():
        values = [per_aux[a] for a in auxiliaries]
        tau = float(stats.kendalltau(values, means)[0])
        if math.isnan(tau):
            undefined[seed] = "all scores tie" if len(set(values)) == 1 else "all effects' means tie"
        else:
            taus[seed] = tau
        score_ties[seed] = [g for g in prose.grouped(list(per_aux.items())) if len(g) > 1]
        if helpful and harmful:
            low, high = min(per_aux[a] for a in helpful), max(per_aux[a] for a in harmful)
            order[seed] = "above" if low > high else "tie" if low == high else "below"
    verdict, diff = _tau_rule(list(taus.values()))
    wins = sum(o == "above" for o in order.values()) if order else None
    tied = sorted(s for s, o in order.items() if o == "tie")
    detail.update(taus=taus, tau_undefined=undefined, order=order, ties=tied, score_ties=score_ties)
    n = len(scores)
    text = (f"Helpful (effect's 95 % CI above 0): {', '.join(helpful) or 'none'}; harmful (below 0): "
            f"{', '.join(harmful) or 'none'}.")
    if order:
        text += (f" Every helpful auxiliary scores above every harmful one {prose.count(wins, n)}"
                 + (f"; they tie {prose.count(len(tied), n)} (seed{'s' if len(tied) > 1 else ''} "
                    f"{', '.join(map(str, tied))})" if tied else "") + ".")
    else:
        text += " Without both a helpful and a harmful auxiliary, no seed's order of the two could be checked."
    if undefined:
        text += (f" τ is undefined {prose.count(len(undefined), n)}, left out as not applicable: "
                 + "; ".join(f"seed {s} ({why})" for s, why in sorted(undefined.items())) + ".")
    if diff is None:
        why = (f"Kendall's τ is defined {prose.count(len(taus), n)}: a mean τ with an interval needs two, so C2 "
               "is not applicable on this suite")
        detail["why"] = why
        return _c2_verdict(suite, verdict, None, wins, "seeds", f"{why}. {text}", detail)
    if not helpful and not harmful:
        # Every measured effect is within its noise, so the order τ is scored
        # against is the noise's: its τ is shown, but it cannot decide C2.
        why = ("no auxiliary's effect on the target was detected, so the measured order the readout is scored "
               "against is within the noise and τ cannot decide C2 on this suite")
        detail["why"] = why
        return _c2_verdict(suite, "inconclusive", diff, wins, "seeds", f"{why[:1].upper()}{why[1:]}. {text}", detail)
    return _c2_verdict(suite, verdict, diff, wins, "seeds", text, detail)


def c2_pooled(suite: str, taus: Dict[str, Optional[float]], above: Dict[str, Optional[bool]]) -> Verdict:
    """C2's rule where the units are suites (e.g. ten synthetic suites): taus:
    {suite: its mean Kendall τ-b, None where C2 is not applicable there (τ
    defined in fewer than two seeds)}; above: {suite: whether every helpful
    auxiliary scored above every harmful one there, None where a suite holds
    no helpful or no harmful auxiliary}. Suites without a τ are left out and
    named. Reproduced when the mean τ's 95 % t-interval over the other suites
    (clipped to [−1, 1]) is above 0, not reproduced when at or below 0, else
    inconclusive (also with fewer than two suites); wins: suites where
    ``above`` holds."""
    if set(taus) != set(above):
        raise ValueError(f"C2 on {suite}: τ for {sorted(taus)} but `above` for {sorted(above)}. "
                         "Fix: give both for the same suites.")
    bad = {k: t for k, t in taus.items() if t is not None and not (math.isfinite(t) and -1 <= t <= 1)}
    if bad:
        raise ValueError(f"C2 on {suite}: τ {bad} not in [-1, 1]. Fix: pass None for a suite whose τ is undefined.")
    defined = {k: t for k, t in taus.items() if t is not None}
    left_out = sorted(k for k, t in taus.items() if t is None)
    verdict, diff = _tau_rule(list(defined.values()))
    detail = {"taus": taus, "above": above, "not_applicable": left_out}
    note = (f" C2 is not applicable on {len(left_out)} of {len(taus)} suites (τ undefined in all but at most one "
            f"seed), left out: {', '.join(left_out)}." if left_out else "")
    if diff is None:
        why = f"{len(defined)} suite{'' if len(defined) == 1 else 's'} with a τ: a mean τ with an interval needs two"
        return _c2_verdict(suite, verdict, None, None, "suites", f"{why[:1].upper()}{why[1:]}.{note}",
                           {**detail, "why": why})
    checked = {k: v for k, v in above.items() if v is not None and k in defined}  # None: no helpful or harmful one
    wins = sum(bool(v) for v in checked.values())
    detail["wins_of"] = len(checked)
    text = f"Every helpful auxiliary scores above every harmful one {prose.count(wins, len(checked), 'suites')}"
    text += (f" ({len(defined) - len(checked)} suite(s) hold no helpful or no harmful auxiliary)."
             if len(checked) < len(defined) else ".")
    return _c2_verdict(suite, verdict, diff, wins, "suites", text + note, detail)


def c3(suite: str, avil_tests: Dict[int, float], static_tests: Dict[int, float], avil_seconds: float,
       static_seconds: float, static_runs: int, margin: float = 0.01, scale: float = 100.0,
       unit: str = "points") -> Verdict:
    """C3 on one suite: αVIL's test metric minus the static-weight search's
    chosen run's, paired per seed ({seed: test metric} each), and the cost:
    ``static_runs`` runs taking ``static_seconds`` of wall time in all, against
    ``avil_seconds`` for one αVIL run.

    A non-inferiority rule: reproduced when the difference's 95 % CI lies
    above −``margin`` (αVIL at most ``margin`` behind, in metric units) and
    αVIL takes less wall time than the search; not reproduced when the whole
    interval lies below −``margin`` (the search ahead by more than the
    margin), or αVIL takes at least the search's wall time; else inconclusive."""
    for name, value in (("avil_seconds", avil_seconds), ("static_seconds", static_seconds)):
        if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
            raise ValueError(f"C3 on {suite}: {name}={value!r}: must be a positive number of seconds.")
    if isinstance(static_runs, bool) or not isinstance(static_runs, int) or static_runs < 1:
        raise ValueError(f"C3 on {suite}: static_runs={static_runs!r}: must be the search's number of runs (≥ 1).")
    if not (math.isfinite(margin) and margin >= 0):
        raise ValueError(f"C3 on {suite}: margin={margin!r}: must be ≥ 0, in the metric's units (0.01: one point).")
    for name, tests in (("avil_tests", avil_tests), ("static_tests", static_tests)):
        bad = {s: v for s, v in tests.items() if not math.isfinite(v)}
        if bad:
            raise ValueError(f"C3 on {suite}: {name} has non-finite values {bad}. Fix: drop or rerun those seeds.")
    diff, unpaired = _paired(avil_tests, static_tests, f"C3 on {suite}")
    cheaper = avil_seconds < static_seconds
    if diff.high < -margin or not cheaper:
        verdict = "not reproduced"
    else:
        verdict = "reproduced" if diff.low > -margin else "inconclusive"
    ratio = static_seconds / avil_seconds
    correction = "one comparison per suite, no multiple-comparison correction"
    statement = (f"{_head('C3', suite, verdict)} "
                 f"{_clause('avil', 'static search', diff, scale, unit, prose.p_phrase(diff.p_value))}; the rule asks "
                 f"for the interval's lower end above {prose.signed(-margin, scale)} {unit}. The search took "
                 f"{static_runs} run{'s' if static_runs > 1 else ''} and {static_seconds:.1f} s of training time, "
                 f"{ratio:.1f}× the {avil_seconds:.1f} s of one αVIL run. {correction[:1].upper()}{correction[1:]}.")
    if unpaired:
        statement += f" Seeds run by only one side were left out: {', '.join(map(str, unpaired))}."
    detail = {**_comparison(diff), "margin": margin, "avil_seconds": avil_seconds, "static_seconds": static_seconds,
              "static_runs": static_runs, "cost_ratio": ratio, "cheaper": cheaper, "unpaired_seeds": unpaired}
    return Verdict("C3", suite, verdict, diff.mean, diff.low, diff.high, diff.seeds, diff.wins, statement, detail,
                   measure="avil − static search on the test metric", correction=correction,
                   wins_meaning="with avil ahead", scale=scale, unit=unit)
