"""A toy suite with known relatedness to the target, seconds on a CPU.

Inputs x ~ N(0, I) in ``dim`` dimensions; the target labels are a fixed
random linear rule over ``classes`` classes, with only ``n_target`` training
examples. The auxiliaries:

- ``same_rule`` (helpful): the target's rule on ``n_aux`` other inputs.
- ``noise``: random labels.
- ``harmful``: an unrelated regression whose loss is ~``harmful_scale``² larger
  than a classification loss, so under uniform weighting it dominates the
  shared encoder (negative transfer: ``uniform`` scores below ``single_task``).

Why not "the target's labels flipped" as the harmful task: with one head per
task its head simply learns the flip, and it is as helpful as ``same_rule``.
"""
from typing import List, Tuple

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import TensorDataset

from .. import metrics
from ..models import MLP
from . import Task

TARGET = "target"


# Head initialisation draws from its own seed, offset from the encoder's so the
# two never share a random stream.
HEAD_SEED_OFFSET = 20_000


def make_encoder(seed: int = 0, dim: int = 20, hidden: int = 32) -> MLP:
    """The shared encoder: a 2-layer ReLU MLP, initialised from ``seed`` (a forked
    RNG: the global RNG state is neither read nor changed)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return MLP(dim, hidden)


def make_tasks(seed: int = 0, n_target: int = 100, n_aux: int = 2000, n_dev: int = 500,
               n_test: int = 2000, dim: int = 20, classes: int = 4, hidden: int = 32,
               harmful_scale: float = 30.0) -> List[Task]:
    """The target and its three auxiliaries (names: target, same_rule, noise, harmful).

    The rule, the data and the heads depend on ``seed`` only: the heads are
    initialised inside a forked RNG (as every suite in ``avil.tasks`` does), so
    the global RNG state is neither read nor changed.
    """
    gen = torch.Generator().manual_seed(10_000 + seed)
    rule = torch.randn(dim, classes, generator=gen)  # (D, C): the target's labelling
    unrelated = torch.randn(dim, 2, generator=gen)  # (D, 2): the harmful regression's directions

    def inputs(n):
        return torch.randn(n, dim, generator=gen)  # (n, D)

    def labelled(n):
        x = inputs(n)
        return TensorDataset(x, (x @ rule).argmax(dim=1))

    def regression(n):
        x = inputs(n)
        u, v = (x @ unrelated).unbind(dim=1)
        return TensorDataset(x, harmful_scale * torch.sin(2 * u) * torch.cos(2 * v))

    def noise(n):
        return TensorDataset(inputs(n), torch.randint(classes, (n,), generator=gen))

    def mse(out, y, reduction="mean"):
        return F.mse_loss(out.squeeze(-1), y, reduction=reduction)

    def classifier(name, train):
        return Task(name, train, labelled(n_dev) if name != "noise" else noise(n_dev),
                    labelled(n_test) if name != "noise" else noise(n_test),
                    nn.Linear(hidden, classes), F.cross_entropy, metrics.accuracy)

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(HEAD_SEED_OFFSET + seed)
        return [
            classifier(TARGET, labelled(n_target)),
            classifier("same_rule", labelled(n_aux)),
            classifier("noise", noise(n_aux)),
            Task("harmful", regression(n_aux), regression(n_dev), regression(n_test),
                 nn.Linear(hidden, 1), mse, metrics.negative_mse),
        ]


def make_run(seed: int) -> Tuple[MLP, List[Task]]:
    """``seed -> (encoder, tasks)`` for ``reproduce.compare``. On the toy suite a
    seed varies everything: the target's rule, the data, the encoder's and the
    heads' initialisation (and, through ``FitConfig.seed``, the batch order)."""
    return make_encoder(seed), make_tasks(seed)
