"""single_task: train on the target task alone (the baseline every paper reports)."""
from typing import Dict, Iterator

import torch

from .base import Method, Slot


class SingleTask(Method):
    """Only the target task's loss.

    Fair comparison with ``uniform``: an epoch follows ``uniform``'s schedule,
    Σ_t ⌈|D_t^train| / batch_size⌉ slots, and every slot is a target step,
    cycling through fresh shuffles of the (smaller) target set, so a gain of
    multitask learning is never a gain of more steps.
    """

    name = "single_task"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.optimizers = {"model": self.make_optimizer(self.task_params[self.target])}

    def train_slot(self, task: str, streams: Dict[str, Iterator[Slot]]) -> Dict[str, torch.Tensor]:
        _, batch = next(streams[self.target])
        return {self.target: self.step(self.optimizers["model"], self.target, batch)}
