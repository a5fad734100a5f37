"""The ablation behind αVIL's α-step defaults (notebooks/03_alpha_tuning.ipynb).

αVIL's α-step (avil/alpha_step.py) has choices the paper leaves open: the
solver, the trust region, the weight rule, the dev subset, the weight bounds.
This module runs every variant of them against ``single_task`` on four suites
with known answers, paired per seed, so that each default in ``FitConfig`` is
a measured choice:

- ``toy``: avil/tasks/toy.py (a helpful, a noise and a harmful auxiliary;
  scarce target; Adam);
- ``multimnist``: MultiMNIST left ← right (SGD);
- ``multimnist_extended``: a scarce MultiMNIST target with two coarsenings
  of its labels, the other digit and a label-shuffled copy (SGD);
- ``text``: the Rotten Tomatoes suite on MiniLM, top layer fine-tuned on
  cached lower layers (Adam).

    suites = ablation.suites("default", seeds)
    results = ablation.run(suites, seeds, workers=2)
    ablation.differences_table(ablation.summary(results, suites))
"""
import dataclasses
from typing import Callable, Dict, List, Optional, Sequence

import torch

from ..config import FitConfig
from ..history import History
from .runs import compare
from .stats import PairedDifference, alpha_step_cost, paired_difference, ranked_below, summarize

#: The variants of the α-step every suite runs: label -> FitConfig changes
#: from ``FitConfig()``'s α-step fields. "carried" is alpha_init="weights"
#: with weight_update="replace": α starts each epoch from the weights and
#: becomes them.
CARRIED = dict(alpha_init="weights", weight_update="replace")
VARIANTS: Dict[str, dict] = {
    "Adam ×10, unbounded, additive (the old α-step)": dict(
        alpha_solver="adam", alpha_min=None, alpha_max=None, alpha_radius=None, alpha_penalty=0.0,
        alpha_init="ones", weight_update="additive"),
    "L-BFGS, unbounded, additive": dict(
        alpha_solver="lbfgs", alpha_min=None, alpha_max=None, alpha_radius=None, alpha_penalty=0.0,
        alpha_init="ones", weight_update="additive"),
    "L-BFGS, [0, 4], additive (paper's rule)": dict(
        alpha_solver="lbfgs", alpha_min=0.0, alpha_max=4.0, alpha_radius=None, alpha_penalty=0.0,
        alpha_init="ones", weight_update="additive"),
    "L-BFGS, [0, 4], multiplicative": dict(
        alpha_solver="lbfgs", alpha_min=0.0, alpha_max=4.0, alpha_radius=None, alpha_penalty=0.0,
        alpha_init="ones", weight_update="multiplicative"),
    "L-BFGS, [0, 4], carried": dict(
        alpha_solver="lbfgs", alpha_min=0.0, alpha_max=4.0, alpha_radius=None, alpha_penalty=0.0, **CARRIED),
    "L-BFGS, [0, 4] ∩ radius 0.5, carried": dict(
        alpha_solver="lbfgs", alpha_min=0.0, alpha_max=4.0, alpha_radius=0.5, alpha_penalty=0.0, **CARRIED),
    "L-BFGS, [0, 4] + penalty 0.05, carried": dict(
        alpha_solver="lbfgs", alpha_min=0.0, alpha_max=4.0, alpha_radius=None, alpha_penalty=0.05, **CARRIED),
    "Adam ×10, [0, 4], carried": dict(
        alpha_solver="adam", alpha_min=0.0, alpha_max=4.0, alpha_radius=None, alpha_penalty=0.0, **CARRIED),
}

#: Cheaper knobs, varied one at a time from ``FitConfig()``'s defaults (``Suite.extras``).
EXTRAS: Dict[str, dict] = {
    "default, dev subset 64": dict(alpha_dev_size=64),
    "default, dev subset 1024": dict(alpha_dev_size=1024),
    "default, ρ = 0.5": dict(rho=0.5),
    "default, weight_max 2": dict(weight_max=2.0),
    "default, weight_min 0.01": dict(weight_min=0.01),
}
#: The extras that change the α-step's cost, run on every suite with extras;
#: the others only where a run takes seconds (``Suite.extras == "all"``).
COST_EXTRAS = ("default, dev subset 64", "default, dev subset 1024")
DEFAULT = "FitConfig() defaults"
#: What every variant is paired with, per seed.
BASELINE = "single_task"


@dataclasses.dataclass
class Suite:
    """One suite of the ablation: how to build a run, its target, the
    FitConfig of its runs (training knobs only; the α-step's come from the
    variants), the auxiliaries known to be harmful (``harmful``: each should
    end below every other auxiliary), and which extra knobs run here: "all",
    "cost" (the dev-subset sizes only) or None."""

    name: str
    make_run: Callable[[int], tuple]
    target: str
    config: FitConfig
    harmful: Sequence[str] = ()
    extras: Optional[str] = None


def suites(profile: str, seeds: Sequence[int], names: Optional[Sequence[str]] = None) -> Dict[str, Suite]:
    """The suites at the profile's sizes ("smoke" | "default" | "paper"),
    each built by its task module's factory, which defines what a seed
    varies on it (docs/design.md §6): ``toy.make_run``,
    ``multimnist.run_factory`` and ``nlu.TextSuite``. The text suite's frozen
    states are cached here for every seed, before any run forks."""
    from ..tasks import multimnist, nlu, toy

    sizes = {
        "smoke": dict(toy_epochs=2, mm=dict(n_train=256, n_dev=128, n_test=256), mm_epochs=1,
                      ext=dict(n_train=256, n_dev=128, n_test=256), ext_target=64, ext_epochs=1,
                      text=dict(n_train=16, n_dev=16, n_test=32), text_epochs=1),
        "default": dict(toy_epochs=15, mm=dict(n_train=6000, n_dev=1000, n_test=5000), mm_epochs=6,
                        ext=dict(n_train=4000, n_dev=1000, n_test=5000), ext_target=1000, ext_epochs=8,
                        text=dict(n_train=500, n_dev=500, n_test=None), text_epochs=3),
        "paper": dict(toy_epochs=30, mm=dict(n_train=12000, n_dev=2000, n_test=10000), mm_epochs=8,
                      ext=dict(n_train=12000, n_dev=2000, n_test=10000), ext_target=1000, ext_epochs=8,
                      text=dict(n_train=1000, n_dev=1000, n_test=None), text_epochs=5),
    }[profile]

    sgd = dict(batch_size=128, optimizer="sgd", progress=False)
    out = {
        "toy": Suite("toy", toy.make_run, toy.TARGET,
                     FitConfig(epochs=sizes["toy_epochs"], progress=False), harmful=("noise", "harmful"),
                     extras="all"),
        "multimnist": Suite("multimnist", multimnist.run_factory("left", "basic", **sizes["mm"]), "left",
                            FitConfig(epochs=sizes["mm_epochs"], lr=0.05, **sgd), extras="cost"),
        "multimnist_extended": Suite(
            "multimnist_extended",
            multimnist.run_factory("left", "extended", n_target_train=sizes["ext_target"], **sizes["ext"]), "left",
            FitConfig(epochs=sizes["ext_epochs"], lr=0.02, **sgd), harmful=("shuffled", "right")),
        "text": Suite("text", None, "sentiment",
                      FitConfig(epochs=sizes["text_epochs"], batch_size=32, lr=1e-4, eval_batch_size=64,
                                progress=False),
                      harmful=("sentiment_shuffled",)),
    }
    out = {name: suite for name, suite in out.items() if names is None or name in names}
    if "text" in out:
        out["text"].make_run = nlu.TextSuite(trainable_layers=1, pooling="cls", max_length=64, n_aux_eval=32,
                                             **sizes["text"]).prepare(seeds)
    return out


def variant_config(suite: Suite, changes: dict) -> FitConfig:
    return dataclasses.replace(suite.config, **changes)


def run(suites: Dict[str, Suite], seeds: Sequence[int], variants: Optional[Dict[str, dict]] = None,
        extras: Optional[Dict[str, dict]] = None, workers: int = 1) -> Dict[str, Dict[str, List[History]]]:
    """Every variant (and ``BASELINE``) on every suite and seed:
    ``{suite: {label: [History per seed]}}``. The extras run on the suites
    that take them (``Suite.extras``), beside ``FitConfig()``'s defaults
    (label ``DEFAULT``)."""
    variants = VARIANTS if variants is None else variants
    extras = EXTRAS if extras is None else extras
    results = {}
    for name, suite in suites.items():
        runs = {label: ("avil", variant_config(suite, changes)) for label, changes in variants.items()}
        if suite.extras:
            runs[DEFAULT] = ("avil", suite.config)
            runs.update({label: ("avil", variant_config(suite, changes)) for label, changes in extras.items()
                         if suite.extras == "all" or label in COST_EXTRAS})
        print(f"— {name}: {len(runs) + 1} configurations × {len(seeds)} seeds", flush=True)
        results[name] = compare(suite.make_run, suite.target, [BASELINE], seeds, suite.config,
                                variants=runs, workers=workers)
    return results


def harmful_lowest(runs: List[History], suite: Suite) -> Optional[List[bool]]:
    """Per seed: does every harmful auxiliary of the suite end with a final
    weight strictly below every other auxiliary's (``ranked_below``)? None
    where the suite names no harmful auxiliary."""
    if not suite.harmful:
        return None
    others = [name for name in runs[0].tasks if name != suite.target and name not in suite.harmful]
    below = [ranked_below({"": runs}, name, others)[""] for name in suite.harmful]  # (harmful, seeds)
    return [all(per_seed) for per_seed in zip(*below)]


def summary(results: Dict[str, Dict[str, List[History]]], suites: Dict[str, Suite]) -> Dict[str, Dict[str, dict]]:
    """Per suite and variant: ``summarize``'s entry (the test metric per seed
    and its mean ± std, and ``vs_baseline``: the paired difference from
    ``BASELINE``), plus this ablation's own fields: ``harmful_lowest`` per
    seed, the α-step's mean ``evaluations`` per epoch, its
    ``alpha_step_share`` of the epochs' seconds (``alpha_step_cost``), how far
    α and the weights went over all epochs and seeds (``alpha_range``,
    ``weight_range``) and whether they stayed finite (``all_finite``): what
    the tables and metrics.json hold."""
    out = {}
    for name, by_label in results.items():
        compared = summarize(by_label, baseline=BASELINE)
        cost = alpha_step_cost(by_label)
        out[name] = {}
        for label, runs in by_label.items():
            if label == BASELINE:
                continue
            alphas = [a for h in runs for epoch in h.alphas for a in epoch.values()]
            weights = [w for h in runs for epoch in h.task_weights for w in epoch.values()]
            out[name][label] = {
                **compared[label],
                "harmful_lowest": harmful_lowest(runs, suites[name]),
                "evaluations": sum(s["evaluations"] for h in runs for s in h.alpha_step)
                / max(1, sum(len(h.alpha_step) for h in runs)),
                "alpha_step_share": cost[label]["share"],
                "alpha_range": [min(alphas), max(alphas)],
                "weight_range": [min(weights), max(weights)],
                "all_finite": all(torch.isfinite(torch.tensor(alphas + weights)).tolist()),
            }
    return out


def _difference_frame(columns: Dict[str, Dict[str, PairedDifference]], scale: float):
    """Variant × suite frame of paired differences in points, mean ± 95 % CI
    half-width (wins/seeds); an asterisk where the interval excludes 0."""
    import pandas as pd

    return pd.DataFrame({suite: {label: diff.format(scale) + (" *" if diff.verdict != "inside CI" else "")
                                 for label, diff in column.items()}
                         for suite, column in columns.items()}).fillna("")


def differences_table(summary: Dict[str, Dict[str, dict]], scale: float = 100.0):
    """Variant × suite: test minus ``BASELINE``, paired per seed."""
    return _difference_frame({suite: {label: PairedDifference.from_dict(s["vs_baseline"])
                                      for label, s in by_label.items()}
                              for suite, by_label in summary.items()}, scale)


def versus_table(summary: Dict[str, Dict[str, dict]], reference: str, scale: float = 100.0):
    """Variant × suite: test minus the ``reference`` variant's, paired per seed:
    whether any variant is measurably better or worse than the chosen one."""
    for suite, by_label in summary.items():
        if reference not in by_label:
            raise ValueError(f"versus_table: suite {suite!r} has no variant {reference!r}; "
                             f"pass one of {sorted(by_label)} as reference")
    return _difference_frame({suite: {label: paired_difference(s["test"], by_label[reference]["test"])
                                      for label, s in by_label.items() if label != reference}
                              for suite, by_label in summary.items()}, scale)


def checks_table(summary: Dict[str, Dict[str, dict]]):
    """Variant × suite: seeds where the harmful auxiliaries end lowest, the
    α-step's mean evaluations and share of the epoch time, and α's range."""
    import pandas as pd

    rows = []
    for suite, by_label in summary.items():
        for label, s in by_label.items():
            lowest = s["harmful_lowest"]
            rows.append({
                "suite": suite, "variant": label,
                "harmful lowest": f"{sum(lowest)}/{len(lowest)}" if lowest is not None else "",
                "evaluations / epoch": round(s["evaluations"], 1),
                "α-step share %": round(100 * s["alpha_step_share"], 1),
                "α range": f"{s['alpha_range'][0]:.2f} … {s['alpha_range'][1]:.2f}",
                "weight range": f"{s['weight_range'][0]:.2f} … {s['weight_range'][1]:.2f}",
            })
    return pd.DataFrame(rows).set_index(["suite", "variant"])


def plot_differences(summary: Dict[str, Dict[str, dict]], scale: float = 100.0):
    """One panel per suite: each variant's paired difference from single_task,
    mean and 95 % CI (points), with the per-seed differences as dots."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(summary), figsize=(4.2 * len(summary), 0.45 * max(
        len(s) for s in summary.values()) + 1.2), squeeze=False, sharey=True)
    for ax, (suite, by_label) in zip(axes[0], summary.items()):
        labels = list(by_label)
        for row, label in enumerate(labels):
            d = by_label[label]["vs_baseline"]
            half = d["half_width"] if d["half_width"] is not None else 0.0
            ax.errorbar(scale * d["mean"], row, xerr=scale * half, fmt="o", color="k", capsize=3)
            ax.scatter([scale * x for x in d["differences"]], [row] * len(d["differences"]), s=10, alpha=0.5)
        ax.axvline(0.0, color="grey", lw=0.8)
        ax.set_yticks(range(len(labels)), labels, fontsize=8)
        ax.invert_yaxis()
        ax.set_title(suite, fontsize=9)
        ax.set_xlabel(f"test − {BASELINE} (points)")
    fig.tight_layout()
    return fig
