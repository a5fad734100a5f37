"""Tasks: what αVIL trains on. ``avil.Task`` plus the shipped suites
(``avil.tasks.toy``, ``avil.tasks.multimnist``, ``avil.tasks.nlu``), which are
imported on demand so that ``import avil`` stays light."""
from dataclasses import dataclass, field
from typing import Callable, Optional

from torch import nn
from torch.utils.data import Dataset


@dataclass(eq=False)
class Task:
    """One task of a multitask problem.

    train, dev, test: torch Datasets whose items are ``(x, y)``; x is a tensor
        or a dict of tensors (tokenised text).
    head: maps the shared encoder's features to this task's outputs.
    loss_fn: ``loss_fn(outputs, y) -> scalar``. Methods with per-example
        weights (``diw``) call ``loss_fn(outputs, y, reduction="none")``, as
        ``F.cross_entropy`` and ``F.mse_loss`` accept.
    metric_fn: ``metric_fn(outputs, y) -> float`` over a whole split, higher is better.
    collate_fn: builds a batch from a list of items (e.g. dynamic padding);
        None uses ``torch.utils.data.default_collate``.
    """

    name: str
    train: Dataset
    dev: Dataset
    test: Dataset
    head: nn.Module
    loss_fn: Callable
    metric_fn: Callable
    collate_fn: Optional[Callable] = field(default=None)
