"""Cheap synthetic suites with auxiliaries of known construction, drawn at
random: the held-out-style test of whether a weighting ranks auxiliaries by
what they do to the target.

``make_suite(suite_seed)`` draws one suite: the input dimension, the number of
classes, the sizes, and which auxiliaries it holds, all from ``suite_seed``.
The target is a random linear rule over ``classes`` classes on x ~ N(0, I_dim)
with few training examples. Every suite holds the ``twin`` and three of the
four other roles, each built from the target:

- ``twin``: the target's rule on other inputs (meant to help);
- ``partial``: a rule part-way between the target's and an unrelated one
  (angle 45–75° from the target's in every class direction);
- ``noise``: random labels on other inputs (label noise);
- ``shuffled``: the target's own training inputs with their labels permuted;
- ``scale``: an unrelated regression with a loss about ``scale``² times a
  classification loss, which harms a shared encoder through its loss scale.

What a role *does* is measured, never assumed: ``reproduce.auxiliary_effects``
pairs ``uniform`` on the target and one auxiliary against ``single_task``.

What a seed varies (``Suite.make_run(seed)``): the encoder's and the heads'
initialisation (and, through ``FitConfig.seed``, the batch order); the data is
fixed by ``suite_seed``. Nothing reads or changes the global RNG state.
"""
import dataclasses
from typing import Callable, Dict, List, Tuple

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import TensorDataset

from .. import metrics
from ..models import MLP
from . import Task

TARGET = "target"
ROLES = ("twin", "partial", "noise", "shuffled", "scale")
HIDDEN = 32
# Offsets that keep the data's, the encoder's and the heads' random streams apart.
DATA_SEED_OFFSET, HEAD_SEED_OFFSET = 50_000, 70_000


@dataclasses.dataclass
class Suite:
    """One drawn suite: its name, the sizes drawn, the auxiliaries it holds
    ({task name: role}) and ``make_run(seed) -> (encoder, tasks)``."""

    name: str
    suite_seed: int
    dim: int
    classes: int
    n_target: int
    n_aux: Dict[str, int]
    roles: Dict[str, str]
    make_run: Callable[[int], Tuple[nn.Module, List[Task]]]

    @property
    def auxiliaries(self) -> List[str]:
        return list(self.roles)


def make_suite(suite_seed: int, n_dev: int = 300, n_test: int = 1000, scale: float = 30.0) -> Suite:
    """The suite drawn from ``suite_seed`` (module docstring)."""
    draw = torch.Generator().manual_seed(DATA_SEED_OFFSET + suite_seed)

    def integer(low, high):  # in [low, high]
        return int(torch.randint(low, high + 1, (1,), generator=draw))

    dim, classes, n_target = integer(8, 32), integer(2, 5), integer(60, 200)
    others = [ROLES[1:][i] for i in torch.randperm(4, generator=draw)[:3].sort().values.tolist()]
    roles = {"twin": "twin", **{role: role for role in others}}
    n_aux = {name: integer(400, 1500) for name in roles}
    rule = torch.randn(dim, classes, generator=draw)  # (D, C): the target's labelling
    unrelated = torch.randn(dim, classes, generator=draw)  # (D, C)
    # Each class direction of the partial rule lies at `angle` from the target's: the unrelated
    # direction is made orthogonal to it and of its length, then the two are mixed.
    unrelated -= (unrelated * rule).sum(0) / (rule * rule).sum(0) * rule
    unrelated *= rule.norm(dim=0) / unrelated.norm(dim=0)
    angle = float(torch.empty(1).uniform_(45, 75, generator=draw)) * torch.pi / 180
    partial = torch.cos(torch.tensor(angle)) * rule + torch.sin(torch.tensor(angle)) * unrelated  # (D, C)
    directions = torch.randn(dim, 2, generator=draw)  # (D, 2): the regression's

    def inputs(n):
        return torch.randn(n, dim, generator=draw)  # (n, D)

    def labelled(x, weights):
        return TensorDataset(x, (x @ weights).argmax(dim=1))

    def regression(x):
        u, v = (x @ directions).unbind(dim=1)
        return TensorDataset(x, scale * torch.sin(2 * u) * torch.cos(2 * v))

    target_train = inputs(n_target)
    splits = {TARGET: [labelled(target_train, rule), labelled(inputs(n_dev), rule), labelled(inputs(n_test), rule)]}
    for name, role in roles.items():
        n = n_aux[name]
        if role == "twin":
            make = lambda m: labelled(inputs(m), rule)  # noqa: E731
        elif role == "partial":
            make = lambda m: labelled(inputs(m), partial)  # noqa: E731
        elif role == "noise":
            make = lambda m: TensorDataset(inputs(m), torch.randint(classes, (m,), generator=draw))  # noqa: E731
        elif role == "shuffled":
            n = n_aux[name] = n_target  # the target's own inputs
            shuffled_labels = labelled(target_train, rule).tensors[1][torch.randperm(n_target, generator=draw)]
            make = None
            splits[name] = [TensorDataset(target_train, shuffled_labels),
                            *(TensorDataset(x, y[torch.randperm(len(y), generator=draw)])
                              for x, y in (labelled(inputs(m), rule).tensors for m in (n_dev, n_test)))]
        else:  # scale
            make = lambda m: regression(inputs(m))  # noqa: E731
        if make is not None:
            splits[name] = [make(n), make(n_dev), make(n_test)]

    def mse(out, y, reduction="mean"):
        return F.mse_loss(out.squeeze(-1), y, reduction=reduction)

    def make_run(seed: int) -> Tuple[nn.Module, List[Task]]:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            encoder = MLP(dim, HIDDEN)
            torch.manual_seed(HEAD_SEED_OFFSET + seed)
            tasks = [Task(name, *splits[name], head=nn.Linear(HIDDEN, 1 if roles.get(name) == "scale" else classes),
                          loss_fn=mse if roles.get(name) == "scale" else F.cross_entropy,
                          metric_fn=metrics.negative_mse if roles.get(name) == "scale" else metrics.accuracy)
                     for name in [TARGET, *roles]]
        return encoder, tasks

    return Suite(f"synthetic-{suite_seed}", suite_seed, dim, classes, n_target, n_aux, roles, make_run)


def make_suites(count: int, first_seed: int = 0, **kwargs) -> Dict[str, Suite]:
    """``count`` suites drawn from consecutive suite seeds: ``{name: Suite}``."""
    suites = [make_suite(s, **kwargs) for s in range(first_seed, first_seed + count)]
    return {s.name: s for s in suites}
