"""Sentences rendered from the numbers, for a notebook's code cells to show
with ``display(Markdown(...))``: the numbers choose the words, so a rerun with
other parameters describes itself (docs/design.md §6).

"±" after a difference is the half-width of its 95 % t-interval over seeds
(``avil.reproduce.stats``). Scores and effects are in the metric's units;
``scale`` turns them into the units a sentence speaks of (100: accuracy as
points)."""
import math
from typing import List, Mapping, Sequence, Tuple, Union

from ..ranking import ties
from .stats import PairedDifference, minimum_detectable_effect


def signed(value: float, scale: float = 1.0, digits: int = 2) -> str:
    """``+1.23`` / ``-0.40``; ``∞`` for an infinite value."""
    if value is None:
        return "—"
    if math.isinf(value):
        return "+∞" if value > 0 else "-∞"
    return f"{round(scale * value, digits) + 0.0:+.{digits}f}"  # + 0.0: no "-0.00"


def plain(value: float, scale: float = 1.0, digits: int = 2) -> str:
    """``1.23`` (no sign); ``∞`` for an infinite value."""
    if value is None:
        return "—"
    return f"{round(scale * value, digits) + 0.0:.{digits}f}" if math.isfinite(value) else "∞"


def interval(low: float, high: float, scale: float = 1.0, digits: int = 2) -> str:
    """``[+0.40, +2.06]``."""
    return f"[{signed(low, scale, digits)}, {signed(high, scale, digits)}]"


def count(k: int, n: int, what: str = "seeds") -> str:
    """``in 3 of 5 seeds`` (``in 1 of 1 seed``)."""
    return f"in {k} of {n} {what[:-1] if n == 1 and what.endswith('s') else what}"


def seeds_phrase(n: int, what: str = "seeds") -> str:
    """``3 seeds`` / ``one seed``."""
    return f"one {what[:-1] if what.endswith('s') else what}" if n == 1 else f"{n} {what}"


def p_phrase(p: float) -> str:
    """``p = 0.012`` / ``p < 0.001``."""
    return "p < 0.001" if p < 0.001 else f"p = {p:.3f}"


def undetected(diff: PairedDifference, scale: float = 100.0, unit: str = "points", alpha: float = 0.05) -> str:
    """The clause for a difference no test established: its mean and the
    smallest effect these seeds could have detected (80 % power, at ``alpha``:
    the level its test ran at, α/m for the strictest step of Holm over m)."""
    mde = minimum_detectable_effect(diff, alpha=alpha)
    if not math.isfinite(mde):
        return (f"mean {signed(diff.mean, scale)} {unit}; with {seeds_phrase(diff.seeds)} there is no interval, "
                "so no effect of any size could be detected")
    return (f"mean {signed(diff.mean, scale)} {unit}; the smallest effect these {seeds_phrase(diff.seeds)} could "
            f"detect with 80 % power is about {plain(mde, scale)} {unit}")


def difference(label: str, baseline: str, diff: PairedDifference, scale: float = 100.0,
               unit: str = "points", holm_p: float = None, family: Union[int, str] = 1,
               tests: int = None) -> str:
    """One sentence on ``label`` − ``baseline`` paired per seed: ahead or
    behind where the test establishes it, else that no difference was
    detected and the smallest one these seeds could detect. With ``holm_p``
    (the Holm-adjusted p-value in a family of ``family`` comparisons) the
    test is Holm's at α = 0.05; without, the 95 % interval excluding 0.
    ``family`` may name the family (``"the table's 5 comparisons"``), with
    ``tests`` its size."""
    tests = tests if tests is not None else family if isinstance(family, int) else 1
    established = (holm_p < 0.05) if holm_p is not None else (diff.low > 0 or diff.high < 0)
    if established:
        ahead = diff.mean > 0
        same_way = diff.wins if ahead else sum(d < 0 for d in diff.differences)
        corrected = f", Holm-adjusted {p_phrase(holm_p)} over {family}" if holm_p is not None else ""
        return (f"{label} is {'ahead of' if ahead else 'behind'} {baseline} by {plain(abs(diff.mean), scale)} "
                f"± {plain(diff.half_width, scale)} {unit} (95 % CI{corrected}; {'ahead' if ahead else 'behind'} "
                f"{count(same_way, diff.seeds)})")
    if holm_p is not None:
        return (f"no difference between {label} and {baseline} was detected after Holm's correction "
                f"over {family} ({undetected(diff, scale, unit, 0.05 / tests)})")
    if diff.low > 0 or diff.high < 0:
        ahead = diff.low > 0
        same_way = diff.wins if ahead else sum(d < 0 for d in diff.differences)
        return (f"{label} is {'ahead of' if ahead else 'behind'} {baseline} by {plain(abs(diff.mean), scale)} "
                f"± {plain(diff.half_width, scale)} {unit} (95 % CI; {'ahead' if ahead else 'behind'} "
                f"{count(same_way, diff.seeds)})")
    return (f"no difference between {label} and {baseline} was detected "
            f"({undetected(diff, scale, unit)})")


def effect_kind(diff: PairedDifference) -> str:
    """``helpful`` (95 % CI above 0), ``harmful`` (below 0) or ``no effect detected``."""
    return "helpful" if diff.low > 0 else "harmful" if diff.high < 0 else "no effect detected"


def effect(aux: str, diff: PairedDifference, scale: float = 100.0, unit: str = "points") -> str:
    """One auxiliary's measured effect on the target, e.g. ``b: harmful
    (-2.10 ± 1.30 points, 95 % CI; lower in 3 of 3 seeds)``."""
    kind = effect_kind(diff)
    if kind == "no effect detected":
        mde = minimum_detectable_effect(diff)
        if not math.isfinite(mde):
            return f"{aux}: no effect detected (mean {signed(diff.mean, scale)} {unit}; one seed gives no interval)"
        return (f"{aux}: no effect detected (mean {signed(diff.mean, scale)} {unit}; smallest detectable "
                f"with 80 % power about {plain(mde, scale)} {unit})")
    same_way = diff.wins if kind == "helpful" else sum(d < 0 for d in diff.differences)
    return (f"{aux}: {kind} ({signed(diff.mean, scale)} ± {plain(diff.half_width, scale)} {unit}, 95 % CI; "
            f"{'higher' if kind == 'helpful' else 'lower'} {count(same_way, diff.seeds)})")


def order(groups: Sequence[Sequence[str]], notes: Mapping[str, str] = None) -> str:
    """``a > b = c``: groups best first, ``=`` joins a tie; a note in brackets after a name."""
    notes = notes or {}
    return " > ".join(" = ".join(f"{name} ({notes[name]})" if name in notes else name for name in group)
                      for group in groups)


def grouped(scores: Sequence[Tuple[str, float]]) -> List[List[str]]:
    """Names grouped by equal score, highest first (``order`` writes them)."""
    return ties(sorted(scores, key=lambda item: -item[1]))


def verdict(v) -> str:
    """One sentence on a ``claims.Verdict``: the claim, the suite, the verdict
    and the numbers behind it (estimate, 95 % CI, wins, seeds, correction)."""
    if v.verdict == "not measured":
        return f"{v.claim} on {v.suite}: not measured ({v.detail.get('why', '')})."
    unit = f" {v.unit}" if v.unit else ""
    if v.estimate is None:
        return f"{v.claim} on {v.suite}: {v.verdict} ({v.detail.get('why', 'no estimate')})."
    wins = (f"; {v.wins} of {seeds_phrase(v.detail.get('wins_of', v.seeds), v.units)} {v.wins_meaning}"
            if v.wins is not None
            else f"; {seeds_phrase(v.seeds, v.units)}")
    why = f"; {v.detail['why']}" if v.detail.get("why") else ""  # an estimate that does not decide the verdict
    return (f"{v.claim} on {v.suite}: {v.verdict} ({v.measure}: {signed(v.estimate, v.scale)}{unit}, 95 % CI "
            f"{interval(v.ci_low, v.ci_high, v.scale)}{wins}{why}; {v.correction}).")


def verdicts_table(verdicts: Sequence) -> "pandas.DataFrame":
    """A pandas table of ``claims.Verdict``s: claim, suite, verdict, estimate,
    95 % CI, seeds, wins (— where there is none), then what the estimate
    measures, in which unit, and what a win counts, since both differ by claim."""
    import pandas as pd

    rows = []
    for v in verdicts:
        unit = f" {v.unit}" if v.unit else ""
        measured = v.estimate is not None
        units = v.units if measured else "seeds"
        rows.append({"claim": v.claim, "suite": v.suite, "verdict": v.verdict,
                     "estimate": f"{signed(v.estimate, v.scale)}{unit}" if measured else "—",
                     "95 % CI": interval(v.ci_low, v.ci_high, v.scale) if measured else "—",
                     "seeds": v.seeds if measured else "—",
                     "wins": f"{v.wins}/{v.detail.get('wins_of', v.seeds)}" if measured and v.wins is not None
                     else "—",
                     "estimate is": (f"{v.measure}" + (f", in {v.unit}" if v.unit else "")) if v.measure else "—",
                     "a win is": f"one of the {units} {v.wins_meaning}" if v.wins_meaning else "—"})
    return pd.DataFrame(rows, columns=["claim", "suite", "verdict", "estimate", "95 % CI", "seeds", "wins",
                                       "estimate is", "a win is"])


__all__ = ["count", "difference", "effect", "effect_kind", "grouped", "interval", "order", "p_phrase", "plain",
           "seeds_phrase", "signed", "undetected", "verdict", "verdicts_table"]
