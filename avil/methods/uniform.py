"""uniform: standard multitask learning, every task weight 1."""
import torch

from .base import Method


class Uniform(Method):
    """Every task's batches, interleaved in a seeded random order, one shared
    optimizer; each step is one batch of one task with loss L_t (weight 1)."""

    name = "uniform"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.optimizers = {"model": self.make_optimizer(self.model.parameters())}

    def train_epoch(self, epoch: int) -> dict:
        optimizer = self.optimizers["model"]
        streams = {name: iter(self.batches(name, self.order(name, epoch))) for name in self.names}
        schedule = self.interleaved_schedule(epoch)
        sums = {name: torch.zeros((), device=self.device) for name in self.names}
        counts = dict.fromkeys(self.names, 0)
        for name in self.progress(schedule, desc="all tasks"):
            sums[name] += self.step(optimizer, name, next(streams[name]), scale=self.task_weights[name])
            counts[name] += 1
        losses = self.mean_losses(sums, counts, epoch)
        return {"task_weights": dict(self.task_weights), "alphas": {}, "train_loss": losses}

