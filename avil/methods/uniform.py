"""uniform: standard multitask learning, every task weight 1."""
from .base import Method


class Uniform(Method):
    """Every task's batches, interleaved in a seeded random order, one shared
    optimizer; each step is one batch of one task with loss L_t (weight 1).
    This is ``Method``'s interleaved epoch with its default slot."""

    name = "uniform"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.optimizers = {"model": self.make_optimizer(self.model.parameters())}
