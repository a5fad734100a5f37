"""How αVIL turns each epoch's α into the task weights (``FitConfig.weight_update``).

The weights are the loss scales of the next epoch's task passes and the
readout of which auxiliaries help. Every rule keeps a weight inside
[``weight_min``, ``weight_max``]; with ``pin_target_weight`` the target's
weight stays 1, so only the auxiliaries' weights move.

- ``additive``: w ← w + (α − 1), the rule Algorithm 1 of arXiv 2405.07769
  prints. An α that stays below 1 lowers the weight every epoch, so every
  auxiliary the α-step keeps below full strength ends on the floor, helpful
  or harmful alike.
- ``multiplicative``: w ← w · α.
- ``replace``: w ← α (with ``alpha_init="weights"``: α carried over).
- ``average``: w ← w + (α − w) / e after epoch e (w ← α after the first): a
  running mean of the task's α, how much of its update the α-step kept, kept
  inside the bounds at every step (an α below ``weight_min`` enters as the
  floor).
- ``contribution``: w ← the mean over the epochs so far of K · c_t / Σ_u c_u,
  where c_t = max(0, L(α with α_t = 0) − L(α)) is the rise of the target's dev
  loss when task t's update is dropped from the chosen merge (the per-delta
  ablation, computed for this rule): each task's share of what the merge
  leans on, 1 when all lean equally.
"""
from typing import Dict, Optional

from ..config import FitConfig

def contribution_scores(loss_without: Dict[str, float], loss_final: float) -> Dict[str, float]:
    """K · c_t / Σ c (1 for every task when no update is leaned on)."""
    rises = {name: max(0.0, loss - loss_final) for name, loss in loss_without.items()}
    total = sum(rises.values())
    return {name: len(rises) * rise / total if total > 0 else 1.0 for name, rise in rises.items()}


def updated_weights(weights: Dict[str, float], alphas: Dict[str, float], epoch: int, config: FitConfig,
                    target: str, loss_without: Optional[Dict[str, float]] = None,
                    loss_final: Optional[float] = None) -> Dict[str, float]:
    """The weights after ``epoch`` (0-based) under ``config.weight_update``."""
    scores = contribution_scores(loss_without, loss_final) if config.weight_update == "contribution" else alphas
    out = {}
    for name, w in weights.items():
        a = alphas[name]
        if config.pin_target_weight and name == target:
            new = 1.0
        elif config.weight_update == "additive":
            new = w + (a - 1.0)
        elif config.weight_update == "multiplicative":
            new = w * a
        elif config.weight_update == "replace":
            new = a
        else:  # a running mean, of α ("average") or of the contribution scores
            new = scores[name] if epoch == 0 else w + (scores[name] - w) / (epoch + 1)
        out[name] = min(max(new, config.weight_min), config.weight_max)
    return out
