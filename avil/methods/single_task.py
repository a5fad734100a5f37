"""single_task: train on the target task alone (the baseline every paper reports)."""
import itertools

import torch

from .base import Method


class SingleTask(Method):
    """Only the target task's loss.

    Fair comparison with ``uniform``: an epoch takes as many optimizer steps
    as a ``uniform`` epoch (Σ_t ⌈|D_t^train| / batch_size⌉), cycling through
    fresh shuffles of the (smaller) target set, so a gain of multitask
    learning is never a gain of more steps.
    """

    name = "single_task"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.optimizers = {"model": self.make_optimizer(self.task_params[self.target])}
        self.steps_per_epoch = sum(self.num_batches(len(t.train)) for t in self.tasks.values())

    def train_epoch(self, epoch: int) -> dict:
        optimizer = self.optimizers["model"]
        total = torch.zeros((), device=self.device)
        batches = itertools.islice(self.cycled_batches(self.target, epoch), self.steps_per_epoch)
        for batch in self.progress(batches, total=self.steps_per_epoch, desc=self.target):
            total += self.step(optimizer, self.target, batch)
        losses = self.mean_losses({self.target: total}, {self.target: self.steps_per_epoch}, epoch)
        return {"task_weights": dict(self.task_weights), "alphas": {}, "train_loss": losses}
