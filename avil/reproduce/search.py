"""The static-weight search αVIL claims to make unnecessary (claim C3).

``static_search`` chooses the fixed auxiliary weights of the ``static`` method
(avil/methods/static.py) on the target's dev metric, per seed, the way a
practitioner would tune them by hand: coordinate-wise, one sweep. Start with
every auxiliary at weight 1 (exactly ``uniform``); then, auxiliary by
auxiliary in the given order, train one run per other value of ``grid`` with
the others held at their chosen values, and keep the value whose run reaches
the best dev metric (the current one on a tie). Its cost is 1 + K·(|grid| − 1)
full training runs per seed for K auxiliaries; its test metric is the chosen
run's, read at that run's best dev epoch, so the test set never chooses.
"""
import dataclasses
import statistics
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from ..config import FitConfig
from ..history import History
from .claims import Verdict, c3
from .runs import Run, run_all


@dataclasses.dataclass
class StaticSearch:
    """What a search did, per seed: every run ``(weights, History)`` in the
    order made, and the weights it chose."""

    grid: Tuple[float, ...]
    runs: Dict[int, List[Tuple[Dict[str, float], History]]]
    chosen: Dict[int, Dict[str, float]]

    @property
    def best(self) -> List[History]:
        """The chosen run of every seed (its ``test`` is the search's result)."""
        return [next(h for w, h in self.runs[seed] if w == self.chosen[seed]) for seed in self.runs]

    @property
    def runs_per_seed(self) -> float:
        return sum(len(r) for r in self.runs.values()) / len(self.runs)

    def seconds(self, seed: int) -> float:
        """The search's wall time for ``seed``: every run's epochs (evaluation included)."""
        return sum(sum(h.epoch_seconds) for _, h in self.runs[seed])

    def to_dict(self) -> dict:
        return {"grid": list(self.grid), "chosen": {str(s): w for s, w in self.chosen.items()},
                "runs_per_seed": self.runs_per_seed,
                "seconds": {str(s): self.seconds(s) for s in self.runs},
                "runs": {str(s): [{"weights": w, "best_dev": max(h.dev), "test": h.test} for w, h in runs]
                         for s, runs in self.runs.items()},
                "histories": [h.to_dict() for h in self.best]}


def _label(weights: Dict[str, float]) -> str:
    return "static " + ", ".join(f"{name}={w:g}" for name, w in weights.items())


def static_search(make_run: Callable[[int], tuple], target: str, auxiliaries: Sequence[str], seeds: Sequence[int],
                  config: FitConfig, grid: Sequence[float] = (0.0, 0.5, 1.0, 2.0), workers: int = 1,
                  progress: bool = True, start: Optional[Dict[int, History]] = None) -> StaticSearch:
    """Search ``static``'s weights for every seed (module docstring).

    grid: the weights tried for each auxiliary (must hold 1, the start).
    start: the all-ones runs if already made ({seed: uniform's History on the
        same suite and config}); they are reused instead of run again.
    workers, progress: as ``run_all``; every round's runs go together.
    """
    grid = tuple(float(g) for g in grid)
    if 1.0 not in grid or any(g < 0 for g in grid):
        raise ValueError(f"grid={grid}: must hold 1.0 (the search starts from uniform) and no negative weight.")
    current = {seed: {name: 1.0 for name in auxiliaries} for seed in seeds}
    runs: Dict[int, List[Tuple[Dict[str, float], History]]] = {seed: [] for seed in seeds}

    def make(weights_by_seed: Dict[int, List[Dict[str, float]]]) -> None:
        batch = [Run(_label(w), "static", seed, make_run, target, dataclasses.replace(config, static_weights=w))
                 for seed, ws in weights_by_seed.items() for w in ws]
        done = run_all(batch, workers=workers, progress=progress)
        for run in batch:
            history = next(h for h in done[run.label] if h.seed == run.seed)
            runs[run.seed].append((dict(run.config.static_weights), history))

    if start is not None:
        for seed in seeds:
            runs[seed].append((dict(current[seed]), start[seed]))
    else:
        make({seed: [dict(current[seed])] for seed in seeds})
    for name in auxiliaries:
        make({seed: [{**current[seed], name: g} for g in grid if g != current[seed][name]] for seed in seeds})
        for seed in seeds:
            candidates = [(w, h) for w, h in runs[seed]
                          if all(w[n] == current[seed][n] for n in auxiliaries if n != name)]
            best = max(candidates, key=lambda item: (max(item[1].dev), item[0][name] == current[seed][name]))
            current[seed] = dict(best[0])
    return StaticSearch(grid, runs, current)


def c3_of(suite: str, avil_runs: Sequence[History], search: StaticSearch, margin: float = 0.01) -> Verdict:
    """C3 for αVIL's runs (one History per seed) against ``search``'s chosen
    runs on the same seeds: accuracy paired per seed, cost in wall time (the
    mean over seeds of one αVIL run's epochs against the whole search's)."""
    seeds = [h.seed for h in avil_runs]
    return c3(suite, {h.seed: h.test for h in avil_runs}, {h.seed: h.test for h in search.best},
              avil_seconds=statistics.fmean(sum(h.epoch_seconds) for h in avil_runs),
              static_seconds=statistics.fmean(search.seconds(seed) for seed in seeds),
              static_runs=round(search.runs_per_seed), margin=margin)
