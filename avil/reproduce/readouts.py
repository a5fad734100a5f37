"""How well each weight rule's runs rank the auxiliaries, by each readout of
``avil.ranking``, against the auxiliaries' measured effects (claim C2's rule,
``claims.c2``), and the choice of the default rule and readout
(notebooks/03_alpha_tuning.ipynb).

The choice, stated once (``choose``): a rule is eligible when it is not
measurably less accurate than the paper's rule on any suite (paired per seed,
Holm over the rules on each suite). Among the eligible (rule, readout) pairs,
each is paired with the paper's rule read from its final weights over the
synthetic suites (one τ per suite), Holm over the pairs; the default is the
pair with the highest mean τ among those measurably better, else the paper's
rule and its final weights.
"""
from typing import Dict, List, Optional, Sequence, Tuple

from ..ranking import DEFAULT_READOUT, READOUTS, auxiliary_scores
from .ablation import ALPHA_STEPS, PAPER, RULES, SuiteResult, holm_differences
from .claims import Verdict, c2, c2_pooled
from .stats import holm, paired_difference

REFERENCE = (PAPER, "final_weight")  # the paper's reading: its rule's final weights
SYNTHETIC = "synthetic"


def is_synthetic(suite: str) -> bool:
    return suite.startswith(SYNTHETIC + "-")


def c2_by_suite(results: Dict[str, SuiteResult], rules: Sequence[str] = tuple(RULES),
                readouts: Sequence[str] = tuple(READOUTS)) -> Dict[Tuple[str, str], Dict[str, Verdict]]:
    """{(rule, readout): {suite: C2 verdict}} on every suite with measured effects."""
    out = {}
    for rule in rules:
        for readout in readouts:
            out[(rule, readout)] = {suite: c2_of(suite, result.histories[rule], result.effects, readout)
                                    for suite, result in results.items()
                                    if result.effects and rule in result.histories}
    return out


def c2_of(suite: str, runs: Sequence, effects: Dict, readout: str = DEFAULT_READOUT) -> Verdict:
    """C2 for αVIL's ``runs`` (one History per seed) on a suite whose
    auxiliaries' ``effects`` were measured ({aux: AuxiliaryEffect}), read by ``readout``."""
    return c2(suite, {h.seed: auxiliary_scores(h, readout) for h in runs},
              {a: e.difference for a, e in effects.items()})


def suite_above(verdict: Verdict) -> Optional[bool]:
    """Whether every helpful auxiliary scored above every harmful one in most
    seeds of a suite (None: it holds no helpful or no harmful auxiliary)."""
    if verdict.wins is None:
        return None
    return verdict.wins > verdict.seeds / 2


def pooled(by_suite: Dict[str, Verdict], suite: str = SYNTHETIC) -> Verdict:
    """C2 over the synthetic suites, one mean τ per suite (``claims.c2_pooled``)."""
    chosen = {name: v for name, v in by_suite.items() if is_synthetic(name)}
    return c2_pooled(suite, {name: v.estimate for name, v in chosen.items()},
                     {name: suite_above(v) for name, v in chosen.items()})


def most_harmful_last(verdict: Verdict) -> List[bool]:
    """Per seed: does the auxiliary with the lowest measured effect score
    strictly below every other?"""
    effects = verdict.detail["effects"]
    worst = min(effects, key=lambda a: effects[a]["mean"])
    return [all(scores[worst] < s for a, s in scores.items() if a != worst)
            for scores in verdict.detail["scores"].values()]


def eligible_rules(summary: Dict[str, Dict[str, dict]], alpha: float = 0.05) -> Dict[str, List[str]]:
    """{rule: suites where it is measurably less accurate than the paper's rule}
    (paired per seed, Holm over the rules on each suite); eligible: empty."""
    behind = {rule: [] for rule in RULES}
    for suite, column in holm_differences(summary, "vs_paper", labels=list(RULES)).items():
        for rule, entry in column.items():
            if entry["holm_p"] < alpha and entry["difference"].mean < 0:
                behind[rule].append(suite)
    return behind


def alpha_step_choice(summary: Dict[str, Dict[str, dict]], alpha: float = 0.05) -> dict:
    """The α-step variants (``ALPHA_STEPS``) measurably more accurate than the
    paper's rule's α-step on some suite and measurably less on none (Holm over
    the variants per suite): the candidates to replace ``FitConfig``'s α-step."""
    ahead, behind = {v: [] for v in ALPHA_STEPS}, {v: [] for v in ALPHA_STEPS}
    for suite, column in holm_differences(summary, "vs_paper", labels=list(ALPHA_STEPS)).items():
        for label, entry in column.items():
            if entry["holm_p"] < alpha:
                (ahead if entry["difference"].mean > 0 else behind)[label].append(suite)
    return {"ahead": ahead, "behind": behind,
            "better": [label for label in ALPHA_STEPS if ahead[label] and not behind[label]]}


def choose(summary: Dict[str, Dict[str, dict]], by_pair: Dict[Tuple[str, str], Dict[str, Verdict]],
           alpha: float = 0.05) -> dict:
    """The default (rule, readout) by the rule of this module's docstring, with
    every comparison behind it, and the α-step variants that would replace
    ``FitConfig``'s (``alpha_step_choice``). Without synthetic suites the
    paper's reading stays."""
    behind = eligible_rules(summary, alpha)
    steps = alpha_step_choice(summary, alpha)
    reference = {name: v.estimate for name, v in by_pair[REFERENCE].items() if is_synthetic(name)}
    if sum(t is not None for t in reference.values()) < 2:
        return {"rule": REFERENCE[0], "readout": REFERENCE[1], "behind_paper": behind, "comparisons": {},
                "alpha_step": steps, "why": "fewer than two synthetic suites: nothing to compare over"}
    comparisons = {}
    for (rule, readout), by_suite in by_pair.items():
        if (rule, readout) == REFERENCE or behind[rule]:
            continue
        taus = {name: v.estimate for name, v in by_suite.items() if is_synthetic(name)}
        # paired over the suites where C2 is applicable under both (an estimate of None: τ undefined there)
        common = [s for s in reference if reference[s] is not None and taus.get(s) is not None]
        if common:
            comparisons[(rule, readout)] = paired_difference([taus[s] for s in common],
                                                             [reference[s] for s in common])
    adjusted = holm({f"{r} / {o}": d.p_value for (r, o), d in comparisons.items()})
    better = [(pair, d) for pair, d in comparisons.items() if adjusted[f"{pair[0]} / {pair[1]}"] < alpha and d.mean > 0]
    chosen = max(better, key=lambda item: item[1].mean)[0] if better else REFERENCE
    return {"rule": chosen[0], "readout": chosen[1], "behind_paper": behind, "alpha_step": steps,
            "comparisons": {f"{r} / {o}": {**d.to_dict(), "holm_p": adjusted[f"{r} / {o}"]}
                            for (r, o), d in comparisons.items()}}


def ranking_table(by_pair: Dict[Tuple[str, str], Dict[str, Verdict]], suites: Sequence[str] = ()):
    """Rule × readout: the synthetic suites' mean τ (95 % CI over suites) and
    the suites with every helpful auxiliary above every harmful one; then, per
    other suite, the mean τ over seeds and, where measured, the seeds with the
    most harmful auxiliary last."""
    import pandas as pd

    rows = []
    for (rule, readout), by_suite in by_pair.items():
        row = {"rule": rule, "readout": readout}
        if any(is_synthetic(s) for s in by_suite):
            p = pooled(by_suite)
            row["synthetic τ (95 % CI)"] = (f"{p.estimate:+.2f} [{p.ci_low:+.2f}, {p.ci_high:+.2f}]"
                                            if p.estimate is not None else "not applicable")
            checked = [a for a in (suite_above(v) for n, v in by_suite.items() if is_synthetic(n)) if a is not None]
            row["synthetic: helpful above harmful"] = f"{sum(checked)}/{len(checked)}"
        for name in suites or [s for s in by_suite if not is_synthetic(s)]:
            v = by_suite[name]
            row[f"{name} τ"] = round(v.estimate, 2) if v.estimate is not None else "not applicable"
            last = most_harmful_last(v)
            row[f"{name}: most harmful last"] = f"{sum(last)}/{len(last)}"
        rows.append(row)
    return pd.DataFrame(rows).set_index(["rule", "readout"])


def effects_by_suite(results: Dict[str, SuiteResult], scale: float = 100.0):
    """Suite × auxiliary: each auxiliary's measured effect on the target, in
    points (mean ± 95 % CI half-width), with ``+``/``−`` where the interval
    excludes 0 (helpful / harmful)."""
    import pandas as pd

    rows = {}
    for suite, result in results.items():
        if result.effects:
            rows[suite] = {aux: e.difference.format(scale) + {"higher": " +", "lower": " −"}.get(e.difference.verdict, "")
                           for aux, e in result.effects.items()}
    return pd.DataFrame(rows).T.fillna("")


def role_ranks(results: Dict[str, SuiteResult], rule: str, readout: str):
    """Role × {measured rank, readout rank}: on the synthetic suites, each
    auxiliary's place (1: most useful) by its measured effect and by the
    readout of ``rule``'s runs (mean over seeds; ties share the mean place),
    averaged over the suites that hold the role."""
    import pandas as pd
    from scipy.stats import rankdata

    rows = []
    for name, result in results.items():
        if not (is_synthetic(name) and result.effects):
            continue
        auxiliaries = list(result.effects)
        measured = rankdata([-result.effects[a].difference.mean for a in auxiliaries])
        for h in result.histories[rule]:
            scores = auxiliary_scores(h, readout)
            read = rankdata([-scores[a] for a in auxiliaries])
            rows += [{"role": a, "suite": name, "measured rank": m, "readout rank": r}
                     for a, m, r in zip(auxiliaries, measured, read)]
    frame = pd.DataFrame(rows, columns=["role", "suite", "measured rank", "readout rank"])
    return frame.groupby("role")[["measured rank", "readout rank"]].mean().round(2).assign(
        suites=frame.groupby("role")["suite"].nunique())
