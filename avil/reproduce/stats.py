"""The numbers the tables are made of: paired differences per seed with their
t-interval and t-test, Holm's correction over a family of them, the smallest
effect a set of seeds can detect, a ``compare`` result summarised per method,
and per-run records of the α-step (its solve, the per-delta ablation, its
cost) and of the final task weights' ranking.

What "±" means, everywhere the package writes one: after a paired difference
(``+1.81 ± 1.61``) it is the half-width of the difference's 95 % t-interval
over seeds; after an accuracy or another metric (``84.20 ± 0.93``) it is the
standard deviation over seeds (docs/design.md §6)."""
import dataclasses
import math
import statistics
from typing import Dict, List, Optional, Sequence, Tuple

from ..history import History


def mean_std(values: Sequence[float]):
    values = list(values)
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


@dataclasses.dataclass(frozen=True)
class PairedDifference:
    """a − b paired per seed: the mean, a two-sided t-interval and wins.

    half_width is ``inf`` with one seed (no interval without a spread); a
    difference is established only where the interval excludes 0
    (``verdict``), never by its mean alone.
    """

    mean: float
    half_width: float
    wins: int  # seeds where a > b (strictly)
    seeds: int
    differences: Tuple[float, ...]  # a_i − b_i per seed
    confidence: float = 0.95

    @property
    def low(self) -> float:
        return self.mean - self.half_width

    @property
    def high(self) -> float:
        return self.mean + self.half_width

    @property
    def p_value(self) -> float:
        """Two-sided paired t-test of mean difference 0 (scipy.stats.t), as
        scipy.stats.ttest_rel gives it. One seed: 1.0 (no test without a
        spread); no spread: 0.0 if the mean is not 0, else 1.0."""
        from scipy import stats

        if self.seeds < 2:
            return 1.0
        sd = statistics.stdev(self.differences)
        if sd == 0:
            return 0.0 if self.mean != 0 else 1.0
        t = self.mean / (sd / math.sqrt(self.seeds))
        return float(2 * stats.t.sf(abs(t), self.seeds - 1))

    @property
    def verdict(self) -> str:
        """"higher" or "lower" where the interval excludes 0, else "inside CI"."""
        return "higher" if self.low > 0 else "lower" if self.high < 0 else "inside CI"

    def format(self, scale: float = 100.0) -> str:
        """E.g. ``+1.81 ± 1.61 (3/3)``: mean ± half-width in ``scale`` units, wins/seeds."""
        width = f"{scale * self.half_width:.2f}" if math.isfinite(self.half_width) else "∞"
        return f"{scale * self.mean:+.2f} ± {width} ({self.wins}/{self.seeds})"

    def to_dict(self) -> dict:
        data = dataclasses.asdict(self)
        data["differences"] = list(self.differences)
        data["half_width"] = self.half_width if math.isfinite(self.half_width) else None  # JSON has no inf
        data["p_value"] = self.p_value
        return data

    @classmethod
    def from_dict(cls, data: dict) -> "PairedDifference":
        data = {key: value for key, value in data.items() if key != "p_value"}  # derived, not stored
        return cls(**{**data, "differences": tuple(data["differences"]),
                      "half_width": math.inf if data["half_width"] is None else data["half_width"]})


def paired_difference(a: Sequence[float], b: Sequence[float], confidence: float = 0.95) -> PairedDifference:
    """The paired difference a − b over seeds (``a[i]`` and ``b[i]`` from the
    same seed): mean, the half-width of its ``confidence`` t-interval
    (``t_{n−1} · sd / √n``, scipy.stats.t), and wins/seeds."""
    from scipy import stats

    a, b = list(a), list(b)
    if len(a) != len(b) or not a:
        raise ValueError(f"paired_difference needs the same number (≥ 1) of values per side, one per seed; "
                         f"got {len(a)} and {len(b)}.")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence={confidence!r}: must be in (0, 1), e.g. 0.95.")
    diffs = tuple(float(x) - float(y) for x, y in zip(a, b))
    n = len(diffs)
    half = math.inf
    if n > 1:
        half = float(stats.t.ppf((1 + confidence) / 2, n - 1)) * statistics.stdev(diffs) / math.sqrt(n)
    return PairedDifference(statistics.fmean(diffs), half, sum(d > 0 for d in diffs), n, diffs, confidence)


def holm(p_values: Dict[str, float]) -> Dict[str, float]:
    """Holm–Bonferroni adjusted p-values of a family of tests, by name: the
    i-th smallest p times (m − i + 1), made monotone (never below a smaller
    p's adjusted value) and capped at 1. Reject at level α where the adjusted
    p < α: the family-wise error rate stays at most α."""
    bad = {name: p for name, p in p_values.items() if not (isinstance(p, (int, float)) and 0 <= p <= 1)}
    if bad:
        raise ValueError(f"holm: p-values {bad} are not numbers in [0, 1]. Fix: pass each test's p-value "
                         "(e.g. PairedDifference.p_value).")
    m = len(p_values)
    adjusted, running = {}, 0.0
    for i, (name, p) in enumerate(sorted(p_values.items(), key=lambda item: item[1])):
        running = max(running, min(1.0, (m - i) * float(p)))
        adjusted[name] = running
    return {name: adjusted[name] for name in p_values}


def minimum_detectable_effect(diff: PairedDifference, power: float = 0.8, alpha: float = 0.05) -> float:
    """The smallest true mean difference a two-sided paired t-test at level
    ``alpha`` detects with probability ``power``, given these seeds and this
    spread of the per-seed differences: (t_{1−α/2, n−1} + t_{power, n−1}) ·
    sd / √n, in the differences' units. ``inf`` with one seed."""
    from scipy import stats

    if not (0 < power < 1 and 0 < alpha < 1):
        raise ValueError(f"power={power!r}, alpha={alpha!r}: both must be in (0, 1), e.g. power=0.8, alpha=0.05.")
    n = diff.seeds
    if n < 2:
        return math.inf
    t = float(stats.t.ppf(1 - alpha / 2, n - 1)) + float(stats.t.ppf(power, n - 1))
    return t * statistics.stdev(diff.differences) / math.sqrt(n)


def summarize(histories: Dict[str, List[History]], baseline: Optional[str] = "single_task") -> Dict[str, dict]:
    """Per method: test and dev mean ± std over seeds, best epochs, final weights
    (mean), and, when ``baseline`` is among the methods, the paired difference
    of the test metric from it per seed (``vs_baseline``: mean, 95 % t-interval,
    wins; see ``paired_difference``), over the seeds both ran."""
    out = {}
    for method, runs in histories.items():
        test_mean, test_std = mean_std(h.test for h in runs)
        dev_mean, dev_std = mean_std(max(h.dev) for h in runs)
        names = runs[0].tasks
        out[method] = {
            "test_mean": test_mean, "test_std": test_std, "dev_mean": dev_mean, "dev_std": dev_std,
            "test": [h.test for h in runs], "best_dev": [max(h.dev) for h in runs],
            "best_epoch": [h.best_epoch for h in runs], "seeds": [h.seed for h in runs],
            "final_weights": {n: statistics.fmean(h.task_weights[-1][n] for h in runs) for n in names},
            "seconds": sum(sum(h.epoch_seconds) for h in runs),
        }
        if baseline in histories and method != baseline:
            reference = {h.seed: h.test for h in histories[baseline]}
            paired = [(h.test, reference[h.seed]) for h in runs if h.seed in reference]
            if paired:
                out[method]["baseline"] = baseline
                out[method]["vs_baseline"] = paired_difference(*zip(*paired)).to_dict()
    return out


def _alpha_step_runs(histories: Dict[str, List[History]]):
    """(label, History) of every run with an α-step (αVIL's), in order."""
    return [(label, h) for label, runs in histories.items() for h in runs if h.alpha_step]


def alpha_step_records(histories: Dict[str, List[History]]) -> List[dict]:
    """What every αVIL run's α-step did, one flat record per (label, seed,
    epoch), JSON-able (for a metrics file) and the rows of ``alpha_step_table``:
    ``rule`` (the label), ``seed``, ``epoch`` (1-based), ``α[task]`` (the
    chosen α) and ``w[task]`` (the task weight after the epoch) for every
    task, the target's dev loss on the α-step's dev subset at α_init
    (``loss_init``) and at the chosen α (``loss_final``), the solver's
    ``iterations`` and ``evaluations``, ``on_bound`` (the tasks whose α ended
    on a bound of the trust region), ``converged`` and ``seconds`` (the
    α-step's wall time). Runs without an α-step (other methods) are left out."""
    rows = []
    for label, h in _alpha_step_runs(histories):
        for epoch, (step, alphas, weights, seconds) in enumerate(
                zip(h.alpha_step, h.alphas, h.task_weights, h.alpha_step_seconds), 1):
            rows.append({"rule": label, "seed": h.seed, "epoch": epoch,
                         **{f"α[{name}]": alphas[name] for name in h.tasks},
                         **{f"w[{name}]": weights[name] for name in h.tasks},
                         **{key: step[key] for key in ("loss_init", "loss_final", "iterations", "evaluations",
                                                       "on_bound", "converged")},
                         "seconds": seconds})
    return rows


def ablation_records(histories: Dict[str, List[History]]) -> List[dict]:
    """The per-delta ablation of every αVIL run, one record per (label, seed,
    epoch): ``rule``, ``seed``, ``epoch`` and, per task, the target's dev loss
    at the chosen α with that task's update dropped (its α set to 0) minus the
    dev loss at the chosen α (``History.alpha_step``'s ``loss_without`` minus
    ``loss_final``, on the α-step's dev subset). Positive: the merged model
    leans on that task's update (dropping it raises the dev loss); negative:
    the target would be better off without it; 0: its α is 0.
    Raises ValueError naming the run if it was made without
    ``FitConfig(alpha_ablation=True)``."""
    rows = []
    for label, h in _alpha_step_runs(histories):
        for epoch, step in enumerate(h.alpha_step, 1):
            if step.get("loss_without") is None:
                raise ValueError(f"{label} seed {h.seed}, epoch {epoch}: no per-delta ablation recorded "
                                 "(History.alpha_step has no 'loss_without'). Fix: run it with "
                                 "FitConfig(alpha_ablation=True).")
            rows.append({"rule": label, "seed": h.seed, "epoch": epoch,
                         **{name: step["loss_without"][name] - step["loss_final"] for name in h.tasks}})
    return rows


def alpha_step_cost(histories: Dict[str, List[History]]) -> Dict[str, dict]:
    """Per label with an α-step: its seconds against the whole epoch's, over
    all runs and epochs: ``runs``, ``epochs``, ``alpha_step_seconds`` and
    ``epoch_seconds`` (means per epoch) and ``share`` (total α-step seconds
    over total epoch seconds, in [0, 1]). An epoch's seconds hold its task
    passes, the α-step, the merge, the dev and test evaluation, and (with
    ``alpha_ablation``) the per-delta ablation; the α-step's hold the solver's
    dev-loss evaluations and α-gradients only."""
    out = {}
    for label, runs in histories.items():
        runs = [h for h in runs if h.alpha_step]
        if not runs:
            continue
        step = [s for h in runs for s in h.alpha_step_seconds]
        epoch = [s for h in runs for s in h.epoch_seconds]
        out[label] = {"runs": len(runs), "epochs": len(epoch), "alpha_step_seconds": statistics.fmean(step),
                      "epoch_seconds": statistics.fmean(epoch),
                      "share": sum(step) / sum(epoch) if sum(epoch) > 0 else math.nan}
    return out
