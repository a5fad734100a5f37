"""Paragraphs a notebook shows after its tables, rendered from the results
(``display(Markdown(report.xxx(...)))``): the words follow the numbers, so a
rerun with other parameters describes itself. Built from ``prose``'s
sentences; "±" after a difference is its 95 % t-interval's half-width."""
import statistics
from typing import Dict, List, Optional, Sequence

from ..history import History
from ..ranking import DEFAULT_READOUT, auxiliary_scores
from . import prose
from .claims import c2
from .stats import PairedDifference, minimum_detectable_effect, paired_difference
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
        family = f"the table's {len(adjusted)} comparisons with `{baseline}`"
        sentence = prose.difference(f"`{label}`", f"`{baseline}`", PairedDifference.from_dict(s["vs_baseline"]), scale,
                                    unit, holm_p=adjusted[label], family=family, tests=len(adjusted))
        lines.append(f"- {capitalised(sentence)}")
    return "\n".join(lines)


def effects(measured: Dict[str, object], scale: float = 100.0, unit: str = "points") -> str:
    """One bullet per auxiliary: its measured effect and what it is called."""
    return "\n".join(f"- {prose.effect(f'`{aux}`', e.difference, scale, unit)}" for aux, e in measured.items())


def roles(measured: Dict[str, object], built: Dict[str, str]) -> str:
    """The auxiliaries whose measured effect differs from the role they were
    built for (``built``: {auxiliary: "helpful", "harmful" or "no effect
    detected"}): the construction says what a task is meant to do, the
    measurement what it did to the target."""
    differ = [(a, built[a], prose.effect_kind(e.difference)) for a, e in measured.items()
              if a in built and built[a] != prose.effect_kind(e.difference)]
    if not differ:
        return "Every auxiliary measured as the role it was built for."
    return ("Measured against its construction: " + "; ".join(
        f"`{a}` was built to be {'useless (no effect)' if b == 'no effect detected' else b} and measured "
        f"{'as having no detectable effect' if m == 'no effect detected' else m}" for a, b, m in differ)
        + ". The measurement, not the construction, is what C2 ranks against.")


def effects_baseline(measured: Dict[str, object], summary: Dict[str, dict], baseline: str = "single_task",
                     scale: float = 100.0) -> str:
    """Why the effects table's ``baseline`` is not the methods table's: each is
    given as many optimizer steps as the multitask run it is set against."""
    alone = [h for e in measured.values() for h in e.alone]
    if baseline not in summary or not alone:
        return ""
    means = {a: statistics.fmean(h.test for h in e.alone) for a, e in measured.items()}
    low, high = min(means.values()), max(means.values())
    shown = f"{scale * low:.2f}" + (f"–{scale * high:.2f}" if high > low else "")
    tasks = len(summary[baseline].get("final_weights", {})) or None
    return (f"The effects table's `{baseline}` ({shown}) is not the methods table's "
            f"({scale * summary[baseline]['test_mean']:.2f}): each `{baseline}` run takes as many optimizer steps "
            f"as the `uniform` run it is set against, here `uniform` on the target and one auxiliary, there "
            f"`uniform` on all {tasks} tasks, so the two train for different numbers of steps.")


def rankings(runs: Sequence[History], measured: Dict[str, object], readout: str = DEFAULT_READOUT) -> str:
    """The order of the auxiliaries' measured effects ({aux: AuxiliaryEffect}),
    stated once (one measurement serves every seed), then per seed αVIL's order
    by ``readout`` and the seed's Kendall τ-b between the two, C2's number
    (``claims.c2``; "undefined" where every score ties)."""
    diffs = {aux: e.difference for aux, e in measured.items()}
    scores = {h.seed: auxiliary_scores(h, readout) for h in runs}
    taus = c2("", scores, diffs).detail.get("taus", {}) if len(diffs) > 1 else {}
    kinds = {a: prose.effect_kind(d) for a, d in diffs.items()}
    groups = prose.grouped([(a, d.mean) for a, d in diffs.items()])
    by_score = {seed: prose.grouped(list(s.items())) for seed, s in scores.items()}  # each seed's order, ties grouped
    if len(set(kinds.values())) == 1:
        measured_text = f"{prose.order(groups)} (each: {next(iter(kinds.values()))})"
    else:
        measured_text = prose.order(groups, kinds)
    lines = [f"The measured effects order the auxiliaries {measured_text}, by their mean over seeds. The readout "
             f"(`{readout}`) orders them, per seed, with Kendall's τ-b between that order and the effects' means "
             f"(+1 the same order, −1 reversed; C2 averages it):"]
    for h in runs:
        tau = f"τ = {prose.signed(taus[h.seed])}" if h.seed in taus else "τ undefined: every score ties"
        lines.append(f"- seed {h.seed}: {prose.order(by_score[h.seed])} ({tau})")
    tied = any(len(g) > 1 for g in groups) or any(len(g) > 1 for s in by_score.values() for g in s)
    return "\n".join(lines) + ("\n\n“=” marks a tie." if tied else "")


def alpha_steps(runs: Sequence[History]) -> str:
    """What the α-steps of αVIL's runs did: evaluations, the dev loss they
    saved, convergence, and how often the target's α and weight ended on the
    box's upper ends (``alpha_max``, ``weight_max``)."""
    steps = [s for h in runs for s in h.alpha_step]
    if not steps:
        return "No run here has an α-step."
    evaluations = [s["evaluations"] for s in steps]
    saved = [s["loss_init"] - s["loss_final"] for s in steps]
    on_bound = sum(1 for s in steps if s["on_bound"])
    converged = sum(1 for s in steps if s["converged"])
    config, target = runs[0].config, runs[0].target
    box = f"[`alpha_min`, `alpha_max`] = [{config['alpha_min']:g}, {config['alpha_max']:g}]"
    text = (f"Over {len(steps)} α-steps ({prose.seeds_phrase(len(runs))}), each took "
            f"{min(evaluations)} to {max(evaluations)} evaluations of the dev loss and its gradient "
            f"(mean {statistics.fmean(evaluations):.1f}); the chosen α lowered the target's dev loss from the "
            f"merge at α_init (the α the solver starts from) by {statistics.fmean(saved):.3f} on average (at most "
            f"{max(saved):.3f}). The solver met its tolerance in {converged} of them, and in {on_bound} at least "
            f"one α ended on an end of the α box {box}.")
    at_max = sum(1 for h in runs for a in h.alphas if a[target] >= config["alpha_max"])
    w_max = sum(1 for h in runs for w in h.task_weights if w[target] >= config["weight_max"])
    n = sum(len(h.alphas) for h in runs)
    text += (f" The target's α sits at `alpha_max` after {at_max} of {n} α-steps, and its weight at `weight_max` "
             f"({config['weight_max']:g}) after {w_max} of {sum(len(h.task_weights) for h in runs)} epochs.")
    if at_max > n / 2:
        text += (" In most steps, then, the box's upper end, not the dev loss, decides how far the target's own "
                 "update is taken.")
    return text


def final_weights(runs: Sequence[History], names: Optional[Sequence[str]] = None) -> str:
    """Each task's weight after the last α-step: its range over seeds (one number where all seeds agree)."""
    names = names or runs[0].tasks
    parts = [f"`{name}` {_weights_range([h.task_weights[-1][name] for h in runs])}" for name in names]
    return "Task weights after the last α-step (range over seeds): " + ", ".join(parts) + "."


def _weights_range(values: Sequence[float]) -> str:
    """``0.05–0.96``, or one number where the range rounds to one (``0.05``, never ``0.05–0.05``)."""
    low, high = f"{min(values):.2f}", f"{max(values):.2f}"
    return low if low == high else f"{low}–{high}"


def target_weight(runs: Sequence[History], pinned: Sequence[History], suite: str = "this suite") -> str:
    """What the target's own weight did on one suite, as facts: how many
    α-steps left it at the floor (``weight_min``), its range, the weight after
    the last α-step (what a methods table's ``w[...]`` column averages) beside
    the weight the last epoch trained with (set by the α-step before it), and
    the pinned-target variant (``pinned``, the same seeds) paired against the
    unpinned runs. Under SGD a task's weight scales its step, which the text
    turns into an effective learning rate; under Adam it barely changes a pass
    (Adam divides a constant loss scale out), which the text says instead."""
    target, floor = runs[0].target, runs[0].config["weight_min"]
    after = [w[target] for h in runs for w in h.task_weights]  # after every α-step
    on_floor = sum(1 for w in after if w <= floor)
    last = [h.task_weights[-1][target] for h in runs]
    # the weight the last epoch's passes used: the one after the epoch before (1 before any)
    used = [h.task_weights[-2][target] if h.epochs > 1 else 1.0 for h in runs]
    seeds = ", ".join(str(h.seed) for h in runs)
    text = (f"On {suite}, the target's weight after an α-step ranges {_weights_range(after)} over "
            f"{len(after)} α-steps ({prose.seeds_phrase(len(runs))}) and sits at the floor (`weight_min` = "
            f"{floor:g}) after {on_floor} of them. Per seed ({seeds}), the weight after the last α-step (the one a "
            f"methods table's `w[{target}]` averages over seeds) is "
            + ", ".join(f"{w:.2f}" for w in last)
            + "; the weight the last epoch trained with (set by the α-step before it) is "
            + ", ".join(f"{w:.2f}" for w in used) + ". ")
    if runs[0].config["optimizer"] == "sgd":
        lr = [h.lr[-1][target] if h.lr else h.config["lr"] for h in runs]
        effective = [w * rate for w, rate in zip(used, lr)]
        text += (f"Under SGD that weight multiplies the target's step: the last epoch's effective learning rate "
                 f"was {min(effective):.3g}" + (f"–{max(effective):.3g}" if max(effective) > min(effective) else "")
                 + f" against the schedule's {min(lr):.3g}. ")
    else:
        name = {"adam": "Adam", "adamw": "AdamW"}.get(runs[0].config["optimizer"], runs[0].config["optimizer"])
        text += f"Under {name} a constant loss scale barely changes a task pass. "
    if pinned:
        by_seed = {h.seed: h.test for h in runs}
        both = [h for h in pinned if h.seed in by_seed]
        d = paired_difference([h.test for h in both], [by_seed[h.seed] for h in both])
        text += "With the target's weight pinned at 1: " + capitalised(prose.difference(
            "the pinned variant", "αVIL unpinned", d))
    return text.strip()


def capitalised(sentence: str) -> str:
    """``sentence`` as a sentence: a capital first letter and a full stop."""
    sentence = sentence.strip()
    return sentence[:1].upper() + sentence[1:] + ("" if sentence.endswith((".", "!", "?")) else ".")


def static(search, avil_runs: Sequence[History], workers: int = 1) -> str:
    """What the static-weight search chose, what it cost, and αVIL beside it
    (paired per seed, as ``search.c3_of`` pairs them). ``workers``: how many
    runs went at once (timings of runs sharing the machine are longer than
    those of runs alone)."""
    seeds = [h.seed for h in avil_runs]
    chosen = "; ".join(f"seed {s}: " + ", ".join(f"`{a}` {w:g}" for a, w in search.chosen[s].items())
                       for s in seeds)
    avil_seconds = statistics.fmean(sum(h.epoch_seconds) for h in avil_runs)
    search_seconds = statistics.fmean(search.seconds(s) for s in seeds)
    best = {h.seed: h.test for h in search.best}
    d = paired_difference([h.test for h in avil_runs], [best[h.seed] for h in avil_runs])
    k = len(search.chosen[seeds[0]])
    grid = ", ".join(f"{g:g}" for g in search.grid)
    dropped = [(a, sum(1 for s in seeds if search.chosen[s][a] == 0)) for a in search.chosen[seeds[0]]]
    dropped = [f"`{a}` {prose.count(n, len(seeds))}" for a, n in dropped if n]
    return (f"The search is coordinate-wise: it starts from every auxiliary at weight 1 and sweeps the grid "
            f"({grid}) one auxiliary at a time, so it trained {search.runs_per_seed:g} of the {len(search.grid)}^{k} = "
            f"{len(search.grid) ** k} weightings per seed, and chose {chosen}. "
            + (f"It chose weight 0, dropping the auxiliary, for {', '.join(dropped)}. " if dropped else "")
            + f"It took {search_seconds:.1f} s of training per seed (its runs' epochs summed), against "
            f"{avil_seconds:.1f} s for one αVIL run ({search_seconds / avil_seconds:.1f}×)"
            + (f"; these timings come from runs made {workers} at a time in parallel worker processes, so they "
               "include some contention. " if workers > 1 else ". ")
            + capitalised(prose.difference("αVIL", "the search's choice", d)))


def against_single_task(summary: Dict[str, dict], labels: Sequence[str] = ("avil", "static"),
                        baseline: str = "single_task", scale: float = 100.0, unit: str = "points",
                        c1=None) -> str:
    """Whether each of ``labels`` beat ``baseline``, by the methods table's
    test (Holm over its comparisons): what a non-inferiority verdict of C3
    does not say. With ``c1`` (C1's ``Verdict``), where C1's smaller Holm
    family decides αVIL against ``baseline`` otherwise than the table, a
    sentence says so and why."""
    adjusted = holm_vs_baseline(summary)
    out = []
    for label in labels:
        if label not in adjusted:
            continue
        d = PairedDifference.from_dict(summary[label]["vs_baseline"])
        beat = adjusted[label] < 0.05 and d.mean > 0
        out.append(f"`{label}` {'beat' if beat else 'did not beat'} `{baseline}` "
                   f"({prose.signed(d.mean, scale)} {unit}, Holm-adjusted {prose.p_phrase(adjusted[label])} over "
                   f"the methods table's {len(adjusted)} comparisons)")
    if not out:
        return ""
    text = ("C3 asks only that αVIL not fall behind the search by more than its margin, not that either beat "
            f"`{baseline}`: " + "; ".join(out) + ".")
    compared = (c1.detail.get("comparisons", {}).get(baseline) if c1 is not None else None)
    method = c1.detail.get("method") if c1 is not None else None
    if compared and method in adjusted and compared["holm_p"] is not None:
        in_table = adjusted[method] < 0.05 and summary[method]["vs_baseline"]["mean"] > 0
        in_c1 = baseline in c1.detail.get("ahead", [])
        if in_table != in_c1:
            family = len(c1.detail["comparisons"])
            text += (f" Whether `{method}` is measurably ahead of `{baseline}` depends on the family Holm's "
                     f"correction runs over, so read this difference as borderline: C1 corrects over its {family} "
                     f"baselines, the methods table over its {len(adjusted)} comparisons with `{baseline}`; in "
                     f"C1's family the same difference has Holm-adjusted {prose.p_phrase(compared['holm_p'])}, and "
                     f"`{method}` {'is' if in_c1 else 'is not'} measurably ahead of `{baseline}` there.")
    return text


def ablation(records: Sequence[dict], digits: int = 4) -> str:
    """What the per-delta ablation (``ablation_records``) says, per rule: each
    task's mean rise of the target's dev loss when its update is dropped, over
    seeds and epochs, largest first; how many entries are exactly 0 and how
    many negative (the target's dev loss lower without that update)."""
    by_rule: Dict[str, List[dict]] = {}
    for r in records:
        by_rule.setdefault(r["rule"], []).append(r)
    lines = []
    for rule, rows in by_rule.items():
        tasks = [k for k in rows[0] if k not in ("rule", "seed", "epoch")]
        means = sorted(((t, statistics.fmean(r[t] for r in rows)) for t in tasks), key=lambda item: -item[1])
        cells = [r[t] for r in rows for t in tasks]
        negative = [c for c in cells if c < 0]
        seeds = len({r["seed"] for r in rows})
        text = (f"`{rule}`: over {len(rows)} α-steps ({prose.seeds_phrase(seeds)}), dropping a task's update "
                f"changes the target's dev loss by, on average, "
                + ", ".join(f"`{t}` {m:+.{digits}f}" for t, m in means) + " (largest first). "
                f"Of the {len(cells)} entries, {sum(1 for c in cells if c == 0)} are exactly 0 and ")
        text += (f"{len(negative)} negative (at most {abs(min(negative)):.{digits}f} below 0): there the target's "
                 "dev loss would have been lower without that update." if negative else "none is negative.")
        lines.append(text)
    return "\n\n".join(lines)


def cost(shares: Dict[str, dict]) -> str:
    """The α-step's share of αVIL's epoch time (``alpha_step_cost``)."""
    return " ".join(f"`{label}`: the α-step took {c['alpha_step_seconds']:.1f} s of a {c['epoch_seconds']:.1f} s "
                    f"epoch on average, {100 * c['share']:.1f} % of the time ({c['epochs']} epochs)."
                    for label, c in shares.items())



def versus(columns: Dict[str, Dict[str, dict]], reference: str, scale: float = 100.0, unit: str = "points",
           alpha: float = 0.05) -> str:
    """Per suite, which rows are measurably ahead of or behind ``reference``
    after Holm's correction over the suite's rows (``ablation.holm_differences``),
    and otherwise the largest of the rows' smallest detectable effects."""
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


def _readout_place(scores: Dict[str, float], name: str) -> str:
    """``2nd of 4`` / ``tied 1st with all 4`` / ``tied 3rd with right``: where ``name`` ranks by score."""
    above = sum(1 for s in scores.values() if s > scores[name])
    level = [a for a, s in scores.items() if s == scores[name] and a != name]
    rank = above + 1
    nth = f"{rank}{'st' if rank == 1 else 'nd' if rank == 2 else 'rd' if rank == 3 else 'th'}"
    if not level:
        return f"{nth} of {len(scores)}"
    if len(level) == len(scores) - 1:
        return f"tied with all {len(scores)} (every score equal)"
    return f"tied {nth} with {', '.join(f'`{a}`' for a in level)}"


def _best_epochs(runs: Sequence[History]) -> str:
    epochs = runs[0].epochs
    last = sum(1 for h in runs if h.best_epoch == h.epochs)
    return (f"best dev epoch {', '.join(str(h.best_epoch) for h in runs)} of {epochs} "
            f"(the last epoch {prose.count(last, len(runs))})")


def extended(histories: Dict[str, List[History]], measured: Dict[str, object], method: str = "avil",
             baseline: str = "single_task", readout: str = DEFAULT_READOUT) -> str:
    """What the suite's auxiliaries measured to be (helpful, harmful, no effect
    detected), whether C2's order check has a helpful and a harmful auxiliary
    to set against each other, where ``method``'s readout places the most
    harmful auxiliary per seed, and at which epoch ``method`` and ``baseline``
    peaked on dev (a method whose best epoch is its last was still improving)."""
    kinds = {a: prose.effect_kind(e.difference) for a, e in measured.items()}
    groups = {k: [f"`{a}`" for a, kind in kinds.items() if kind == k]
              for k in ("helpful", "harmful", "no effect detected")}
    text = ("Measured on the target, the auxiliaries are helpful: " + (", ".join(groups["helpful"]) or "none")
            + "; harmful: " + (", ".join(groups["harmful"]) or "none") + "; no effect detected: "
            + (", ".join(groups["no effect detected"]) or "none") + ". ")
    pairs = len(groups["helpful"]) * len(groups["harmful"])
    text += (f"C2's check that every helpful auxiliary scores above every harmful one has {pairs} helpful-harmful "
             f"pair{'s' if pairs != 1 else ''} to check; its τ compares the whole order. " if pairs else
             "C2's check that every helpful auxiliary scores above every harmful one has no helpful-harmful pair to "
             "check here; only its τ, over the whole order, speaks. ")
    runs = histories.get(method, [])
    if runs and measured:
        worst = min(measured, key=lambda a: measured[a].difference.mean)
        places = [f"seed {h.seed}: {_readout_place(auxiliary_scores(h, readout), worst)}" for h in runs]
        text += (f"The readout (`{readout}`) places `{worst}`, the auxiliary with the lowest measured effect, "
                 f"as follows: {'; '.join(places)}. ")
    if runs and histories.get(baseline):
        base = histories[baseline]
        text += f"`{method}`: {_best_epochs(runs)}; `{baseline}`: {_best_epochs(base)}."
        still = all(h.best_epoch == h.epochs for h in runs)
        peaked = all(h.best_epoch < h.epochs for h in base)
        if still and peaked:
            text += (f" So `{method}` was still improving on dev when training stopped while `{baseline}` had "
                     f"peaked earlier: the comparison sets `{method}`, which more epochs might change, against "
                     f"`{baseline}` past its best.")
    return text.strip()
