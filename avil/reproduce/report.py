"""Paragraphs a notebook shows after its tables, rendered from the results
(``display(Markdown(report.xxx(...)))``): the words follow the numbers, so a
rerun with other parameters describes itself. Built from ``prose``'s
sentences; "±" after a difference is its 95 % t-interval's half-width."""
import statistics
from typing import Dict, Optional, Sequence

from ..history import History
from ..ranking import DEFAULT_READOUT, rank_auxiliaries
from . import prose
from .stats import PairedDifference, paired_difference
from .tables import holm_vs_baseline


def methods(summary: Dict[str, dict], baseline: str = "single_task", scale: float = 100.0,
            unit: str = "points") -> str:
    """One bullet per method or variant: its paired difference from ``baseline``,
    decided by Holm's correction over the table's comparisons (``tables.table``)."""
    lines = []
    base = summary.get(baseline)
    if base is not None:
        lines.append(f"- `{baseline}` scores {prose.plain(base['test_mean'], scale)} ± "
                     f"{prose.plain(base['test_std'], scale)} (mean ± standard deviation over "
                     f"{prose.seeds_phrase(len(base['test']))}).")
    adjusted = holm_vs_baseline(summary)
    for label, s in summary.items():
        if label == baseline or "vs_baseline" not in s:
            continue
        sentence = prose.difference(f"`{label}`", f"`{baseline}`", PairedDifference.from_dict(s["vs_baseline"]), scale,
                                    unit, holm_p=adjusted[label], family=len(adjusted))
        lines.append(f"- {capitalised(sentence)}")
    return "\n".join(lines)


def effects(measured: Dict[str, object], scale: float = 100.0, unit: str = "points") -> str:
    """One bullet per auxiliary: its measured effect and what it is called."""
    return "\n".join(f"- {prose.effect(f'`{aux}`', e.difference, scale, unit)}" for aux, e in measured.items())


def rankings(runs: Sequence[History], measured: Dict[str, object], readout: str = DEFAULT_READOUT) -> str:
    """Per seed, αVIL's ranking of the auxiliaries by ``readout`` beside the
    order of their measured effects ({aux: AuxiliaryEffect})."""
    diffs = {aux: e.difference for aux, e in measured.items()}
    return "\n".join(f"- seed {h.seed}: {prose.ranking(rank_auxiliaries(h, readout), diffs)}" for h in runs)


def alpha_steps(runs: Sequence[History]) -> str:
    """What the α-steps of αVIL's runs did: evaluations, the dev loss they
    saved, convergence and bounds."""
    steps = [s for h in runs for s in h.alpha_step]
    if not steps:
        return "No run here has an α-step."
    evaluations = [s["evaluations"] for s in steps]
    saved = [s["loss_init"] - s["loss_final"] for s in steps]
    on_bound = sum(1 for s in steps if s["on_bound"])
    converged = sum(1 for s in steps if s["converged"])
    return (f"Over {len(steps)} α-steps ({prose.seeds_phrase(len(runs))}), each took "
            f"{min(evaluations)} to {max(evaluations)} evaluations of the dev loss and its gradient "
            f"(mean {statistics.fmean(evaluations):.1f}); the chosen α lowered the target's dev loss from the "
            f"merge at α_init by {statistics.fmean(saved):.3f} on average (at most {max(saved):.3f}). "
            f"The solver met its tolerance in {converged} of them, and in {on_bound} at least one α ended on a "
            "bound of the trust region.")


def final_weights(runs: Sequence[History], names: Optional[Sequence[str]] = None) -> str:
    """Each task's final weight over seeds: its range."""
    names = names or runs[0].tasks
    parts = []
    for name in names:
        values = [h.task_weights[-1][name] for h in runs]
        low, high = min(values), max(values)
        parts.append(f"`{name}` {low:.2f}" + (f"–{high:.2f}" if high > low else ""))
    return "Final task weights (range over seeds): " + ", ".join(parts) + "."


def target_weight(runs: Sequence[History], pinned: Sequence[History]) -> str:
    """What the target's own weight did to its task passes, and the
    pinned-target variant beside it. Under SGD a task's weight scales its
    step; under Adam it barely changes one (Adam divides a constant loss scale
    out), which the sentence says instead."""
    target, floor = runs[0].target, runs[0].config["weight_min"]
    # the weight the last epoch's passes used: the one after the epoch before (1 before any)
    used = [h.task_weights[-2][target] if h.epochs > 1 else 1.0 for h in runs]
    lr = [h.lr[-1][target] if h.lr else h.config["lr"] for h in runs]
    on_floor = sum(1 for h in runs for w in h.task_weights if w[target] <= floor)
    low, high = min(used), max(used)
    text = (f"The target's own weight sits on the floor (`weight_min` = {floor:g}) after {on_floor} of "
            f"{sum(h.epochs for h in runs)} epochs; its last epoch's passes ran with weight {low:.2f}"
            + (f"–{high:.2f}" if high > low else "") + " over seeds. ")
    if runs[0].config["optimizer"] == "sgd":
        effective = [w * rate for w, rate in zip(used, lr)]
        text += (f"Under SGD that weight multiplies the target's step: an effective learning rate of "
                 f"{min(effective):.3g}" + (f"–{max(effective):.3g}" if max(effective) > min(effective) else "")
                 + f" against the schedule's {min(lr):.3g}. ")
        if high < 1:
            text += ("The α-step kept less than the target's whole update, and the rule turned that into a lower "
                     "learning rate for the target: a line search on its step, not a verdict that the target is "
                     "useless to itself. ")
        elif low > 1:
            text += "The α-step kept more than the target's whole update, and the rule raised its learning rate. "
    else:
        text += f"Under {runs[0].config['optimizer']} a constant loss scale barely changes a task pass. "
    if pinned:
        d = paired_difference([h.test for h in pinned], [h.test for h in runs])
        text += "With the target's weight pinned at 1 (`pin_target_weight=True`): " + capitalised(prose.difference(
            "the pinned variant", "the same rule unpinned", d))
    return text


def capitalised(sentence: str) -> str:
    """``sentence`` as a sentence: a capital first letter and a full stop."""
    sentence = sentence.strip()
    return sentence[:1].upper() + sentence[1:] + ("" if sentence.endswith((".", "!", "?")) else ".")


def static(search, avil_runs: Sequence[History]) -> str:
    """What the static-weight search chose, what it cost, and αVIL beside it
    (paired per seed, as ``search.c3_of`` pairs them)."""
    seeds = [h.seed for h in avil_runs]
    chosen = "; ".join(f"seed {s}: " + ", ".join(f"`{a}` {w:g}" for a, w in search.chosen[s].items())
                       for s in seeds)
    avil_seconds = statistics.fmean(sum(h.epoch_seconds) for h in avil_runs)
    search_seconds = statistics.fmean(search.seconds(s) for s in seeds)
    best = {h.seed: h.test for h in search.best}
    d = paired_difference([h.test for h in avil_runs], [best[h.seed] for h in avil_runs])
    return (f"The search trained {search.runs_per_seed:g} full runs per seed (grid "
            f"{', '.join(f'{g:g}' for g in search.grid)}) and chose {chosen}. It took {search_seconds:.0f} s per "
            f"seed, against {avil_seconds:.0f} s for one αVIL run ({search_seconds / avil_seconds:.1f}×). "
            + capitalised(prose.difference("αVIL", "the search's choice", d)))


def cost(shares: Dict[str, dict]) -> str:
    """The α-step's share of αVIL's epoch time (``alpha_step_cost``)."""
    return " ".join(f"`{label}`: the α-step took {c['alpha_step_seconds']:.2f} s of a {c['epoch_seconds']:.2f} s "
                    f"epoch on average, {100 * c['share']:.1f} % of the time ({c['epochs']} epochs)."
                    for label, c in shares.items())



def versus(columns: Dict[str, Dict[str, dict]], reference: str, scale: float = 100.0, unit: str = "points",
           alpha: float = 0.05) -> str:
    """Per suite, which rows are measurably ahead of or behind ``reference``
    after Holm's correction over the suite's rows (``ablation.holm_differences``),
    and otherwise the largest of the rows' smallest detectable effects."""
    from .stats import minimum_detectable_effect

    lines = []
    for suite, rows in columns.items():
        if not rows:
            continue
        ahead = [f"`{label}` ({e['difference'].format(scale)})" for label, e in rows.items()
                 if e["holm_p"] < alpha and e["difference"].mean > 0]
        behind = [f"`{label}` ({e['difference'].format(scale)})" for label, e in rows.items()
                  if e["holm_p"] < alpha and e["difference"].mean < 0]
        parts = []
        if ahead:
            parts.append("measurably ahead of " + reference + ": " + ", ".join(ahead))
        if behind:
            parts.append("measurably behind it: " + ", ".join(behind))
        if not parts:
            detectable = max(minimum_detectable_effect(e["difference"]) for e in rows.values())
            parts.append(f"no row differs measurably from {reference} (Holm over {len(rows)}); the smallest effect "
                         f"these seeds could detect is up to about ±{prose.plain(detectable, scale)} {unit}")
        lines.append(f"- **{suite}**: " + "; ".join(parts) + ".")
    return "\n".join(lines)
