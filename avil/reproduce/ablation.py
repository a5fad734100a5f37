"""The ablation behind αVIL's defaults (notebooks/03_alpha_tuning.ipynb).

The paper leaves open how α is solved, how α becomes the task weights, and
how a ranking of the auxiliaries is read out of a run. This module runs the
alternatives against ``single_task`` on suites whose auxiliaries' effects are
measured, paired per seed, so that each default is a measured choice:

- ``ALPHA_STEPS``: the α-step's solver and trust region, with the paper's
  weight rule (the rows beside ``PAPER``, which is ``FitConfig()``'s α-step);
- ``RULES``: the weight rules (avil/methods/weight_rules.py) with that α-step;
- ``EXTRAS``: one knob at a time around ``PAPER`` (dev subset, ρ, bounds);
- the readouts of ``avil.ranking`` on every αVIL run (avil/reproduce/readouts.py).

Suites: ``toy`` (avil/tasks/toy.py, Adam), ``multimnist`` (left ← right, SGD),
``multimnist_extended`` (a scarce target with four auxiliaries, SGD),
``text`` (the Rotten Tomatoes suite on MiniLM's top layer, Adam) and
``synthetic-<k>`` (avil/tasks/synthetic.py, drawn roles, Adam). What a seed
varies on each is its task module's factory's definition (docs/design.md §6).

    suites = ablation.suites("default", seeds)
    results = ablation.run(suites, seeds, workers=2)
    ablation.differences_table(ablation.summary(results))
"""
import dataclasses
from typing import Callable, Dict, List, Optional, Sequence

import torch

from ..config import FitConfig
from ..history import History
from .runs import AuxiliaryEffect, auxiliary_effects, compare
from .stats import PairedDifference, alpha_step_cost, holm, paired_difference, summarize

PAPER = "paper's rule"
#: label -> FitConfig changes. Every αVIL run also records the per-delta
#: ablation (alpha_ablation=True), which the readouts need; it trains nothing.
RULES: Dict[str, dict] = {
    PAPER: dict(weight_update="additive", pin_target_weight=False),
    "paper's rule, target pinned": dict(weight_update="additive", pin_target_weight=True),
    "average α": dict(weight_update="average", pin_target_weight=False),
    "contribution": dict(weight_update="contribution", pin_target_weight=False),
}
ALPHA_STEPS: Dict[str, dict] = {
    "Adam ×10, unbounded (the paper's sketch)": dict(RULES[PAPER], alpha_solver="adam", alpha_min=None,
                                                      alpha_max=None),
    "L-BFGS, unbounded": dict(RULES[PAPER], alpha_solver="lbfgs", alpha_min=None, alpha_max=None),
}
EXTRAS: Dict[str, dict] = {
    "dev subset 64": dict(RULES[PAPER], alpha_dev_size=64),
    "dev subset 1024": dict(RULES[PAPER], alpha_dev_size=1024),
    "ρ = 0.5": dict(RULES[PAPER], rho=0.5),
    "weight_max 2": dict(RULES[PAPER], weight_max=2.0),
    "weight_min 0.01": dict(RULES[PAPER], weight_min=0.01),
}
#: The extras that change the α-step's cost, run on every suite with extras;
#: the others only where a run takes seconds (``Suite.extras == "all"``).
COST_EXTRAS = ("dev subset 64", "dev subset 1024")
BASELINE = "single_task"


@dataclasses.dataclass
class Suite:
    """One suite: how to build a run, its target, the FitConfig of its runs
    (training knobs; the α-step's and the rule's come from the variants), the
    auxiliaries whose effects are measured (empty: no ranking), whether the
    α-step variants run here, and which extra knobs: "all", "cost" or None."""

    name: str
    make_run: Callable[[int], tuple]
    target: str
    config: FitConfig
    auxiliaries: Sequence[str] = ()
    alpha_steps: bool = True
    extras: Optional[str] = None


SIZES = {
    "smoke": dict(toy_epochs=2, mm=dict(n_train=256, n_dev=128, n_test=256), mm_epochs=1,
                  ext=dict(n_train=256, n_dev=128, n_test=256), ext_target=64, ext_epochs=1,
                  text=dict(n_train=16, n_dev=16, n_test=32), text_epochs=1, synthetic=2, synthetic_epochs=2),
    "default": dict(toy_epochs=15, mm=dict(n_train=6000, n_dev=1000, n_test=5000), mm_epochs=6,
                    ext=dict(n_train=3000, n_dev=1000, n_test=5000), ext_target=1000, ext_epochs=8,
                    text=dict(n_train=500, n_dev=500, n_test=None), text_epochs=3, synthetic=10,
                    synthetic_epochs=12),
    "paper": dict(toy_epochs=30, mm=dict(n_train=12000, n_dev=2000, n_test=10000), mm_epochs=8,
                  ext=dict(n_train=12000, n_dev=2000, n_test=10000), ext_target=1000, ext_epochs=8,
                  text=dict(n_train=1000, n_dev=1000, n_test=None), text_epochs=5, synthetic=20,
                  synthetic_epochs=20),
}


def suites(profile: str, seeds: Sequence[int], names: Optional[Sequence[str]] = None) -> Dict[str, Suite]:
    """The suites at the profile's sizes ("smoke" | "default" | "paper"); names
    may hold "synthetic" for all the drawn suites. The text suite's frozen
    states are cached here for every seed, before any run forks."""
    from ..tasks import multimnist, nlu, synthetic, toy

    sizes = SIZES[profile]
    sgd = dict(batch_size=128, optimizer="sgd", progress=False)
    out = {
        "toy": Suite("toy", toy.make_run, toy.TARGET, FitConfig(epochs=sizes["toy_epochs"], progress=False),
                     auxiliaries=("same_rule", "noise", "harmful"), extras="all"),
        "multimnist": Suite("multimnist", multimnist.run_factory("left", "basic", **sizes["mm"]), "left",
                            FitConfig(epochs=sizes["mm_epochs"], lr=0.05, **sgd), extras="cost"),
        "multimnist_extended": Suite(
            "multimnist_extended",
            multimnist.run_factory("left", "extended", n_target_train=sizes["ext_target"], **sizes["ext"]), "left",
            FitConfig(epochs=sizes["ext_epochs"], lr=0.02, **sgd),
            auxiliaries=("right", "left_parity", "left_magnitude", "shuffled")),
        "text": Suite("text", None, "sentiment",
                      FitConfig(epochs=sizes["text_epochs"], batch_size=32, lr=1e-4, eval_batch_size=64,
                                progress=False),
                      auxiliaries=("subjectivity", "same_movie", "sentiment_shuffled")),
    }
    for name, drawn in synthetic.make_suites(sizes["synthetic"]).items():
        out[name] = Suite(name, drawn.make_run, synthetic.TARGET,
                          FitConfig(epochs=sizes["synthetic_epochs"], progress=False),
                          auxiliaries=tuple(drawn.auxiliaries), alpha_steps=False)
    wanted = None if names is None else set(names)
    out = {name: suite for name, suite in out.items()
           if wanted is None or name in wanted or ("synthetic" in wanted and name.startswith("synthetic-"))}
    if "text" in out:
        out["text"].make_run = nlu.TextSuite(trainable_layers=1, pooling="cls", max_length=64, n_aux_eval=32,
                                             **sizes["text"]).prepare(seeds)
    return out


def variants(suite: Suite) -> Dict[str, FitConfig]:
    """The αVIL configurations that run on ``suite``: the rules, then (where
    the suite takes them) the α-step variants and the extras."""
    labelled = dict(RULES)
    if suite.alpha_steps:
        labelled.update(ALPHA_STEPS)
    if suite.extras:
        labelled.update({label: c for label, c in EXTRAS.items() if suite.extras == "all" or label in COST_EXTRAS})
    return {label: dataclasses.replace(suite.config, alpha_ablation=True, **changes)
            for label, changes in labelled.items()}


@dataclasses.dataclass
class SuiteResult:
    """One suite's runs: ``histories`` {label: [History per seed]} (``BASELINE``
    and every variant) and the auxiliaries' measured ``effects``."""

    histories: Dict[str, List[History]]
    effects: Dict[str, AuxiliaryEffect]


def run(suites: Dict[str, Suite], seeds: Sequence[int], workers: int = 1,
        progress: bool = True) -> Dict[str, SuiteResult]:
    """Every variant and ``BASELINE`` on every suite and seed, and the
    measured effect of every auxiliary a suite names (``auxiliary_effects``:
    ``uniform`` on the target and that auxiliary against ``single_task``)."""
    results = {}
    for name, suite in suites.items():
        labelled = variants(suite)
        print(f"— {name}: {len(labelled) + 1} configurations × {len(seeds)} seeds"
              + (f", and the effects of {len(suite.auxiliaries)} auxiliaries" if suite.auxiliaries else ""),
              flush=True)
        histories = compare(suite.make_run, suite.target, [BASELINE], seeds, suite.config,
                            variants={label: ("avil", c) for label, c in labelled.items()}, workers=workers,
                            progress=progress)
        effects = (auxiliary_effects(suite.make_run, suite.target, suite.auxiliaries, seeds, suite.config,
                                     workers=workers, progress=progress) if suite.auxiliaries else {})
        results[name] = SuiteResult(histories, effects)
    return results


def summary(results: Dict[str, SuiteResult]) -> Dict[str, Dict[str, dict]]:
    """Per suite and variant: ``summarize``'s entry (the test metric per seed,
    its mean ± std, ``vs_baseline``: the paired difference from ``BASELINE``)
    plus ``vs_paper`` (the paired difference from ``PAPER``), the α-step's
    mean ``evaluations`` per epoch, its ``alpha_step_share`` of the epochs'
    seconds, how far α and the weights went (``alpha_range``,
    ``weight_range``) and whether they stayed finite (``all_finite``)."""
    out = {}
    for name, result in results.items():
        by_label = result.histories
        compared = summarize(by_label, baseline=BASELINE)
        cost = alpha_step_cost(by_label)
        paper = {h.seed: h.test for h in by_label[PAPER]}
        out[name] = {}
        for label, runs in by_label.items():
            if label == BASELINE:
                continue
            alphas = [a for h in runs for epoch in h.alphas for a in epoch.values()]
            weights = [w for h in runs for epoch in h.task_weights for w in epoch.values()]
            out[name][label] = {
                **compared[label],
                "vs_paper": paired_difference([h.test for h in runs], [paper[h.seed] for h in runs]).to_dict(),
                "evaluations": sum(s["evaluations"] for h in runs for s in h.alpha_step)
                / max(1, sum(len(h.alpha_step) for h in runs)),
                "alpha_step_share": cost[label]["share"],
                "alpha_range": [min(alphas), max(alphas)],
                "weight_range": [min(weights), max(weights)],
                "all_finite": all(torch.isfinite(torch.tensor(alphas + weights)).tolist()),
            }
    return out


def holm_differences(summary: Dict[str, Dict[str, dict]], key: str = "vs_baseline",
                     labels: Optional[Sequence[str]] = None) -> Dict[str, Dict[str, dict]]:
    """{suite: {label: {"difference": PairedDifference, "holm_p": p}}}: each
    suite's paired differences (``key``: "vs_baseline" or "vs_paper") of the
    given labels (all), with Holm's correction over that suite's family."""
    out = {}
    for suite, by_label in summary.items():
        diffs = {label: PairedDifference.from_dict(s[key]) for label, s in by_label.items()
                 if (labels is None or label in labels) and not (key == "vs_paper" and label == PAPER)}
        adjusted = holm({label: d.p_value for label, d in diffs.items()})
        out[suite] = {label: {"difference": d, "holm_p": adjusted[label]} for label, d in diffs.items()}
    return out


def differences_table(summary: Dict[str, Dict[str, dict]], key: str = "vs_baseline",
                      labels: Optional[Sequence[str]] = None, scale: float = 100.0, alpha: float = 0.05):
    """Variant × suite: paired differences (points; mean ± 95 % CI half-width,
    wins/seeds), ``*`` where Holm's correction over the suite's column keeps
    the difference (adjusted p < alpha)."""
    import pandas as pd

    columns = holm_differences(summary, key, labels)
    return pd.DataFrame({suite: {label: e["difference"].format(scale) + (" *" if e["holm_p"] < alpha else "")
                                 for label, e in column.items()}
                         for suite, column in columns.items()}).fillna("")


def checks_table(summary: Dict[str, Dict[str, dict]]):
    """Variant × suite: the α-step's mean evaluations and share of the epoch
    time, and the range of α and of the weights over all epochs and seeds."""
    import pandas as pd

    rows = [{"suite": suite, "variant": label, "evaluations / epoch": round(s["evaluations"], 1),
             "α-step share %": round(100 * s["alpha_step_share"], 1),
             "α range": f"{s['alpha_range'][0]:.2f} … {s['alpha_range'][1]:.2f}",
             "weight range": f"{s['weight_range'][0]:.2f} … {s['weight_range'][1]:.2f}"}
            for suite, by_label in summary.items() for label, s in by_label.items()]
    return pd.DataFrame(rows).set_index(["suite", "variant"])
