"""Which auxiliaries help: reading a ranking out of an αVIL run.

αVIL's pitch is that its weights say how much each auxiliary helps the
target. A run records several things that could say so, and each is a
*readout* here (``READOUTS``); ``rank_auxiliaries`` ranks by the one
notebooks/03_alpha_tuning.ipynb chose by measurement (``DEFAULT_READOUT``):

- ``final_weight``: the task weights after the last epoch (the paper's reading);
- ``mean_weight``: the task weights averaged over the epochs;
- ``mean_alpha``: α averaged over the epochs (how much of each update the
  α-step kept);
- ``mean_ablation``: the per-delta ablation averaged over the epochs: how
  much the target's dev loss rises when the task's update is dropped from the
  chosen merge (needs ``FitConfig(alpha_ablation=True)`` or the
  ``"contribution"`` weight rule);
- ``mean_gradient``: −∂L_dev/∂α_t at α_init averaged over the epochs (the
  first-order effect on the target's dev loss of taking more of the update).
"""
import statistics
from typing import Callable, Dict, List, Tuple

from .history import History


def _mean_over_epochs(history: History, per_epoch: Callable[[int, str], float]) -> Dict[str, float]:
    return {name: statistics.fmean(per_epoch(e, name) for e in range(history.epochs))
            for name in _auxiliaries(history)}


def _auxiliaries(history: History) -> List[str]:
    return [name for name in history.tasks if name != history.target]


def _needs_alpha_step(history: History, what: str) -> None:
    if not history.alpha_step:
        raise ValueError(f"the {history.method} run (seed {history.seed}) has no α-step, so it has no {what}. "
                         "Fix: rank the auxiliaries of an αVIL run (method='avil').")


def _ablation(history: History) -> Dict[str, float]:
    _needs_alpha_step(history, "per-delta ablation")
    if any(step.get("loss_without") is None for step in history.alpha_step):
        raise ValueError(f"the avil run (seed {history.seed}) recorded no per-delta ablation. Fix: run it with "
                         "FitConfig(alpha_ablation=True) (or weight_update='contribution'), or pick another readout.")
    return _mean_over_epochs(history, lambda e, name: history.alpha_step[e]["loss_without"][name]
                             - history.alpha_step[e]["loss_final"])


def _gradient(history: History) -> Dict[str, float]:
    _needs_alpha_step(history, "α-step gradient")
    return _mean_over_epochs(history, lambda e, name: -history.alpha_step[e]["gradient_init"][name])


def _alphas(history: History) -> Dict[str, float]:
    _needs_alpha_step(history, "α")
    return _mean_over_epochs(history, lambda e, name: history.alphas[e][name])


READOUTS: Dict[str, Callable[[History], Dict[str, float]]] = {
    "final_weight": lambda h: {name: h.task_weights[-1][name] for name in _auxiliaries(h)},
    "mean_weight": lambda h: _mean_over_epochs(h, lambda e, name: h.task_weights[e][name]),
    "mean_alpha": _alphas,
    "mean_ablation": _ablation,
    "mean_gradient": _gradient,
}
DEFAULT_READOUT = "final_weight"


def auxiliary_scores(history: History, readout: str = DEFAULT_READOUT) -> Dict[str, float]:
    """{auxiliary: score} by ``readout`` (higher: more useful to the target)."""
    if readout not in READOUTS:
        raise ValueError(f"readout {readout!r}: must be one of {sorted(READOUTS)}.")
    return READOUTS[readout](history)


def rank_auxiliaries(history: History, readout: str = DEFAULT_READOUT) -> List[Tuple[str, float]]:
    """The run's auxiliaries as ``(auxiliary, score)`` pairs, most useful first.

    Equal scores are a tie and keep the task list's order; ``ties`` groups them.
    """
    scores = auxiliary_scores(history, readout)
    return sorted(scores.items(), key=lambda item: -item[1])


def ties(ranking: List[Tuple[str, float]]) -> List[List[str]]:
    """The ranking as groups of auxiliaries with equal scores, best group first."""
    groups: List[List[str]] = []
    previous = None
    for name, score in ranking:
        if groups and score == previous:
            groups[-1].append(name)
        else:
            groups.append([name])
        previous = score
    return groups
