"""static: standard multitask learning with fixed per-auxiliary loss weights.

The baseline αVIL claims to make unnecessary (arXiv 2405.07769, abstract: no
"extensive search of the weighting space"): the interleaved epoch of
``uniform``, each auxiliary's steps on w_t · L_t with w_t fixed for the run
(``FitConfig.static_weights``, {auxiliary: weight}; 1 where not given; the
target's weight is 1). A weight of 0 turns an auxiliary off: its slots in the
schedule are skipped, so no optimizer step is taken on its batches.

Choosing the weights is a search over whole training runs on the target's dev
metric (``avil.reproduce.static_search``): its cost, next to one αVIL run, is
what claim C3 is about (Xin et al., NeurIPS 2022; Kurin et al., NeurIPS 2022).
"""
from typing import Dict, Iterator

import torch

from .base import Method, Slot


class Static(Method):
    name = "static"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        weights = dict(self.config.static_weights or {})
        unknown = sorted(set(weights) - set(self.names))
        if unknown or self.target in weights:
            wrong = unknown or [self.target]
            raise ValueError(f"FitConfig.static_weights names {wrong}, which {'are not' if unknown else 'is not'} "
                             f"among this run's auxiliaries {[n for n in self.names if n != self.target]}. Fix: "
                             "give weights for auxiliaries only (the target's is 1).")
        self.task_weights.update({name: float(w) for name, w in weights.items()})
        self.optimizers = {"model": self.make_optimizer(self.model.parameters())}

    def steps_per_epoch(self, key: str) -> int:
        """One step per slot of an auxiliary that is on (a weight of 0 skips its slots)."""
        return sum(self.num_batches(len(t.train)) for name, t in self.tasks.items() if self.task_weights[name] > 0)

    def train_slot(self, task: str, streams: Dict[str, Iterator[Slot]]) -> Dict[str, torch.Tensor]:
        if self.task_weights[task] == 0:
            next(streams[task])  # drawn and dropped: the other tasks' batches stay as under uniform
            return {}
        return super().train_slot(task, streams)
